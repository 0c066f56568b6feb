"""The DRS emulator as a WSGI app: faults, then routing, parsing and validation by the model, the operation, and a
rendering the model allows. The sandbox's dispatcher sends it every request signed for `drs`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import structlog

from sandbox.drs import protocol
from sandbox.drs.models import DEFAULT_ACCOUNT, DrsWorld, drs_world
from sandbox.drs.protocol import DrsError
from sandbox.drs.responses import HANDLERS, require_initialized

log = structlog.get_logger("sandbox.drs")

_SCOPE = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/[^/]+/aws4_request")
RETRY_AFTER_SECONDS = 1
# Errors any operation may answer, modeled for it or not: the service's front door raises them before any handler.
_SERVICE_WIDE = {"ValidationException", "ThrottlingException", "InternalServerException"}


def modeled(err: DrsError, operation: Any) -> DrsError:
    """The error as the operation can report it: e.g. StartRecovery models no ResourceNotFoundException, so an
    unknown source server is a ValidationException there, while GetLaunchConfiguration answers 404."""
    if err.code in _SERVICE_WIDE or err.code in {shape.name for shape in operation.error_shapes}:
        return err
    return DrsError("ValidationException", err.message, reason="other")


def caller(environ: dict[str, Any]) -> tuple[str, str]:
    """(account, region) of a request, the way moto decides them: its env/header overrides, else the access key's
    owner (assumed-role keys belong to the role's account), else moto's default account."""
    found = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    region = found["region"] if found else "us-east-1"
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"], region
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"], region
    if not found:
        return DEFAULT_ACCOUNT, region
    from moto.iam.models import get_account_id_from

    return get_account_id_from(found["key"]), region


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _raw_path(environ: dict[str, Any]) -> str:
    # The undecoded path keeps an ARN's '/' and ':' escaped inside its URI label; fall back to PATH_INFO.
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    return raw.split("?", 1)[0] if raw else environ.get("PATH_INFO", "/")


class DrsApp:
    def __init__(self, world: Callable[[], DrsWorld] = drs_world) -> None:
        self._world = world

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, headers, body = self.handle(environ)
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
        start_response(f"{status} {reason}", [*headers.items(), ("Content-Length", str(len(body)))])
        return [body]

    def handle(self, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        world = self._world()
        method = environ.get("REQUEST_METHOD", "GET")
        path = _raw_path(environ)
        body = _read_body(environ)
        name, operation = "?", None
        try:
            with world.lock:
                if world.roll(world.faults.throttle_rate):
                    raise DrsError("ThrottlingException", "Rate exceeded", serviceCode="drs",
                                   retryAfterSeconds=str(RETRY_AFTER_SECONDS))
                if world.roll(world.faults.error_rate):
                    raise DrsError("InternalServerException", "Internal service error (injected by the sandbox)",
                                   retryAfterSeconds=RETRY_AFTER_SECONDS)
                matched = protocol.match_operation(method, path)
                if matched is None:
                    raise DrsError("ValidationException", f"no DRS operation answers {method} {path}",
                                   reason="unknownOperation")
                operation, path_params = matched
                name = operation.name
                query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
                headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
                params = protocol.parse_request(operation, path_params, query, headers, body)
                protocol.validate_input(operation, params)
                handler = HANDLERS.get(name)
                if handler is None:
                    raise protocol.not_implemented(name)
                account, region = caller(environ)
                world.advance()
                backend = world.backend(account, region)
                require_initialized(backend, name)
                result = handler(backend, params)
                return protocol.render_output(operation, result)
        except DrsError as err:
            answered = modeled(err, operation) if operation is not None else err
            world.errors_returned[answered.code] += 1
            return protocol.render_error(answered)
        except Exception as exc:  # an emulator bug must reach the test that hit it, not hang the client
            log.exception("drs.emulator_error", operation=name)
            return protocol.render_error(DrsError("InternalServerException",
                                                  f"sandbox DRS emulator error in {name}: {type(exc).__name__}: {exc}"))


def create_app() -> DrsApp:
    return DrsApp()
