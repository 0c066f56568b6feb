"""OpenSearch Service: realistic domain endpoints, and the cross-cluster connection operations moto lacks.

The endpoint matters because the sandbox routes a domain's REST API by the `Host` header (`sandbox/opensearch`), the
way AWS does by DNS. Connections are what a follower domain's `_plugins/_replication/<index>/_start` names as its
`leader_alias`; the domain emulator resolves the leader through them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from typing import Any

import moto.es.urls
import moto.opensearch.urls
from moto.opensearch.exceptions import ResourceNotFoundException
from moto.opensearch.models import OpenSearchDomain, opensearch_backends
from moto.opensearch.responses import OpenSearchServiceResponse

from sandbox.moto_fixes._guard import require

_lock = threading.Lock()


def apply() -> None:
    # Checked first, so a moto without them is refused before anything here is patched.
    require(OpenSearchDomain, "__init__")
    for urls in (moto.es.urls, moto.opensearch.urls):
        require(urls, "url_paths")
    for used in ("dispatch", "_get_param"):  # what the added handlers need
        require(OpenSearchServiceResponse, used)
    _realistic_endpoints()
    _connections()


def _endpoint_token(arn: str) -> str:
    # AWS appends a 26-character lowercase token that makes endpoints unique across accounts.
    return base64.b32encode(hashlib.sha256(arn.encode()).digest()).decode().lower()[:26]


def _realistic_endpoints() -> None:
    """moto 5.2.5: the endpoint is `<name>.<region>.es.amazonaws.com`, the same for a domain of that name in every
    account; AWS answers `search-<name>-<token>.<region>.es.amazonaws.com` (`vpc-...` for a VPC domain)."""
    if getattr(OpenSearchDomain, "_dr_endpoint_fix", False):
        return
    original = OpenSearchDomain.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        region = self.arn.split(":")[3]
        host = f"{self.domain_name}-{_endpoint_token(self.arn)}.{region}.es.amazonaws.com"
        if self.endpoint is not None:
            self.endpoint = f"search-{host}"
        else:
            self.endpoints = {"vpc": f"vpc-{host}"}

    OpenSearchDomain.__init__ = __init__  # type: ignore[method-assign]
    OpenSearchDomain._dr_endpoint_fix = True  # type: ignore[attr-defined]


# ---- cross-cluster connections -------------------------------------------------------------------------------------

# Connection id -> connection, shared by the two sides (the local domain's account sees it outbound, the remote
# domain's account inbound), as on AWS where one connection has one id.
CONNECTIONS: dict[str, dict[str, Any]] = {}


def _domain_info(info: dict[str, Any]) -> dict[str, Any]:
    aws = info["AWSDomainInformation"]
    return {"AWSDomainInformation": {"OwnerId": aws["OwnerId"], "DomainName": aws["DomainName"],
                                     "Region": aws["Region"]}}


def _outbound_view(conn: dict[str, Any]) -> dict[str, Any]:
    return {key: conn[key] for key in ("LocalDomainInfo", "RemoteDomainInfo", "ConnectionId", "ConnectionAlias",
                                       "ConnectionStatus", "ConnectionMode")}


def _inbound_view(conn: dict[str, Any]) -> dict[str, Any]:
    return {"LocalDomainInfo": conn["LocalDomainInfo"], "RemoteDomainInfo": conn["RemoteDomainInfo"],
            "ConnectionId": conn["ConnectionId"], "ConnectionStatus": conn["ConnectionStatus"],
            "ConnectionMode": conn["ConnectionMode"]}


def _matches(conn: dict[str, Any], filters: list[dict[str, Any]]) -> bool:
    fields = {
        "connection-id": conn["ConnectionId"],
        "connection-alias": conn["ConnectionAlias"],
        "local-domain-info.domain-name": conn["LocalDomainInfo"]["AWSDomainInformation"]["DomainName"],
        "local-domain-info.owner-id": conn["LocalDomainInfo"]["AWSDomainInformation"]["OwnerId"],
        "remote-domain-info.domain-name": conn["RemoteDomainInfo"]["AWSDomainInformation"]["DomainName"],
        "remote-domain-info.owner-id": conn["RemoteDomainInfo"]["AWSDomainInformation"]["OwnerId"],
        "connection-status": conn["ConnectionStatus"]["StatusCode"],
    }
    return all(fields.get(f.get("Name", "")) in (f.get("Values") or []) for f in filters)  # no Name: no match


def find_active_connection(account: str, region: str, domain: str, alias: str) -> dict[str, Any] | None:
    """The ACTIVE outbound connection `alias` of a domain: what its replication `leader_alias` refers to."""
    with _lock:
        for conn in CONNECTIONS.values():
            local = conn["LocalDomainInfo"]["AWSDomainInformation"]
            if ((local["OwnerId"], local["Region"], local["DomainName"]) == (account, region, domain)
                    and conn["ConnectionAlias"] == alias and conn["ConnectionStatus"]["StatusCode"] == "ACTIVE"):
                return conn
    return None


def _connections() -> None:
    """moto 5.2.5 has none of the cross-cluster connection operations. Shapes and status codes follow botocore's
    model: a new connection is PENDING_ACCEPTANCE (the leader's owner accepts it; AWS also validates first, which
    we skip) and ACTIVE once accepted."""
    if hasattr(OpenSearchServiceResponse, "create_outbound_connection"):
        return

    def _require_domain(account: str, region: str, name: str) -> None:
        if name not in opensearch_backends[account][region].domains:
            raise ResourceNotFoundException(name)

    def create_outbound_connection(self: Any) -> str:
        local = _domain_info(self._get_param("LocalDomainInfo"))
        remote = _domain_info(self._get_param("RemoteDomainInfo"))
        lo = local["AWSDomainInformation"]
        _require_domain(self.current_account, self.region, lo["DomainName"])
        conn = {
            "LocalDomainInfo": local,
            "RemoteDomainInfo": remote,
            "ConnectionId": f"cc-{uuid.uuid4().hex[:20]}",
            "ConnectionAlias": self._get_param("ConnectionAlias"),
            "ConnectionMode": self._get_param("ConnectionMode") or "DIRECT",
            "ConnectionStatus": {"StatusCode": "PENDING_ACCEPTANCE",
                                 "Message": "Connection is pending acceptance by the remote domain owner"},
        }
        with _lock:
            CONNECTIONS[conn["ConnectionId"]] = conn
        return json.dumps(_outbound_view(conn))

    def accept_inbound_connection(self: Any) -> str:
        conn_id = self.path.rstrip("/").split("/")[-2]
        with _lock:
            conn = CONNECTIONS.get(conn_id)
            remote = conn["RemoteDomainInfo"]["AWSDomainInformation"] if conn else None
            if conn is None or remote is None or remote["OwnerId"] != self.current_account:
                raise ResourceNotFoundException(conn_id)
            conn["ConnectionStatus"] = {"StatusCode": "ACTIVE", "Message": "Connection is active"}
        return json.dumps({"Connection": _inbound_view(conn)})

    def _describe(self: Any, side: str, view: Any) -> str:
        filters = self._get_param("Filters") or []
        with _lock:
            found = [view(c) for c in CONNECTIONS.values()
                     if c[side]["AWSDomainInformation"]["OwnerId"] == self.current_account and _matches(c, filters)]
        return json.dumps({"Connections": found})

    def describe_outbound_connections(self: Any) -> str:
        return _describe(self, "LocalDomainInfo", _outbound_view)

    def describe_inbound_connections(self: Any) -> str:
        return _describe(self, "RemoteDomainInfo", _inbound_view)

    # moto's server sends `es`-signed requests to the `es` backend's paths, which have no cross-cluster routes.
    cc = "{0}/2021-01-01/opensearch/cc/"
    for urls in (moto.es.urls, moto.opensearch.urls):
        for path in ("outboundConnection$", "outboundConnection/search$", "inboundConnection/search$",
                     "inboundConnection/(?P<connectionid>[^/]+)/accept$"):
            urls.url_paths.setdefault(cc + path, OpenSearchServiceResponse.dispatch)
    for function in (create_outbound_connection, accept_inbound_connection, describe_outbound_connections,
                     describe_inbound_connections):
        setattr(OpenSearchServiceResponse, function.__name__, function)
