"""opensearch.domain, method snapshotRestore: restore indices from a manual S3 snapshot in the recovery domain.

Which indices are "ours" is what the domain says: an index whose recovery source (`_cat/recovery`) is this
repository's snapshot was restored by this operation, so a retry waits for it instead of restoring again. Anything
else with a target name is someone's data: a drill never touches it (its names are per execution anyway), a real
failover refuses unless `replaceExisting` allows closing it and restoring over it (OpenSearch restores only into a
closed index of the same shard count).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from activities.core.context import ResourceContext
from activities.core.aws import fatal
from contracts.activities import Operation
from activities.opensearch.rest import (
    DomainRest,
    describe,
    error_reason,
    error_type,
    rest_for,
    wait,
)
from plans.model import Mode

# Index names per request: a comma-joined list in the URL must stay well under the usual 4 KB line limit.
_CHUNK = 40


def drill_prefix(ctx: ResourceContext) -> str:
    return f"dr-drill-{ctx.drill_suffix()}-"


def preflight(ctx: ResourceContext, params: Any, rest: DomainRest) -> Operation:
    snap = _snapshot(rest, params, params.snapshot)
    sources = _selected(snap, params)
    outputs: dict[str, Any] = {"repository": params.repository, "snapshot": snap["snapshot"],
                               "snapshotEnd": snap.get("end_time"), "indices": sources}
    if _fresh_wanted(ctx, params):
        primary = _primary_rest(ctx, params)
        if primary.call("GET", f"_snapshot/{params.repository}")[0] == 404:
            raise fatal(f"snapshot repository {params.repository} is not registered on the primary domain "
                        f"{primary.domain}", "RepositoryNotFound")
        outputs["snapshotFirst"] = primary.domain
    if not ctx.is_drill:
        foreign = _foreign_open(rest, params, snap["snapshot"], sources)
        if foreign and not params.replace_existing:
            raise _exists_error(rest, foreign)
        if foreign:
            outputs["willReplace"] = foreign
    return Operation(done=True, outputs=outputs, message=f"snapshot {params.repository}:{snap['snapshot']} holds "
                     f"{len(sources)} indices to restore into {rest.domain}")


def activate(ctx: ResourceContext, params: Any, rest: DomainRest, handle: dict[str, Any]) -> Operation:
    chosen = handle.get("snapshot") or params.snapshot
    if _fresh_wanted(ctx, params):
        fresh = _fresh_snapshot(ctx, params, rest)
        if isinstance(fresh, Operation):
            return fresh
        chosen = fresh
    snap = _snapshot(rest, params, chosen)
    name, repo = snap["snapshot"], params.repository
    prefix = drill_prefix(ctx) if ctx.is_drill else ""
    targets = {source: prefix + source for source in _selected(snap, params)}
    handle = {"snapshot": name}
    existing = _existing(rest, list(targets.values()))
    open_targets = [t for t in targets.values() if existing.get(t, {}).get("status") == "open"]
    origins = _origins(rest, open_targets)
    ours = {t for t in open_targets if origins.get(t) == ("snapshot", repo, name)}
    foreign = [t for t in open_targets if t not in ours]
    if foreign:
        if ctx.is_drill or not params.replace_existing:
            raise _exists_error(rest, foreign)
        for chunk in _chunks(foreign):
            rest.expect("POST", f"{','.join(chunk)}/_close")
        ctx.log.warning("opensearch.closed_for_restore", domain=rest.domain, indices=foreign)

    missing = [source for source, target in targets.items() if target not in ours]
    if missing:
        body: dict[str, Any] = {"indices": ",".join(missing), "ignore_unavailable": False,
                                "include_global_state": False,
                                # The snapshot's aliases name production indices: a drill copy must not take them.
                                "include_aliases": not ctx.is_drill}
        if prefix:
            body.update(rename_pattern="^(.+)$", rename_replacement=prefix + "$1")
        rest.expect("POST", f"_snapshot/{repo}/{name}/_restore", body)
        ctx.log.info("opensearch.restore_requested", domain=rest.domain, snapshot=f"{repo}:{name}",
                     indices=[targets[s] for s in missing])
        return wait(f"restoring {len(missing)} indices from {repo}:{name} into {rest.domain}", handle,
                    {"snapshot": name, "indices": sorted(targets.values())})

    health = _health(rest, list(targets.values()))
    green = sorted(t for t, status in health.items() if status == "green")
    outputs = {"snapshot": name, "indices": {t: existing[t].get("docs.count") for t in targets.values()}}
    if len(green) == len(targets):
        return Operation(done=True, handle=handle, outputs=outputs,
                         message=f"{len(targets)} indices restored from {repo}:{name} into {rest.domain}, all green")
    return wait(f"restored indices recovering in {rest.domain}: {len(green)}/{len(targets)} green", handle, outputs)


def cleanup(ctx: ResourceContext, params: Any, rest: DomainRest, handle: dict[str, Any]) -> Operation:
    if not ctx.is_drill:
        return Operation(done=True, message=f"the restored indices are {rest.domain}'s production indices now")
    prefix = drill_prefix(ctx)
    # The prefix carries this execution's and resource's digest: what matches it is this drill's and nothing else.
    names = [row["index"] for row in rest.expect("GET", f"_cat/indices/{prefix}*", query={"format": "json"})]
    for chunk in _chunks(names):
        status, data = rest.call("DELETE", ",".join(chunk))
        if status not in (200, 404):
            raise fatal(f"DELETE {','.join(chunk)} on {rest.domain}: {status} {error_reason(data)}",
                        error_type(data) or f"Http{status}")
    if names:
        ctx.log.info("opensearch.drill_indices_deleted", domain=rest.domain, indices=names)
    return Operation(done=True, outputs={"deleted": names},
                     message=f"deleted {len(names)} drill indices {prefix}* from {rest.domain}")


def newest(rest: DomainRest, params: Any) -> dict[str, Any]:
    snap = _snapshot(rest, params, params.snapshot)
    return {"name": snap["snapshot"], "state": snap["state"], "end": snap.get("end_time"),
            "indices": len(snap.get("indices", []))}


def _fresh_wanted(ctx: ResourceContext, params: Any) -> bool:
    return bool(params.primary_domain_name) and not ctx.is_drill and ctx.mode is not Mode.DISASTER


def _primary_rest(ctx: ResourceContext, params: Any) -> DomainRest:
    name = params.primary_domain_name
    return rest_for(ctx, name, describe(ctx, name, ctx.primary_region), ctx.primary_region)


def _fresh_snapshot(ctx: ResourceContext, params: Any, rest: DomainRest) -> str | Operation:
    """Planned failover: the primary's snapshot taken now, once it is complete and the recovery domain sees it."""
    repo, name = params.repository, f"dr-failover-{ctx.drill_suffix()}"
    primary = _primary_rest(ctx, params)
    handle = {"freshSnapshot": name}
    status, data = primary.call("GET", f"_snapshot/{repo}/{name}")
    if status == 404 and error_type(data) == "snapshot_missing_exception":
        body = {"indices": ",".join(params.indices) or "*,-.*", "include_global_state": False}
        status, data = primary.call("PUT", f"_snapshot/{repo}/{name}", body)
        # 400 invalid_snapshot_name_exception: an earlier attempt's snapshot of this name got there first.
        if status != 200 and error_type(data) != "invalid_snapshot_name_exception":
            raise fatal(f"snapshot {repo}:{name} of {primary.domain}: {status} {error_reason(data)}",
                        error_type(data) or f"Http{status}")
        ctx.log.info("opensearch.primary_snapshot_requested", domain=primary.domain, snapshot=f"{repo}:{name}")
        return wait(f"snapshotting the primary domain {primary.domain} as {repo}:{name}", handle)
    if status == 404:
        raise fatal(f"snapshot repository {repo} is not registered on the primary domain {primary.domain}",
                    "RepositoryNotFound")
    if status != 200:
        raise fatal(f"GET _snapshot/{repo}/{name} on {primary.domain}: {status} {error_reason(data)}",
                    error_type(data) or f"Http{status}")
    state = data["snapshots"][0].get("state")
    if state == "IN_PROGRESS":
        return wait(f"snapshot {repo}:{name} of {primary.domain} in progress", handle)
    if state != "SUCCESS":
        raise fatal(f"snapshot {repo}:{name} of {primary.domain} is {state}", "SnapshotNotUsable")
    # The recovery domain reads the repository through its own registration (a replicated bucket, maybe): the
    # snapshot may reach it a little later.
    if rest.call("GET", f"_snapshot/{repo}/{name}")[0] == 404:
        return wait(f"snapshot {repo}:{name} not yet visible to {rest.domain}", handle)
    return name


# --- helpers --------------------------------------------------------------------------------------------------------


def _snapshot(rest: DomainRest, params: Any, name: str | None) -> dict[str, Any]:
    repo = params.repository
    status, data = rest.call("GET", f"_snapshot/{repo}")
    if status == 404:
        raise fatal(f"snapshot repository {repo} is not registered on OpenSearch domain {rest.domain}",
                    "RepositoryNotFound")
    if status != 200:
        raise fatal(f"GET _snapshot/{repo} on {rest.domain}: {status} {error_reason(data)}", "RepositoryUnusable")
    status, data = rest.call("GET", f"_snapshot/{repo}/{name or '_all'}")
    if status == 404:
        raise fatal(f"snapshot {repo}:{name} not found on OpenSearch domain {rest.domain}", "SnapshotNotFound")
    if status != 200:
        raise fatal(f"GET _snapshot/{repo}/{name} on {rest.domain}: {status} {error_reason(data)}",
                    "SnapshotUnusable")
    snapshots = data.get("snapshots", [])
    if name is None:
        usable = [s for s in snapshots if s.get("state") == "SUCCESS"]
        if not usable:
            raise fatal(f"repository {repo} on {rest.domain} holds no successful snapshot", "SnapshotNotFound")
        newest = max(usable, key=lambda s: s.get("end_time_in_millis", 0))
        return dict(newest)
    snap = dict(snapshots[0])
    if snap.get("state") != "SUCCESS":
        # PARTIAL or FAILED snapshots miss shards: restoring one would bring incomplete indices into service.
        raise fatal(f"snapshot {repo}:{name} is {snap.get('state')}, not SUCCESS", "SnapshotNotUsable")
    return snap


def _selected(snap: dict[str, Any], params: Any) -> list[str]:
    available = sorted(snap.get("indices", []))
    if not params.indices:
        return [i for i in available if not i.startswith(".")]
    chosen: list[str] = []
    for wanted in params.indices:
        if "*" in wanted:
            pattern = re.compile("^" + re.escape(wanted).replace(r"\*", ".*") + "$")
            matched = [i for i in available if pattern.match(i) and (wanted.startswith(".") or i[0] != ".")]
        else:
            matched = [wanted] if wanted in available else []
        if not matched:
            raise fatal(f"snapshot {params.repository}:{snap['snapshot']} holds no index {wanted}",
                        "IndexNotInSnapshot")
        chosen.extend(matched)
    return list(dict.fromkeys(chosen))


def _chunks(names: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(names), _CHUNK):
        yield names[start:start + _CHUNK]


def _existing(rest: DomainRest, names: list[str]) -> dict[str, dict[str, Any]]:
    wanted = set(names)
    rows = rest.expect("GET", "_cat/indices", query={"format": "json"})
    return {row["index"]: row for row in rows if row["index"] in wanted}


def _origins(rest: DomainRest, names: list[str]) -> dict[str, tuple[str, str, str]]:
    """Where each (open) index was restored from: ("snapshot", repository, snapshot), from its primary shards'
    recovery rows (replica copies recover from their primary: type "peer")."""
    found: dict[str, tuple[str, str, str]] = {}
    columns = "index,type,repository,snapshot"
    for chunk in _chunks(names):
        rows = rest.expect("GET", f"_cat/recovery/{','.join(chunk)}", query={"format": "json", "h": columns})
        for row in rows:
            if row.get("type") == "snapshot":
                found.setdefault(row["index"], ("snapshot", row.get("repository", ""), row.get("snapshot", "")))
    return found


def _foreign_open(rest: DomainRest, params: Any, name: str, targets: list[str]) -> list[str]:
    existing = _existing(rest, targets)
    open_targets = [t for t in targets if existing.get(t, {}).get("status") == "open"]
    origins = _origins(rest, open_targets)
    return [t for t in open_targets if origins.get(t) != ("snapshot", params.repository, name)]


def _health(rest: DomainRest, names: list[str]) -> dict[str, str]:
    statuses: dict[str, str] = {}
    for chunk in _chunks(names):
        # 408: an index of the chunk is not there (yet); its absence shows as "missing".
        _, data = rest.call("GET", f"_cluster/health/{','.join(chunk)}", query={"level": "indices"},
                                 ok=(200, 408))
        for name in chunk:
            statuses[name] = (data.get("indices", {}).get(name) or {}).get("status", "missing")
    return statuses


def _exists_error(rest: DomainRest, names: list[str]) -> Exception:
    return fatal(f"{rest.domain} already has open indices {', '.join(names)} that this restore did not create; "
                 "set replaceExisting to close them and restore over them", "IndexExists")
