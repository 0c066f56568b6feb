"""The REST operations of an emulated domain: the part of the OpenSearch API the DR module and its tests use.

Response shapes and status codes follow the OpenSearch documentation (index, cat, cluster and snapshot APIs; the
replication plugin's are in `replication`). Each handler takes the domain's state and returns (status, JSON body).
"""

from __future__ import annotations

import re
import time
from typing import Any

from sandbox.opensearch.exceptions import OsError
from sandbox.opensearch.models import (
    TIMING,
    DomainState,
    Index,
    Snapshot,
    SnapshotIndex,
    java_replacement,
    repository_data,
    resolve,
)

Result = tuple[int, Any]
_ACK = {"acknowledged": True}
_INDEX_NAME = re.compile(r"^[a-z0-9][^\\/*?\"<>| ,#:A-Z]{0,254}$")


def _millis_iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _shards(total: int) -> dict[str, int]:
    return {"total": total, "successful": total, "failed": 0}


# ---- indices -------------------------------------------------------------------------------------------------------


def create_index(state: DomainState, name: str, body: dict[str, Any]) -> Result:
    if not _INDEX_NAME.match(name):
        raise OsError(400, "invalid_index_name_exception", f"Invalid index name [{name}]", index=name)
    if name in state.indices:
        raise OsError(400, "resource_already_exists_exception", f"index [{name}/{state.indices[name].uuid}] "
                      "already exists", index=name)
    settings = body.get("settings", {})
    settings = settings.get("index", settings)
    state.indices[name] = Index(name=name, shards=int(settings.get("number_of_shards", 1)),
                                replicas=int(settings.get("number_of_replicas", 1)))
    return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}


def delete_index(state: DomainState, expression: str) -> Result:
    if "*" in expression or expression == "_all":
        # AWS domains set action.destructive_requires_name: deletion must name every index.
        raise OsError(400, "illegal_argument_exception", "Wildcard expressions or all indices are not allowed")
    for name in resolve(state, expression):
        del state.indices[name]
    return 200, _ACK


def write_document(state: DomainState, name: str, doc_id: str | None) -> Result:
    index = state.indices.get(name)
    if index is None:
        # Auto-creation of indices on first write, as OpenSearch does by default.
        create_index(state, name, {})
        index = state.indices[name]
    if index.closed:
        raise OsError(400, "index_closed_exception", "closed", index=name)
    if index.follow is not None or index.write_block or not index.ready():
        block = ("FORBIDDEN/1000/index read-only(cross-cluster-replication)" if index.follow is not None else
                 "FORBIDDEN/8/index write (api)" if index.write_block else "SERVICE_UNAVAILABLE/1/state not recovered")
        raise OsError(403 if index.follow or index.write_block else 503, "cluster_block_exception",
                      f"index [{name}] blocked by: [{block}];")
    index.write_times.append(time.monotonic())
    return 201, {"_index": name, "_id": doc_id or f"doc{index.docs}", "_version": 1, "result": "created",
                 "_shards": {"total": 1 + index.replicas, "successful": 1 + index.replicas, "failed": 0},
                 "_seq_no": index.docs - 1, "_primary_term": 1}


def count(state: DomainState, expression: str) -> Result:
    names = resolve(state, expression)
    return 200, {"count": sum(state.indices[n].docs for n in names),
                 "_shards": {**_shards(sum(state.indices[n].shards for n in names)), "skipped": 0}}


def open_close(state: DomainState, expression: str, close: bool) -> Result:
    names = resolve(state, expression)
    for name in names:
        state.indices[name].closed = close
    if close:
        return 200, {"acknowledged": True, "shards_acknowledged": True,
                     "indices": {n: {"closed": True} for n in names}}
    return 200, {"acknowledged": True, "shards_acknowledged": True}


def get_settings(state: DomainState, expression: str) -> Result:
    out = {}
    for name in resolve(state, expression):
        index = state.indices[name]
        settings: dict[str, Any] = {"number_of_shards": str(index.shards), "number_of_replicas": str(index.replicas),
                                    "uuid": index.uuid, "creation_date": str(index.created_ms),
                                    "provided_name": name, "version": {"created": "136327827"}}
        if index.write_block:
            settings["blocks"] = {"write": "true"}
        out[name] = {"settings": {"index": settings}}
    return 200, out


def put_settings(state: DomainState, expression: str, body: dict[str, Any]) -> Result:
    settings = body.get("index", body.get("settings", body))
    flat = {**settings.get("index", {}), **settings} if isinstance(settings, dict) else {}
    block = flat.get("blocks.write", (flat.get("blocks") or {}).get("write"))
    for name in resolve(state, expression):
        if block is not None:
            state.indices[name].write_block = str(block).lower() == "true"
    return 200, _ACK


# ---- cluster and cat -----------------------------------------------------------------------------------------------


def _worst(statuses: list[str]) -> str:
    return "red" if "red" in statuses else "yellow" if "yellow" in statuses else "green"


def cluster_health(state: DomainState, expression: str | None, query: dict[str, str]) -> Result:
    names = resolve(state, expression, allow_missing=True) if expression else sorted(state.indices)
    missing = expression is not None and not names
    indices = {n: state.indices[n] for n in names if not state.indices[n].closed}
    statuses = [i.health() for i in indices.values()]
    primaries = sum(i.shards for i in indices.values() if i.ready())
    initializing = sum(i.shards * (1 + i.replicas) for i in indices.values() if not i.ready())
    body: dict[str, Any] = {
        "cluster_name": f"{state.account}:{state.name}", "status": "red" if missing else _worst(statuses),
        "timed_out": missing, "number_of_nodes": 3, "number_of_data_nodes": 3, "discovered_master": True,
        "discovered_cluster_manager": True, "active_primary_shards": primaries,
        "active_shards": sum(i.shards * (1 + i.replicas) for i in indices.values() if i.ready()),
        "relocating_shards": 0, "initializing_shards": initializing, "unassigned_shards": 0,
        "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0 if not initializing else 0.0,
    }
    if query.get("level") in ("indices", "shards"):
        body["indices"] = {n: {"status": i.health(), "number_of_shards": i.shards, "number_of_replicas": i.replicas,
                               "active_primary_shards": i.shards if i.ready() else 0,
                               "active_shards": i.shards * (1 + i.replicas) if i.ready() else 0,
                               "relocating_shards": 0,
                               "initializing_shards": 0 if i.ready() else i.shards * (1 + i.replicas),
                               "unassigned_shards": 0} for n, i in indices.items()}
    # A health request for an index that does not exist waits for it, then answers 408 with timed_out.
    return (408 if missing else 200), body


def cluster_blocks(state: DomainState, expression: str | None) -> Result:
    names = resolve(state, expression, allow_missing=True) if expression else sorted(state.indices)
    blocks: dict[str, Any] = {}
    for name in names:
        index, found = state.indices[name], {}
        if index.closed:
            found["4"] = {"description": "index closed", "retryable": False, "levels": ["read", "write"]}
        if index.write_block:
            found["8"] = {"description": "index write (api)", "retryable": False, "levels": ["write"]}
        if index.follow is not None:
            found["1000"] = {"description": "index read-only(cross-cluster-replication)", "retryable": False,
                             "levels": ["write", "metadata_write"]}
        if found:
            blocks[name] = found
    return 200, {"cluster_name": f"{state.account}:{state.name}",
                 "cluster_uuid": state.name, "blocks": {"indices": blocks} if blocks else {}}


def cat_columns(rows: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
    """The `h` parameter of the cat APIs: only the named columns, in that order."""
    if not query.get("h"):
        return rows
    columns = query["h"].split(",")
    return [{c: row.get(c) for c in columns} for row in rows]


def cat_indices(state: DomainState, expression: str | None) -> Result:
    names = resolve(state, expression, allow_missing=True) if expression else sorted(state.indices)
    rows = []
    for name in names:
        i = state.indices[name]
        rows.append({"health": i.health() if not i.closed else None, "status": "close" if i.closed else "open",
                     "index": name, "uuid": i.uuid, "pri": str(i.shards), "rep": str(i.replicas),
                     "docs.count": str(i.docs) if not i.closed else None, "docs.deleted": "0",
                     "store.size": f"{i.docs * 2}kb", "pri.store.size": f"{i.docs}kb"})
    return 200, rows


def cat_recovery(state: DomainState, expression: str | None) -> Result:
    names = resolve(state, expression) if expression else sorted(state.indices)
    rows = []
    for name in names:
        i = state.indices[name]
        for shard, copy in ((s, c) for s in range(i.shards) for c in range(1 + i.replicas)):
            # The primary copy recovers from the source (store, snapshot); each replica copies its primary.
            rec = i.recovery if copy == 0 else {"type": "peer"}
            done = i.ready()
            rows.append({"index": name, "shard": str(shard), "time": "250ms", "type": rec["type"],
                         "stage": "done" if done else "index", "source_host": "n/a", "source_node": "n/a",
                         "target_host": "x.x.x.x", "target_node": "node-1",
                         "repository": rec.get("repository", "n/a"), "snapshot": rec.get("snapshot", "n/a"),
                         "files": "0", "files_recovered": "0", "files_percent": "100.0%" if done else "0.0%",
                         "files_total": "0", "bytes": "0", "bytes_recovered": "0",
                         "bytes_percent": "100.0%" if done else "0.0%", "bytes_total": "0",
                         "translog_ops": "0", "translog_ops_recovered": "0", "translog_ops_percent": "100.0%"})
    return 200, rows


# ---- snapshots -----------------------------------------------------------------------------------------------------


def _repository(state: DomainState, repo: str) -> dict[str, Any]:
    found = state.repositories.get(repo)
    if found is None:
        raise OsError(404, "repository_missing_exception", f"[{repo}] missing")
    return found


def put_repository(state: DomainState, repo: str, body: dict[str, Any]) -> Result:
    settings = body.get("settings") or {}
    if body.get("type") != "s3" or not settings.get("bucket"):
        raise OsError(500, "repository_exception", f"[{repo}] repository type [{body.get('type')}] or bucket "
                      "missing: AWS domains register only s3 repositories")
    if not settings.get("role_arn"):
        # AWS needs the role the service assumes to reach the bucket.
        raise OsError(500, "repository_verification_exception", f"[{repo}] role_arn is required")
    state.repositories[repo] = {"type": "s3", "settings": {k: str(v) for k, v in settings.items()}}
    return 200, _ACK


def get_repository(state: DomainState, repo: str) -> Result:
    return 200, {repo: _repository(state, repo)}


def _snapshot_view(snapshot: Snapshot) -> dict[str, Any]:
    total = sum(i.shards for i in snapshot.indices.values())
    view = {"snapshot": snapshot.name, "uuid": snapshot.uuid, "version_id": 136327827, "version": "2.11.0",
            "indices": sorted(snapshot.indices), "data_streams": [], "include_global_state": True,
            "state": snapshot.state, "start_time": _millis_iso(snapshot.start_ms),
            "start_time_in_millis": snapshot.start_ms, "end_time": _millis_iso(snapshot.end_ms),
            "end_time_in_millis": snapshot.end_ms, "duration_in_millis": snapshot.end_ms - snapshot.start_ms,
            "failures": [], "shards": _shards(total)}
    if snapshot.state == "IN_PROGRESS":
        # An unfinished snapshot has no end yet, nor a shard tally.
        view.update(end_time_in_millis=0, duration_in_millis=0, shards={"total": 0, "failed": 0, "successful": 0})
        del view["end_time"]
    return view


def create_snapshot(state: DomainState, repo: str, name: str, body: dict[str, Any],
                    query: dict[str, str]) -> Result:
    snapshots = repository_data(_repository(state, repo)["settings"])
    if name in snapshots:
        raise OsError(400, "invalid_snapshot_name_exception",
                      f"[{repo}:{name}] Invalid snapshot name [{name}], snapshot with the same name already exists")
    expression = body.get("indices", "_all")
    names = resolve(state, ",".join(expression) if isinstance(expression, list) else expression)
    now = int(time.time() * 1000)
    snapshot = Snapshot(name=name, start_ms=now, end_ms=now + 1, indices={
        n: SnapshotIndex(state.indices[n].shards, state.indices[n].replicas, state.indices[n].docs) for n in names})
    snapshots[name] = snapshot
    if query.get("wait_for_completion") != "true":
        snapshot.ready_at = time.monotonic() + TIMING.snapshot_seconds
        snapshot.end_ms = now + int(TIMING.snapshot_seconds * 1000)
    if query.get("wait_for_completion") == "true":
        return 200, {"snapshot": _snapshot_view(snapshot)}
    return 200, {"accepted": True}


def get_snapshots(state: DomainState, repo: str, expression: str) -> Result:
    snapshots = repository_data(_repository(state, repo)["settings"])
    if expression in ("_all", "*"):
        found = sorted(snapshots.values(), key=lambda s: s.start_ms)
    else:
        found = []
        for name in expression.split(","):
            if name not in snapshots:
                raise OsError(404, "snapshot_missing_exception", f"[{repo}:{name}] is missing")
            found.append(snapshots[name])
    return 200, {"snapshots": [_snapshot_view(s) for s in found]}


def restore(state: DomainState, repo: str, name: str, body: dict[str, Any]) -> Result:
    snapshots = repository_data(_repository(state, repo)["settings"])
    snapshot = snapshots.get(name)
    if snapshot is None:
        raise OsError(404, "snapshot_missing_exception", f"[{repo}:{name}] is missing")
    where = f"[{repo}:{name}/{snapshot.uuid}]"
    if snapshot.state != "SUCCESS":
        raise OsError(500, "snapshot_restore_exception", f"{where} unsupported snapshot state [{snapshot.state}]")
    expression = body.get("indices", "_all")
    wanted = expression if isinstance(expression, list) else [p for p in expression.split(",") if p]
    names: list[str] = []
    for part in wanted or ["_all"]:
        pattern = re.compile("^" + re.escape(part).replace(r"\*", ".*") + "$") if part not in ("_all",) else None
        matched = [n for n in sorted(snapshot.indices) if pattern is None or pattern.match(n)]
        if not matched and "*" not in part and part != "_all" and not body.get("ignore_unavailable"):
            raise OsError(404, "index_not_found_exception", f"no such index [{part}]", index=part)
        names.extend(matched)
    renames: dict[str, str] = {}  # snapshot index -> the index it is restored as
    for source in dict.fromkeys(names):
        target = source
        if body.get("rename_pattern") is not None:
            target = re.sub(body["rename_pattern"], java_replacement(str(body.get("rename_replacement", ""))),
                            source)
        if target in renames.values():
            raise OsError(500, "snapshot_restore_exception", f"{where} indices [{source}] and another index are "
                          f"renamed into the same index [{target}]")
        existing = state.indices.get(target)
        if existing is not None and not existing.closed:
            raise OsError(500, "snapshot_restore_exception",
                          f"{where} cannot restore index [{target}] because an open index with same name already "
                          "exists in the cluster. Either close or delete the existing index or restore the index "
                          "under a different name by providing a rename pattern and replacement name")
        if existing is not None and existing.shards != snapshot.indices[source].shards:
            raise OsError(500, "snapshot_restore_exception",
                          f"{where} cannot restore index [{target}] with [{existing.shards}] shards from a snapshot "
                          f"of index [{source}] with [{snapshot.indices[source].shards}] shards")
        renames[source] = target
    ready_at = time.monotonic() + TIMING.restore_seconds
    for source, target in renames.items():
        copy = snapshot.indices[source]
        state.indices[target] = Index(name=target, shards=copy.shards, replicas=copy.replicas,
                                      write_times=[0.0] * copy.docs, ready_at=ready_at,
                                      recovery={"type": "snapshot", "repository": repo, "snapshot": name,
                                                "source_index": source})
    return 200, {"accepted": True}
