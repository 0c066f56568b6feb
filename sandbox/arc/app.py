"""The ARC emulator as WSGI apps: one for the control plane (route53-recovery-control-config), one for the cluster
data plane (route53-recovery-cluster, reached at the regional endpoints DescribeCluster hands out). The sandbox's
dispatcher sends each the requests signed for its service."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import structlog

from sandbox.arc import protocol
from sandbox.arc.models import ClusterEndpoint, Control, arc_world
from sandbox.arc.protocol import CLUSTER, CONTROL, ArcError
from sandbox.core.caller import caller

log = structlog.get_logger("sandbox.arc")

_ENDPOINT_PATH = re.compile(r"/arc-cluster/(?P<cluster>[0-9a-f]+)/(?P<region>[a-z0-9-]+)/v1/?")


def _body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _raw_path(environ: dict[str, Any]) -> str:
    # Undecoded, so an ARN's escaped '/' inside a URI label stays inside the label.
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    return raw.split("?", 1)[0] if raw else environ.get("PATH_INFO", "/")


class ArcApp:
    def __init__(self, service: str) -> None:
        assert service in (CONTROL, CLUSTER)
        self.service = service

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, headers, body = self.handle(environ)
        start_response(f"{status} {HTTPStatus(status).phrase}", [*headers.items(),
                                                                  ("Content-Length", str(len(body)))])
        return [body]

    def handle(self, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        name = "?"
        world = arc_world()
        try:
            account, _ = caller(environ)
            body = _body(environ)
            with world.lock:
                if self.service == CONTROL:
                    op, labels = protocol.control_operation(environ.get("REQUEST_METHOD", "GET"), _raw_path(environ))
                    name = op.name
                    params = protocol.parse(op, labels, parse_qs(environ.get("QUERY_STRING", "")), body)
                    base = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '127.0.0.1')}"
                    handler: Any = Control(world, account, base)
                else:
                    found = _ENDPOINT_PATH.fullmatch(environ.get("PATH_INFO", ""))
                    if found is None:
                        raise ArcError(CLUSTER, "AccessDeniedException", "not a cluster endpoint of this sandbox")
                    op = protocol.cluster_operation(environ.get("HTTP_X_AMZ_TARGET", ""))
                    name = op.name
                    handler = ClusterEndpoint(world, account, found["cluster"], found["region"])
                    handler.check_available(name)
                    params = protocol.parse(op, {}, {}, body)
                method = getattr(handler, name, None)
                if method is None:
                    raise ArcError(self.service, "ValidationException",
                                   f"the sandbox ARC emulator does not implement {name}",
                                   **({"reason": "unknownOperation"} if self.service == CLUSTER else {}))
                return protocol.render(op, method(params))
        except ArcError as err:
            return err.render()
        except Exception as exc:  # an emulator bug must reach the test that hit it, not hang the client
            log.exception("arc.emulator_error", operation=name)
            return ArcError(self.service, "InternalServerException",
                            f"sandbox ARC emulator error in {name}: {type(exc).__name__}: {exc}").render()
