"""Where a domain's REST API is reached: the sandbox's dispatcher sends this emulator every request whose Host is a
domain endpoint (its SigV4 scope says `es`, like the control plane's moto answers, so only the Host tells them apart),
and the route table below picks the operation from the method and the path's segments."""

from __future__ import annotations

import re

# search-<name>-<token>.<region>.es.amazonaws.com (vpc-... for VPC domains), and the newer *.aos.<region>.on.aws.
_DOMAIN_HOST = re.compile(r"^(?:[a-z0-9-]+\.)(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d)\.(?:es\.amazonaws\.com|aos\."
                          r"[a-z0-9-]+\.on\.aws)(?::\d+)?$")

# (methods, segments, operation), first match wins. A segment is a literal, `{label}` (any one segment), `{label?}`
# (one if present), or `...` (whatever follows, ignored). Paths are matched by segment after percent-decoding, so a
# label holds any text.
url_paths: list[tuple[str, tuple[str, ...], str]] = [
    ("GET HEAD", (), "info"),
    ("GET", ("_cluster", "health", "{index?}", "..."), "cluster_health"),
    ("GET", ("_cluster", "state", "blocks", "{index?}", "..."), "cluster_blocks"),
    ("GET", ("_cat", "indices", "{index?}", "..."), "cat_indices"),
    ("GET", ("_cat", "recovery", "{index?}", "..."), "cat_recovery"),
    ("PUT POST", ("_snapshot", "{repository}"), "put_repository"),
    ("GET", ("_snapshot", "{repository}"), "get_repository"),
    ("PUT POST", ("_snapshot", "{repository}", "{snapshot}"), "create_snapshot"),
    ("GET", ("_snapshot", "{repository}", "{snapshot}"), "get_snapshots"),
    ("POST", ("_snapshot", "{repository}", "{snapshot}", "_restore"), "restore"),
    ("PUT", ("_plugins", "_replication", "{index}", "_start"), "start_replication"),
    ("POST", ("_plugins", "_replication", "{index}", "_stop"), "stop_replication"),
    ("GET", ("_plugins", "_replication", "{index}", "_status"), "replication_status"),
    ("PUT", ("{index}",), "create_index"),
    ("DELETE", ("{index}",), "delete_index"),
    ("POST PUT", ("{index}", "_doc", "{id?}", "..."), "write_document"),
    ("GET POST", ("{index}", "_count", "..."), "count"),
    ("POST", ("{index}", "_close", "..."), "close"),
    ("POST", ("{index}", "_open", "..."), "open"),
    ("GET", ("{index}", "_settings", "..."), "get_settings"),
    ("PUT", ("{index}", "_settings", "..."), "put_settings"),
]


def is_domain_host(host: str) -> bool:
    return bool(_DOMAIN_HOST.match(host.lower()))


def host_region(host: str) -> str:
    """The region of a domain endpoint's Host; "" when it is not one."""
    found = _DOMAIN_HOST.match(host)
    return found["region"] if found else ""


def match(method: str, parts: list[str]) -> tuple[str, dict[str, str]] | None:
    """(operation, labels) for a method and the path's decoded segments; None when no route takes them."""
    for methods, segments, operation in url_paths:
        labels = _fit(segments, parts) if method in methods.split() else None
        if labels is not None:
            return operation, labels
    return None


def _fit(segments: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    labels: dict[str, str] = {}
    for i, segment in enumerate(segments):
        if segment == "...":
            return labels
        if i >= len(parts):
            return labels if segment.endswith("?}") else None
        if segment.startswith("{"):
            # OpenSearch names its APIs with a leading underscore, which no index name may have: at the head of a
            # path such a segment is an API this table lacks, never an index.
            if i == 0 and parts[0].startswith("_"):
                return None
            labels[segment.strip("{?}")] = parts[i]
        elif parts[i] != segment:
            return None
    return labels if len(parts) == len(segments) else None
