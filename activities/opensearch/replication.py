"""opensearch.domain, method replication: promote cross-cluster replication followers in the recovery domain.

`POST _plugins/_replication/<index>/_stop` turns a follower into an ordinary index for good (replication cannot be
resumed), so a drill never calls it. The replication status API is the state machine's input: SYNCING (with the
leader's and the follower's checkpoints), BOOTSTRAPING (the plugin's spelling), PAUSED, FAILED, or REPLICATION NOT IN
PROGRESS, which it also answers for an index that does not exist: existence is checked in `_cat/indices`. A stopped
follower is writable once the plugin has lifted its write block (id 1000), which `_cluster/state/blocks` shows.
"""

from __future__ import annotations

from typing import Any

from activities.core.context import ResourceContext
from activities.core.aws import fatal
from contracts.activities import Operation
from activities.opensearch.rest import DomainRest, error_reason, error_type, wait
from plans.model import Mode

NOT_REPLICATING = "REPLICATION NOT IN PROGRESS"
_BOOTSTRAPPING = ("BOOTSTRAPING", "BOOTSTRAPPING")  # the plugin's spelling, and the dictionary's in case it is fixed
_RUNNING = ("SYNCING", *_BOOTSTRAPPING)


def followers(rest: DomainRest, indices: list[str]) -> dict[str, dict[str, Any]]:
    """Each follower's replication status and lag (in operations), as the recovery domain reports them."""
    present = {row["index"] for row in rest.expect("GET", "_cat/indices", query={"format": "json", "h": "index"})}
    missing = [index for index in indices if index not in present]
    if missing:
        raise fatal(f"follower indices {', '.join(missing)} not found on OpenSearch domain {rest.domain}",
                    "IndexNotFound")
    report: dict[str, dict[str, Any]] = {}
    for index in indices:
        status, data = rest.call("GET", f"_plugins/_replication/{index}/_status")
        if status != 200:
            raise fatal(f"replication status of {index} on {rest.domain}: {status} {error_reason(data)}",
                        error_type(data) or f"Http{status}")
        details = data.get("syncing_details") or {}
        leader, follower = details.get("leader_checkpoint"), details.get("follower_checkpoint")
        report[index] = {
            "status": data.get("status"),
            "reason": data.get("reason"),
            "leader": f"{data.get('leader_alias')}:{data.get('leader_index')}" if data.get("leader_alias") else None,
            "lagOperations": max(leader - follower, 0) if leader is not None and follower is not None else None,
        }
    return report


def preflight(ctx: ResourceContext, params: Any, rest: DomainRest) -> Operation:
    report = followers(rest, params.indices)
    stopped = [i for i, r in report.items() if r["status"] == NOT_REPLICATING]
    if ctx.is_drill:
        idle = [f"{i} ({r['status']})" for i, r in report.items() if r["status"] not in _RUNNING]
        if idle:
            raise fatal(f"followers on {rest.domain} not replicating: {', '.join(idle)}", "ReplicationNotRunning")
    message = f"{len(report)} follower indices on {rest.domain}: " + ", ".join(
        f"{i} {r['status']}" for i, r in report.items())
    if stopped and not ctx.is_drill:
        message += f" ({len(stopped)} already promoted)"
    return Operation(done=True, outputs={"followers": report}, message=message)


def activate(ctx: ResourceContext, params: Any, rest: DomainRest, handle: dict[str, Any]) -> Operation:
    report = followers(rest, params.indices)
    if ctx.is_drill:
        return _verify(params, rest, report)
    graceful = ctx.mode is not Mode.DISASTER
    behind = {}
    for index, state in report.items():
        if state["status"] == NOT_REPLICATING:
            continue
        if graceful and state["status"] not in _RUNNING:
            raise fatal(f"replication of {index} on {rest.domain} is {state['status']} ({state['reason']}): a "
                        "planned failover cannot prove it lost nothing; resume it, or fail over in disaster mode",
                        "ReplicationPaused" if state["status"] == "PAUSED" else "ReplicationFailed")
        if graceful and (state["status"] in _BOOTSTRAPPING or state["lagOperations"]):
            # Planned: stop only once the follower holds everything the leader acknowledged.
            behind[index] = state["lagOperations"]
            continue
        _stop(ctx, rest, index, state)
    if behind:
        return wait(f"waiting for followers to catch up before stopping replication: {behind}", handle,
                    {"followers": report})
    blocked = _write_blocked(rest, params.indices)
    if blocked:
        return wait(f"replication stopped; waiting for the write block to lift on {', '.join(blocked)}", handle,
                    {"followers": report})
    return Operation(done=True, handle=handle, outputs={"promoted": params.indices},
                     message=f"{len(params.indices)} indices on {rest.domain} promoted: replication stopped, writable")


def cleanup(ctx: ResourceContext, params: Any, rest: DomainRest, handle: dict[str, Any]) -> Operation:
    if ctx.is_drill:
        return Operation(done=True, message="the drill left replication untouched: nothing to clean up")
    return Operation(done=True, message=f"promoted indices on {rest.domain} stay as they are; the old leader "
                                        "indices in the primary region are not changed")


def _verify(params: Any, rest: DomainRest, report: dict[str, dict[str, Any]]) -> Operation:
    idle = [f"{i} ({r['status']}: {r['reason']})" for i, r in report.items() if r["status"] not in _RUNNING]
    if idle:
        raise fatal(f"followers on {rest.domain} not replicating: {', '.join(idle)}", "ReplicationNotRunning")
    booting = [i for i, r in report.items() if r["status"] in _BOOTSTRAPPING]
    if booting:
        return wait(f"followers still bootstrapping: {', '.join(booting)}", {}, {"followers": report})
    limit = params.max_lag_operations
    lagging = {i: r["lagOperations"] for i, r in report.items()
               if limit is not None and (r["lagOperations"] or 0) > limit}
    if lagging:
        raise fatal(f"followers on {rest.domain} are further behind than {limit} operations: {lagging}",
                    "ReplicationLagging")
    # The write block is what keeps a follower from diverging; a follower without it is not a real standby.
    unblocked = [i for i in params.indices if i not in _write_blocked(rest, params.indices)]
    if unblocked:
        raise fatal(f"followers {', '.join(unblocked)} on {rest.domain} accept writes while replicating",
                    "FollowerWritable")
    worst = max((r["lagOperations"] or 0 for r in report.values()), default=0)
    return Operation(done=True, outputs={"followers": report, "maxLagOperations": worst},
                     message=f"{len(report)} followers on {rest.domain} syncing, at most {worst} operations behind "
                             "(replication not stopped: drill)")


def _stop(ctx: ResourceContext, rest: DomainRest, index: str, state: dict[str, Any]) -> None:
    status, data = rest.call("POST", f"_plugins/_replication/{index}/_stop", body={})
    # 400 "No replication in progress": an earlier attempt's stop got there first.
    if status == 400 and "no replication in progress" in error_reason(data).lower():
        return
    if status != 200:
        raise fatal(f"stopping replication of {index} on {rest.domain}: {status} {error_reason(data)}",
                    error_type(data) or f"Http{status}")
    ctx.log.info("opensearch.replication_stopped", domain=rest.domain, index=index, was=state["status"],
                 lag=state["lagOperations"])


def _write_blocked(rest: DomainRest, indices: list[str]) -> list[str]:
    blocked = []
    for start in range(0, len(indices), 40):  # the names go in the URL: keep it short
        chunk = indices[start:start + 40]
        data = rest.expect("GET", f"_cluster/state/blocks/{','.join(chunk)}")
        blocks = (data.get("blocks") or {}).get("indices") or {}
        blocked += [i for i in chunk if any("write" in b.get("levels", []) for b in (blocks.get(i) or {}).values())]
    return blocked
