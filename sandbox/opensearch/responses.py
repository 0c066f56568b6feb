"""The domain emulator as a WSGI app: authenticate as AWS does, find the domain by Host, route by `urls`, answer
with the operation in `api` or `replication`.

A domain is the one moto's OpenSearch backend knows, in the account that signed the request (credentials from an
assumed role belong to the role's account) and the region of the endpoint. Signatures are not verified (moto does not
verify them either), but requests must be signed for the `es` service in the domain's region.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote

from sandbox.core.caller import caller, credential_scope
from sandbox.core.wsgi import raw_path, read_body, respond
from sandbox.opensearch import api, replication, urls
from sandbox.opensearch.exceptions import OsError
from sandbox.opensearch.models import LOCK, DomainState, domain_state

Result = tuple[int, Any]


class Call(NamedTuple):
    labels: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]


def _info(state: DomainState, _: Call) -> Result:
    return 200, {"name": "node-1", "cluster_name": f"{state.account}:{state.name}",
                 "version": {"distribution": "opensearch", "number": "2.11.0"},
                 "tagline": "The OpenSearch Project: https://opensearch.org/"}


def _cat(rows: Callable[[DomainState, str | None], Result]) -> Callable[[DomainState, Call], Result]:
    def handler(state: DomainState, call: Call) -> Result:
        status, found = rows(state, call.labels.get("index"))
        return status, api.cat_columns(found, call.query)
    return handler


# The operations `urls.url_paths` names, each given the domain's state and the request's labels, query and body.
HANDLERS: dict[str, Callable[[DomainState, Call], Result]] = {
    "info": _info,
    "cluster_health": lambda s, c: api.cluster_health(s, c.labels.get("index"), c.query),
    "cluster_blocks": lambda s, c: api.cluster_blocks(s, c.labels.get("index")),
    "cat_indices": _cat(api.cat_indices),
    "cat_recovery": _cat(api.cat_recovery),
    "put_repository": lambda s, c: api.put_repository(s, c.labels["repository"], c.body),
    "get_repository": lambda s, c: api.get_repository(s, c.labels["repository"]),
    "create_snapshot": lambda s, c: api.create_snapshot(s, c.labels["repository"], c.labels["snapshot"], c.body,
                                                        c.query),
    "get_snapshots": lambda s, c: api.get_snapshots(s, c.labels["repository"], c.labels["snapshot"]),
    "restore": lambda s, c: api.restore(s, c.labels["repository"], c.labels["snapshot"], c.body),
    "start_replication": lambda s, c: replication.start_replication(s, c.labels["index"], c.body),
    "stop_replication": lambda s, c: replication.stop_replication(s, c.labels["index"]),
    "replication_status": lambda s, c: replication.replication_status(s, c.labels["index"]),
    "create_index": lambda s, c: api.create_index(s, c.labels["index"], c.body),
    "delete_index": lambda s, c: api.delete_index(s, c.labels["index"]),
    "write_document": lambda s, c: api.write_document(s, c.labels["index"], c.labels.get("id")),
    "count": lambda s, c: api.count(s, c.labels["index"]),
    "close": lambda s, c: api.open_close(s, c.labels["index"], close=True),
    "open": lambda s, c: api.open_close(s, c.labels["index"], close=False),
    "get_settings": lambda s, c: api.get_settings(s, c.labels["index"]),
    "put_settings": lambda s, c: api.put_settings(s, c.labels["index"], c.body),
}


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
        return respond(start_response, status, {"Content-Type": "application/json; charset=UTF-8"}, data)

    def _handle(self, environ: dict[str, Any], method: str, host: str) -> Result:
        scope = credential_scope(environ)
        action = f"es:ESHttp{method.capitalize()}"
        if scope is None:
            return 403, {"Message": f"User: anonymous is not authorized to perform: {action} because no "
                                    "resource-based policy allows the action"}
        if scope["service"] != "es":
            return 403, {"message": "Credential should be scoped to correct service: 'es'. "}
        region = urls.host_region(host)
        if scope["region"] != region:
            return 403, {"message": f"Credential should be scoped to a valid region, not '{scope['region']}'. "}
        account, _ = caller(environ)
        domain = _find_domain(account, region, host)
        if domain is None:
            return 403, {"Message": f"User: arn:aws:sts::{account}:assumed-role is not authorized to perform: "
                                    f"{action} on a domain at {host}"}
        raw = read_body(environ)
        body = json.loads(raw) if raw.strip() else {}
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        parts = [unquote(p) for p in raw_path(environ).split("/") if p]
        matched = urls.match(method, parts)
        if matched is None:
            raise OsError(405 if parts else 400, "illegal_argument_exception",
                          f"Incorrect HTTP method for uri [/{'/'.join(parts)}] and method [{method}]")
        operation, labels = matched
        with LOCK:
            return HANDLERS[operation](domain_state(domain, account, region), Call(labels, query, body))


def _find_domain(account: str, region: str, host: str) -> Any:
    from moto.opensearch.models import opensearch_backends

    if account not in opensearch_backends or region not in opensearch_backends[account]:
        return None
    for domain in list(opensearch_backends[account][region].domains.values()):
        endpoints = [domain.endpoint, *(domain.endpoints or {}).values()]
        if host in endpoints and not domain.deleted:
            return domain
    return None
