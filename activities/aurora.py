"""Aurora global database: make the recovery region's secondary cluster the primary.

Planned and failback: SwitchoverGlobalCluster (no data loss; the old primary becomes a secondary). Disaster:
FailoverGlobalCluster with AllowDataLoss (the old primary rejoins as a secondary when its region is back), or, with
`disasterMethod: detach`, RemoveFromGlobalCluster (detach and promote to a standalone cluster). Progress is
`GlobalCluster.FailoverState` (present while an operation runs) and the recovery cluster's `IsWriter` flag.

Drill: the global cluster is never touched: a switchover, failover or detach all move production writes or cut
replication. Of what AWS documents for a global secondary, a manual cluster snapshot (storage-level, replication
carries on) restored into a new standalone cluster is what a drill can use; whether a copy-on-write clone of a
secondary is allowed we could not confirm, so it is not relied on. The copy gets one instance so it serves
connections; CLEANUP deletes instance, cluster and snapshot, each only if tagged with this execution.

Every phase is a step function driven by what RDS reports, so a retried start or a poll after a crash resumes the
same operation: a retried ACTIVATE after the switchover finished sees the recovery cluster as the writer and is
done; it never asks for a second switchover, which would switch back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from activities.core.context import ResourceContext
from activities.core.aws import aws_call, fatal
from activities.core.context import TAG_EXECUTION
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, StateMachineModule, register
from plans.model import Mode

_DB_ID = r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$"
_POLL_SECONDS = 20.0
_DEFAULT_DRILL_CLASS = "db.r6g.large"
_BROKEN = frozenset("failed inaccessible-encryption-credentials incompatible-parameters incompatible-restore "
                    "stopped stopping".split())


class AuroraGlobalParameters(ModuleParameters):
    global_cluster_identifier: str = Field(pattern=r"^[A-Za-z][0-9A-Za-z-:._]{0,254}$")
    recovery_cluster_identifier: str = Field(pattern=_DB_ID)  # the secondary cluster in the recovery region
    # The primary cluster in the primary region; only names the headless secondary REPLICATE may create.
    primary_cluster_identifier: str | None = Field(default=None, pattern=_DB_ID)
    disaster_method: Literal["failover", "detach"] = "failover"  # disaster mode only; planned always switches over
    drill_instance_class: str | None = None  # the drill copy's instance (default: the recovery cluster's, or r6g)
    # REPLICATE, when the old primary region has no member left: a headless secondary created there (instances
    # are the owner's choice: replication needs none).
    new_secondary_identifier: str | None = Field(default=None, pattern=_DB_ID)


@register
class AuroraGlobalDatabase(StateMachineModule):
    action = "aurora.global_database"
    summary = "Switch over (planned) or fail over (disaster) an Aurora global database to the recovery region"
    Parameters = AuroraGlobalParameters

    def status(self, ctx: ResourceContext, params: AuroraGlobalParameters) -> dict[str, Any]:
        found = _describe_global(ctx, params.global_cluster_identifier)
        if found is None:
            return {"globalCluster": params.global_cluster_identifier, "exists": False}
        return {"globalCluster": params.global_cluster_identifier, "exists": True, **_report(found)}

    def instantiate(self, ctx: ResourceContext, params: AuroraGlobalParameters, handle: dict[str, Any]) -> Operation:
        return _preflight(ctx, params)

    def activate(self, ctx: ResourceContext, params: AuroraGlobalParameters, handle: dict[str, Any]) -> Operation:
        if ctx.is_drill:
            return _drill_copy(ctx, params)
        if ctx.mode is Mode.DISASTER and params.disaster_method == "detach":
            return _detach(ctx, params)
        return _change_writer(ctx, params, handle)

    def cleanup(self, ctx: ResourceContext, params: AuroraGlobalParameters, handle: dict[str, Any]) -> Operation:
        if ctx.is_drill:
            return _drill_cleanup(ctx, params)
        # The old primary is a secondary again (switchover, failover) or a standalone cluster (detach): either way it
        # holds data someone may need, so it is left for a human to decide.
        old = params.primary_cluster_identifier or "(primary region)"
        return Operation(done=True, message=f"old primary {old} left as it is")

    def replicate(self, ctx: ResourceContext, params: AuroraGlobalParameters, handle: dict[str, Any]) -> Operation:
        if ctx.is_drill:
            return Operation(done=True, message="replication untouched by drill")
        return _replicate_back(ctx, params)


def _preflight(ctx: ResourceContext, params: AuroraGlobalParameters) -> Operation:
    gid, rid = params.global_cluster_identifier, params.recovery_cluster_identifier
    found, recovery = _global(ctx, params), _recovery(ctx, params)
    member = _member(found, recovery["DBClusterArn"])
    if member is None:
        raise fatal(f"{rid} in {ctx.recovery_region} is not a member of global cluster {gid}", "NotAGlobalMember")
    outputs = {**_report(found), "recoveryStatus": recovery["Status"], "lagMilliseconds": _lag_ms(ctx, rid)}
    if found.get("FailoverState"):
        return _wait(f"{gid}: {found['FailoverState'].get('Status')} in progress", {}, outputs)
    if recovery["Status"] in _BROKEN:
        raise fatal(f"{rid} is {recovery['Status']}", "RecoveryClusterNotAvailable")
    if recovery["Status"] != "available" or member.get("SynchronizationStatus") == "pending-resync":
        return _wait(f"{rid} is {member.get('SynchronizationStatus') or recovery['Status']}; waiting", {}, outputs)
    role = "the primary already" if member.get("IsWriter") else "a healthy secondary"
    return Operation(done=True, outputs=outputs, message=f"{rid} is {role}")


def _change_writer(ctx: ResourceContext, params: AuroraGlobalParameters, handle: dict[str, Any]) -> Operation:
    gid, rid = params.global_cluster_identifier, params.recovery_cluster_identifier
    data_loss = ctx.mode is Mode.DISASTER
    what = "failover" if data_loss else "switchover"
    found, recovery = _global(ctx, params), _recovery(ctx, params)
    arn = recovery["DBClusterArn"]
    member, state = _member(found, arn), found.get("FailoverState")
    outputs = {**_report(found), "recoveryStatus": recovery["Status"], "endpoint": recovery.get("Endpoint")}
    if state:
        # Ours or someone else's: either way RDS refuses another one until it ends, and then we look again.
        return _wait(f"{gid}: {state.get('Status')} to {state.get('ToDbClusterArn')}", {**handle, "requested": True},
                     outputs)
    if member is None:
        raise fatal(f"{rid} is not a member of {gid}", "NotAGlobalMember")
    if member.get("IsWriter"):
        if recovery["Status"] == "available":
            return Operation(done=True, handle=handle, outputs=outputs, message=f"{rid} is the primary of {gid}")
        return _wait(f"{rid} is the writer, {recovery['Status']}", handle, outputs)
    if handle.get("requested"):
        raise fatal(f"the {what} of {gid} ended without making {rid} the primary (cancelled?)",
                    "GlobalFailoverCancelled")
    rds = _rds(ctx, ctx.recovery_region)  # the recovery region answers even when the primary's is down
    call = rds.failover_global_cluster if data_loss else rds.switchover_global_cluster
    extra = {"AllowDataLoss": True} if data_loss else {}
    # InvalidGlobalClusterStateFault: an earlier attempt's operation has started since we looked.
    aws_call(f"{what} {gid}", call, ("InvalidGlobalClusterStateFault",), GlobalClusterIdentifier=gid,
             TargetDbClusterIdentifier=arn, **extra)
    ctx.log.info(f"aurora.{what}_requested", global_cluster=gid, target=arn)
    return _wait(f"{what} of {gid} to {rid} requested", {"requested": True}, outputs)


def _detach(ctx: ResourceContext, params: AuroraGlobalParameters) -> Operation:
    gid, rid = params.global_cluster_identifier, params.recovery_cluster_identifier
    recovery = _recovery(ctx, params)
    arn, found = recovery["DBClusterArn"], _describe_global(ctx, gid)
    member = _member(found, arn)
    outputs = {"cluster": rid, "status": recovery["Status"], "endpoint": recovery.get("Endpoint")}
    if member is not None and member.get("IsWriter"):
        return Operation(done=True, outputs=outputs, message=f"{rid} is the primary")
    if member is not None:
        if found and found.get("FailoverState"):
            return _wait(f"{gid}: {found['FailoverState'].get('Status')}", {}, outputs)
        # Called in the secondary's region: it answers when the primary's region does not.
        aws_call(f"RemoveFromGlobalCluster {rid}", _rds(ctx, ctx.recovery_region).remove_from_global_cluster,
                 ("InvalidGlobalClusterStateFault",), GlobalClusterIdentifier=gid, DbClusterIdentifier=arn)
        ctx.log.info("aurora.detach_requested", global_cluster=gid, cluster=arn)
        return _wait(f"detaching {rid} from {gid}", {"detachRequested": True}, outputs)
    if recovery.get("ReplicationSourceIdentifier") or recovery["Status"] != "available":
        return _wait(f"promoting {rid} ({recovery['Status']})", {"detachRequested": True}, outputs)
    return Operation(done=True, outputs=outputs, message=f"{rid} detached and promoted, writable")


def _replicate_back(ctx: ResourceContext, params: AuroraGlobalParameters) -> Operation:
    gid, recovery = params.global_cluster_identifier, _recovery(ctx, params)
    found = _describe_global(ctx, gid)
    member = _member(found, recovery["DBClusterArn"])
    if found and found.get("FailoverState"):
        return _wait(f"{gid}: {found['FailoverState'].get('Status')}; waiting", {})
    if member is not None and not member.get("IsWriter"):
        raise fatal(f"{params.recovery_cluster_identifier} is still a secondary of {gid}; ACTIVATE first",
                    "NotPromoted")
    if member is None:
        return _rebuild_global(ctx, params, recovery, found)

    # The recovery cluster writes. After a switchover the old primary is a secondary already; after a failover it
    # rejoins by itself once its region is back, and resynchronises.
    assert found is not None
    back_home = [m for m in found.get("GlobalClusterMembers", []) if _region(m["DBClusterArn"]) == ctx.primary_region]
    outputs: dict[str, Any] = {**_report(found)}
    if back_home:
        syncing = [m["DBClusterArn"] for m in back_home if m.get("SynchronizationStatus") == "pending-resync"]
        if syncing:
            return _wait(f"{', '.join(syncing)} resynchronising with the new primary", {}, outputs)
        secondary = _cluster(ctx, ctx.primary_region, back_home[0]["DBClusterArn"].rsplit(":", 1)[-1])
        if secondary is not None and secondary["Status"] != "available":
            return _wait(f"secondary {secondary['DBClusterIdentifier']} is {secondary['Status']}", {}, outputs)
        return Operation(done=True, outputs=outputs, message=f"{ctx.primary_region} replicates from {gid}'s primary")
    return _add_secondary(ctx, params, recovery, outputs)


def _add_secondary(ctx: ResourceContext, params: AuroraGlobalParameters, recovery: dict[str, Any],
                   outputs: dict[str, Any]) -> Operation:
    new_id = params.new_secondary_identifier or \
        f"{params.primary_cluster_identifier or params.recovery_cluster_identifier}-secondary"
    rds = _rds(ctx, ctx.primary_region)
    existing = _cluster(ctx, ctx.primary_region, new_id)
    if existing is not None and existing.get("GlobalClusterIdentifier") != params.global_cluster_identifier:
        raise fatal(f"{new_id} already exists in {ctx.primary_region} outside {params.global_cluster_identifier}",
                    "SecondaryIdentifierTaken")
    if existing is None:
        # Engine and version must match the primary's for a secondary; credentials come from the global database.
        aws_call(f"CreateDBCluster {new_id} in {ctx.primary_region}", rds.create_db_cluster,
                 ("DBClusterAlreadyExistsFault",), DBClusterIdentifier=new_id, Engine=recovery["Engine"],
                 EngineVersion=recovery["EngineVersion"], GlobalClusterIdentifier=params.global_cluster_identifier,
                 DeletionProtection=False, Tags=ctx.tags())
        ctx.log.info("aurora.secondary_requested", cluster=new_id, region=ctx.primary_region)
    return _wait(f"adding {new_id} in {ctx.primary_region} to {params.global_cluster_identifier}", {}, outputs)


def _rebuild_global(ctx: ResourceContext, params: AuroraGlobalParameters, recovery: dict[str, Any],
                    found: dict[str, Any] | None) -> Operation:
    """After a detach the promoted cluster heads no global database. The old one, if it still exists, holds only
    the old primary: that is removed from it (not deleted: it becomes a standalone cluster for a human to retire),
    the empty global cluster is deleted, and a new one of the same name is created around the promoted cluster."""
    gid, arn = params.global_cluster_identifier, recovery["DBClusterArn"]
    if recovery.get("ReplicationSourceIdentifier") or recovery["Status"] != "available":
        raise fatal(f"{params.recovery_cluster_identifier} is not a promoted, available cluster", "NotPromoted")
    if found is None:
        aws_call(f"CreateGlobalCluster {gid}", _rds(ctx, ctx.recovery_region).create_global_cluster,
                 ("GlobalClusterAlreadyExistsFault",), GlobalClusterIdentifier=gid, SourceDBClusterIdentifier=arn)
        ctx.log.info("aurora.global_cluster_requested", global_cluster=gid, primary=arn)
        return _wait(f"creating {gid} around {params.recovery_cluster_identifier}", {})
    members = [m["DBClusterArn"] for m in found.get("GlobalClusterMembers", [])]
    if not members:
        aws_call(f"DeleteGlobalCluster {gid}", _rds(ctx, ctx.recovery_region).delete_global_cluster,
                 ("GlobalClusterNotFoundFault",), GlobalClusterIdentifier=gid)
        return _wait(f"deleting the emptied global cluster {gid}", {})
    if len(members) == 1 and _region(members[0]) == ctx.primary_region:
        aws_call(f"RemoveFromGlobalCluster {members[0]}", _rds(ctx, ctx.primary_region).remove_from_global_cluster,
                 ("InvalidGlobalClusterStateFault",), GlobalClusterIdentifier=gid, DbClusterIdentifier=members[0])
        ctx.log.info("aurora.old_primary_detached", global_cluster=gid, cluster=members[0])
        return _wait(f"detaching the old primary {members[0]} from {gid} (it is kept)", {"oldPrimary": members[0]})
    raise fatal(f"{gid} still has members {members}; rebuild the global database by hand", "GlobalClusterInUse")


def _drill_copy(ctx: ResourceContext, params: AuroraGlobalParameters) -> Operation:
    rds = _rds(ctx, ctx.recovery_region)
    snapshot_id, copy_id, instance_id = _drill_names(ctx, params)
    handle = {"snapshotId": snapshot_id, "clusterId": copy_id, "instanceId": instance_id}
    recovery = _recovery(ctx, params)

    copy = _cluster(ctx, ctx.recovery_region, copy_id)
    if copy is not None:
        instance = _instance(ctx, ctx.recovery_region, instance_id)
        outputs = {"drillCluster": copy_id, "status": copy["Status"], "endpoint": copy.get("Endpoint")}
        if instance is None:
            aws_call(f"CreateDBInstance {instance_id}", rds.create_db_instance, ("DBInstanceAlreadyExists",),
                     DBInstanceIdentifier=instance_id, DBClusterIdentifier=copy_id, Engine=copy["Engine"],
                     DBInstanceClass=params.drill_instance_class or _instance_class(ctx, recovery), Tags=ctx.tags())
            return _wait(f"adding instance {instance_id} to {copy_id}", {**handle, "step": "instance"}, outputs)
        if copy["Status"] in _BROKEN or instance["DBInstanceStatus"] in _BROKEN:
            raise fatal(f"drill copy {copy_id} is {copy['Status']}/{instance['DBInstanceStatus']}", "DrillCopyFailed")
        if copy["Status"] == "available" and instance["DBInstanceStatus"] == "available":
            return Operation(done=True, handle=handle, outputs=outputs, message=f"drill copy {copy_id} available")
        return _wait(f"drill copy {copy_id} is {copy['Status']}/{instance['DBInstanceStatus']}",
                     {**handle, "step": "instance"}, outputs)

    snapshot = _cluster_snapshot(ctx, snapshot_id)
    if snapshot is None:
        aws_call(f"CreateDBClusterSnapshot {snapshot_id}", rds.create_db_cluster_snapshot,
                 ("DBClusterSnapshotAlreadyExistsFault",), DBClusterSnapshotIdentifier=snapshot_id,
                 DBClusterIdentifier=params.recovery_cluster_identifier, Tags=ctx.tags())
        ctx.log.info("aurora.drill_snapshot_requested", snapshot=snapshot_id)
        return _wait(f"snapshotting the secondary as {snapshot_id}", {**handle, "step": "snapshot"})
    if snapshot["Status"] in ("failed", "error"):
        raise fatal(f"drill snapshot {snapshot_id} is {snapshot['Status']}", "DrillSnapshotFailed")
    if snapshot["Status"] != "available":
        return _wait(f"snapshot {snapshot_id} is {snapshot['Status']}", {**handle, "step": "snapshot"})

    # In the secondary's network, so a drill test reaches the copy the way the application would reach the cluster.
    network = {"DBSubnetGroupName": recovery.get("DBSubnetGroup"),
               "VpcSecurityGroupIds": [g["VpcSecurityGroupId"] for g in recovery.get("VpcSecurityGroups") or []]}
    aws_call(f"RestoreDBClusterFromSnapshot {copy_id}", rds.restore_db_cluster_from_snapshot,
             ("DBClusterAlreadyExistsFault",), DBClusterIdentifier=copy_id, SnapshotIdentifier=snapshot_id,
             Engine=recovery["Engine"], EngineVersion=recovery["EngineVersion"], DeletionProtection=False,
             Tags=ctx.tags(), **{k: v for k, v in network.items() if v})
    ctx.log.info("aurora.drill_restore_requested", cluster=copy_id, snapshot=snapshot_id)
    return _wait(f"restoring drill copy {copy_id} from {snapshot_id}", {**handle, "step": "restore"})


def _drill_cleanup(ctx: ResourceContext, params: AuroraGlobalParameters) -> Operation:
    rds, region = _rds(ctx, ctx.recovery_region), ctx.recovery_region
    snapshot_id, copy_id, instance_id = _drill_names(ctx, params)
    handle = {"snapshotId": snapshot_id, "clusterId": copy_id, "instanceId": instance_id}
    # In this order: RDS deletes a cluster only once its instances are gone. Tolerated errors: already deleting
    # (or still creating: deleted on a later poll), or already gone.
    artefacts = (
        ("instance", instance_id, lambda: _instance(ctx, region, instance_id), "DBInstanceStatus",
         rds.delete_db_instance, {"DBInstanceIdentifier": instance_id},
         ("InvalidDBInstanceState", "DBInstanceNotFound")),
        ("cluster", copy_id, lambda: _cluster(ctx, region, copy_id), "Status", rds.delete_db_cluster,
         {"DBClusterIdentifier": copy_id, "SkipFinalSnapshot": True},
         ("InvalidDBClusterStateFault", "DBClusterNotFoundFault")),
        ("snapshot", snapshot_id, lambda: _cluster_snapshot(ctx, snapshot_id), "Status", rds.delete_db_cluster_snapshot,
         {"DBClusterSnapshotIdentifier": snapshot_id},
         ("InvalidDBClusterSnapshotStateFault", "DBClusterSnapshotNotFoundFault")),
    )
    for kind, name, describe, status_key, delete, kwargs, tolerate in artefacts:
        found = describe()
        if found is None:
            continue
        _require_ours(ctx, found.get("TagList", []), f"{kind} {name}")
        if found[status_key] != "deleting":
            aws_call(f"delete drill {kind} {name}", delete, tolerate, **kwargs)
            ctx.log.info("aurora.drill_delete_requested", kind=kind, name=name)
        return _wait(f"deleting drill {kind} {name}", {**handle, "step": f"delete-{kind}"})
    return Operation(done=True, handle=handle, message=f"drill copy {copy_id} and snapshot {snapshot_id} are gone")


def _rds(ctx: ResourceContext, region: str) -> Any:
    return ctx.client("rds", region=region)


def _wait(message: str, handle: dict[str, Any], outputs: dict[str, Any] | None = None) -> Operation:
    return Operation(done=False, handle=handle, outputs=outputs or {}, message=message,
                     poll_interval_seconds=_POLL_SECONDS)


def _find(what: str, operation: Any, key: str, tolerate: tuple[str, ...], **kwargs: Any) -> dict[str, Any] | None:
    found = aws_call(f"{what} {next(iter(kwargs.values()))}", operation, tolerate, **kwargs)
    return dict(found[key][0]) if found and found[key] else None


def _describe_global(ctx: ResourceContext, identifier: str) -> dict[str, Any] | None:
    return _find("DescribeGlobalClusters", _rds(ctx, ctx.recovery_region).describe_global_clusters, "GlobalClusters",
                 ("GlobalClusterNotFoundFault",), GlobalClusterIdentifier=identifier)


def _cluster(ctx: ResourceContext, region: str, identifier: str) -> dict[str, Any] | None:
    return _find("DescribeDBClusters", _rds(ctx, region).describe_db_clusters, "DBClusters",
                 ("DBClusterNotFoundFault",), DBClusterIdentifier=identifier)


def _instance(ctx: ResourceContext, region: str, identifier: str) -> dict[str, Any] | None:
    return _find("DescribeDBInstances", _rds(ctx, region).describe_db_instances, "DBInstances",
                 ("DBInstanceNotFound", "DBInstanceNotFoundFault"), DBInstanceIdentifier=identifier)


def _cluster_snapshot(ctx: ResourceContext, identifier: str) -> dict[str, Any] | None:
    return _find("DescribeDBClusterSnapshots", _rds(ctx, ctx.recovery_region).describe_db_cluster_snapshots,
                 "DBClusterSnapshots", ("DBClusterSnapshotNotFoundFault",), DBClusterSnapshotIdentifier=identifier)


def _global(ctx: ResourceContext, params: AuroraGlobalParameters) -> dict[str, Any]:
    found = _describe_global(ctx, params.global_cluster_identifier)
    if found is None:
        raise fatal(f"global cluster {params.global_cluster_identifier} not found (account {ctx.call.account.id})",
                    "GlobalClusterNotFound")
    return found


def _recovery(ctx: ResourceContext, params: AuroraGlobalParameters) -> dict[str, Any]:
    found = _cluster(ctx, ctx.recovery_region, params.recovery_cluster_identifier)
    if found is None:
        raise fatal(f"cluster {params.recovery_cluster_identifier} not found in {ctx.recovery_region} "
                    f"(account {ctx.call.account.id})", "ClusterNotFound")
    return found


def _member(found: dict[str, Any] | None, arn: str) -> dict[str, Any] | None:
    return next((m for m in (found or {}).get("GlobalClusterMembers", []) if m["DBClusterArn"] == arn), None)


def _region(arn: str) -> str:
    return arn.split(":")[3]


def _instance_class(ctx: ResourceContext, cluster: dict[str, Any]) -> str:
    for member in cluster.get("DBClusterMembers", []):
        instance = _instance(ctx, ctx.recovery_region, member["DBInstanceIdentifier"])
        if instance is not None:
            return str(instance["DBInstanceClass"])
    return _DEFAULT_DRILL_CLASS  # a headless secondary has no instance to copy the class from


def _drill_names(ctx: ResourceContext, params: AuroraGlobalParameters) -> tuple[str, str, str]:
    suffix = ctx.drill_suffix()
    tail = f"-drill-{suffix}"
    # Identifiers stop at 63 characters and may not end with a hyphen; "-1" names the copy's one instance.
    base = params.recovery_cluster_identifier[: 61 - len(tail)].rstrip("-")
    return f"dr-drill-{suffix}", f"{base}{tail}", f"{base}{tail}-1"


def _require_ours(ctx: ResourceContext, tags: list[dict[str, str]], what: str) -> None:
    # Names derive from the execution, but deletion is irreversible: the tag must confirm it is our drill copy.
    if {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} not in tags:
        raise fatal(f"refusing to delete {what}: it is not tagged {TAG_EXECUTION}={ctx.call.execution_id}", "NotOurs")


def _report(found: dict[str, Any]) -> dict[str, Any]:
    members = found.get("GlobalClusterMembers", [])
    writer = next((m["DBClusterArn"] for m in members if m.get("IsWriter")), None)
    return {
        "writer": writer,
        "writerRegion": _region(writer) if writer else None,
        "secondaries": {m["DBClusterArn"]: m.get("SynchronizationStatus") for m in members if not m.get("IsWriter")},
        "failoverState": (found.get("FailoverState") or {}).get("Status"),
        "engineVersion": found.get("EngineVersion"),
    }


def _lag_ms(ctx: ResourceContext, cluster: str) -> float | None:
    """The latest AuroraGlobalDBReplicationLag (ms); None without datapoints or permission (it is only a report)."""
    now = datetime.now(UTC)
    try:
        points = ctx.client("cloudwatch", region=ctx.recovery_region).get_metric_statistics(
            Namespace="AWS/RDS", MetricName="AuroraGlobalDBReplicationLag",
            Dimensions=[{"Name": "DBClusterIdentifier", "Value": cluster}],
            StartTime=now - timedelta(minutes=10), EndTime=now, Period=60, Statistics=["Maximum"],
        )["Datapoints"]
    except (BotoCoreError, ClientError) as exc:
        ctx.log.warning("aurora.lag_unavailable", cluster=cluster, error=str(exc))
        return None
    return float(max(points, key=lambda p: p["Timestamp"])["Maximum"]) if points else None
