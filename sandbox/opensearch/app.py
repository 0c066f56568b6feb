"""The domain emulator as a WSGI app: authenticate as AWS does, find the domain by Host, route to `api`.

A domain is the one moto's OpenSearch backend knows, in the account that signed the request (credentials from an
assumed role belong to the role's account) and the region of the endpoint. Signatures are not verified (moto does not
verify them either), but requests must be signed for the `es` service in the domain's region.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, unquote

import structlog

from sandbox.opensearch import api, replication
from sandbox.opensearch.state import OsError, domain_state

log = structlog.get_logger("sandbox.opensearch")

# search-<name>-<token>.<region>.es.amazonaws.com (vpc-... for VPC domains), and the newer *.aos.<region>.on.aws.
_DOMAIN_HOST = re.compile(r"^(?:[a-z0-9-]+\.)(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d)\.(?:es\.amazonaws\.com|aos\."
                          r"[a-z0-9-]+\.on\.aws)(?::\d+)?$")
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")


def is_domain_host(host: str) -> bool:
    return bool(_DOMAIN_HOST.match(host.lower()))


class OpenSearchApp:
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        host = environ.get("HTTP_HOST", "").split(":")[0].lower()
        try:
            status, payload = self._handle(environ, method, host)
        except OsError as exc:
            status, payload = exc.status, exc.body()
        except (ValueError, TypeError, KeyError) as exc:
            err = OsError(400, "parse_exception", f"{type(exc).__name__}: {exc}")
            status, payload = err.status, err.body()
        data = b"" if method == "HEAD" else json.dumps(payload).encode()
        start_response(f"{status} {'OK' if status < 400 else 'Error'}",
                       [("Content-Type", "application/json; charset=UTF-8"), ("Content-Length", str(len(data)))])
        return [data]

    def _handle(self, environ: dict[str, Any], method: str, host: str) -> tuple[int, Any]:
        scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        action = f"es:ESHttp{method.capitalize()}"
        if scope is None:
            return 403, {"Message": f"User: anonymous is not authorized to perform: {action} because no "
                                    "resource-based policy allows the action"}
        if scope["service"] != "es":
            return 403, {"message": "Credential should be scoped to correct service: 'es'. "}
        match = _DOMAIN_HOST.match(host)
        region = match["region"] if match else ""
        if scope["region"] != region:
            return 403, {"message": f"Credential should be scoped to a valid region, not '{scope['region']}'. "}
        from sandbox.core.caller import caller

        account, _ = caller(environ)
        domain = _find_domain(account, region, host)
        if domain is None:
            return 403, {"Message": f"User: arn:aws:sts::{account}:assumed-role is not authorized to perform: "
                                    f"{action} on a domain at {host}"}
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        body = json.loads(raw) if raw.strip() else {}
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        path = environ.get("RAW_URI", environ.get("PATH_INFO", "")).split("?")[0]
        parts = [unquote(p) for p in path.split("/") if p]
        state = domain_state(domain, account, region)
        return api.with_lock(_route, state, method, parts, query, body)


def _find_domain(account: str, region: str, host: str) -> Any:
    from moto.opensearch.models import opensearch_backends

    if account not in opensearch_backends or region not in opensearch_backends[account]:
        return None
    for domain in list(opensearch_backends[account][region].domains.values()):
        endpoints = [domain.endpoint, *(domain.endpoints or {}).values()]
        if host in endpoints and not domain.deleted:
            return domain
    return None


def _route(state: Any, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    n, head = len(parts), parts[0] if parts else ""
    arg = parts[2] if n > 2 else None
    if n == 0 and method in ("GET", "HEAD"):
        return 200, {"name": "node-1", "cluster_name": f"{state.account}:{state.name}",
                     "version": {"distribution": "opensearch", "number": "2.11.0"},
                     "tagline": "The OpenSearch Project: https://opensearch.org/"}
    if head == "_cluster" and n >= 2 and method == "GET":
        if parts[1] == "health":
            return api.cluster_health(state, arg, query)
        if parts[1] == "state" and n >= 3 and parts[2] == "blocks":
            return api.cluster_blocks(state, parts[3] if n > 3 else None)
    if head == "_cat" and n >= 2 and method == "GET" and parts[1] in ("indices", "recovery"):
        status, rows = api.cat_indices(state, arg) if parts[1] == "indices" else api.cat_recovery(state, arg)
        return status, api.cat_columns(rows, query)
    if head == "_snapshot" and n >= 2:
        repo = parts[1]
        if n == 2:
            if method in ("PUT", "POST"):
                return api.put_repository(state, repo, body)
            if method == "GET":
                return api.get_repository(state, repo)
        if n == 3 and method in ("PUT", "POST"):
            return api.create_snapshot(state, repo, parts[2], body, query)
        if n == 3 and method == "GET":
            return api.get_snapshots(state, repo, parts[2])
        if n == 4 and parts[3] == "_restore" and method == "POST":
            return api.restore(state, repo, parts[2], body)
    if head == "_plugins" and n == 4 and parts[1] == "_replication":
        index, verb = parts[2], parts[3]
        if verb == "_start" and method == "PUT":
            return replication.start_replication(state, index, body)
        if verb == "_stop" and method == "POST":
            return replication.stop_replication(state, index)
        if verb == "_status" and method == "GET":
            return replication.replication_status(state, index)
    if head and not head.startswith("_"):
        verb = parts[1] if n > 1 else None
        if n == 1 and method == "PUT":
            return api.create_index(state, head, body)
        if n == 1 and method == "DELETE":
            return api.delete_index(state, head)
        if verb == "_doc" and method in ("POST", "PUT"):
            return api.write_document(state, head, parts[2] if n > 2 else None)
        if verb == "_count" and method in ("GET", "POST"):
            return api.count(state, head)
        if verb in ("_close", "_open") and method == "POST":
            return api.open_close(state, head, close=verb == "_close")
        if verb == "_settings" and method == "GET":
            return api.get_settings(state, head)
        if verb == "_settings" and method == "PUT":
            return api.put_settings(state, head, body)
    raise OsError(405 if parts else 400, "illegal_argument_exception",
                  f"Incorrect HTTP method for uri [/{'/'.join(parts)}] and method [{method}]")
