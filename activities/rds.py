"""RDS (MySQL, PostgreSQL, SQL Server...): promote the cross-region read replica.

Drill: the replica is never promoted; a copy of it is restored in the recovery region, made available, and deleted
in CLEANUP, so production replication and data are untouched.

Every phase is a small state machine driven by what RDS reports, not by what we remember: `start` and `poll` run
the same step function, which looks at the real state and starts only what is missing (found by name first). That
is what makes a retried start, or a poll after a worker crash, safe.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from activities.core.context import ResourceContext
from activities.core.aws import aws_call, fatal, unreachable
from activities.core.context import TAG_EXECUTION
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, StateMachineModule, register
from plans.model import Mode

_DB_ID = r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$"
_POLL_SECONDS = 20.0

# States from which an instance will not become available on its own: waiting would only burn the layer timeout.
_BROKEN = frozenset(
    "failed deleting stopped stopping storage-full restore-error insufficient-capacity "
    "inaccessible-encryption-credentials incompatible-credentials incompatible-network incompatible-option-group "
    "incompatible-parameters incompatible-restore".split()
)


class RdsReadReplicaParameters(ModuleParameters):
    replica_identifier: str = Field(pattern=_DB_ID)  # the read replica in the recovery region
    primary_identifier: str = Field(pattern=_DB_ID)  # the primary in the primary region
    backup_retention_period: int = Field(default=7, ge=0, le=35)  # set on the promoted instance
    old_primary_action: Literal["none", "stop", "delete"] = "none"  # CLEANUP of a real failover; never in a drill
    drill_instance_class: str | None = None  # instance class of the drill copy (default: the replica's)
    new_replica_identifier: str | None = None  # REPLICATE: the new replica in the old primary region


@register
class RdsReadReplica(StateMachineModule):
    action = "rds.read_replica"
    summary = "Promote a cross-region RDS read replica; replicate back to the old primary region"
    Parameters = RdsReadReplicaParameters

    def status(self, ctx: ResourceContext, params: RdsReadReplicaParameters) -> dict[str, Any]:
        replica = _describe(_rds(ctx, ctx.recovery_region), params.replica_identifier)
        if replica is None:
            return {"identifier": params.replica_identifier, "exists": False}
        return {"identifier": params.replica_identifier, "exists": True, **_report(ctx, replica)}

    def instantiate(self, ctx: ResourceContext, params: RdsReadReplicaParameters, handle: dict[str, Any]) -> Operation:
        return _preflight(ctx, params)

    def activate(self, ctx: ResourceContext, params: RdsReadReplicaParameters, handle: dict[str, Any]) -> Operation:
        return _drill_copy(ctx, params) if ctx.is_drill else _promote(ctx, params, handle)

    def cleanup(self, ctx: ResourceContext, params: RdsReadReplicaParameters, handle: dict[str, Any]) -> Operation:
        return _drill_cleanup(ctx, params, handle) if ctx.is_drill else _old_primary(ctx, params)

    def replicate(self, ctx: ResourceContext, params: RdsReadReplicaParameters, handle: dict[str, Any]) -> Operation:
        if ctx.is_drill:
            return Operation(done=True, message="replication untouched by drill")
        return _replicate_back(ctx, params)


# --- phases ---------------------------------------------------------------------------------------------------------


def _preflight(ctx: ResourceContext, params: RdsReadReplicaParameters) -> Operation:
    replica = _replica(ctx, params)
    source = replica.get("ReadReplicaSourceDBInstanceIdentifier")
    if not _is_replica_of(replica, params.primary_identifier):
        raise fatal(
            f"{params.replica_identifier} in {ctx.recovery_region} is not a read replica of "
            f"{params.primary_identifier} (its source: {source or 'none'})",
            "NotAReadReplica",
        )
    status = replica["DBInstanceStatus"]
    outputs = {"replica": params.replica_identifier, **_report(ctx, replica)}
    if status in _BROKEN:
        raise fatal(f"replica {params.replica_identifier} is {status}", "ReplicaNotAvailable")
    if status != "available":
        return _wait(f"replica {params.replica_identifier} is {status}; waiting for available", {}, outputs)
    return Operation(done=True, outputs=outputs, message=f"replica {params.replica_identifier} of {source} available")


def _promote(ctx: ResourceContext, params: RdsReadReplicaParameters, handle: dict[str, Any]) -> Operation:
    rds = _rds(ctx, ctx.recovery_region)
    replica = _replica(ctx, params)
    status = replica["DBInstanceStatus"]
    is_replica = bool(replica.get("ReadReplicaSourceDBInstanceIdentifier"))
    outputs = {"instance": params.replica_identifier, "status": status, "endpoint": _endpoint(replica)}
    if not is_replica and status == "available":
        return Operation(done=True, outputs=outputs, message=f"{params.replica_identifier} is promoted and available")
    if status in _BROKEN:
        raise fatal(f"{params.replica_identifier} is {status}; it cannot be promoted", "ReplicaNotAvailable")
    # RDS accepts PromoteReadReplica only on an available replica. While it is modifying or rebooting, either our
    # promotion is under way or another change is; calling again would not help, so we wait and look again.
    if is_replica and status == "available" and not handle.get("promoteRequested"):
        # InvalidDBInstanceState here: an earlier attempt's promotion already started and RDS refuses a second.
        aws_call(
            f"PromoteReadReplica {params.replica_identifier}",
            rds.promote_read_replica,
            tolerate=("InvalidDBInstanceState",),
            DBInstanceIdentifier=params.replica_identifier,
            BackupRetentionPeriod=params.backup_retention_period,
        )
        ctx.log.info("rds.promote_requested", replica=params.replica_identifier)
        return _wait(f"promoting {params.replica_identifier}", {"promoteRequested": True}, outputs)
    return _wait(f"promoting {params.replica_identifier} ({status})", handle, outputs)


def _drill_copy(ctx: ResourceContext, params: RdsReadReplicaParameters) -> Operation:
    rds = _rds(ctx, ctx.recovery_region)
    snapshot_id, copy_id = _drill_names(ctx, params)
    handle: dict[str, Any] = {"snapshotId": snapshot_id, "instanceId": copy_id}

    copy = _describe(rds, copy_id)
    if copy is not None:
        status = copy["DBInstanceStatus"]
        outputs = {"drillInstance": copy_id, "status": status, "endpoint": _endpoint(copy), "snapshot": snapshot_id}
        if status == "available":
            return Operation(done=True, handle=handle, outputs=outputs, message=f"drill copy {copy_id} available")
        if status in _BROKEN:
            raise fatal(f"drill copy {copy_id} is {status}", "DrillCopyFailed")
        return _wait(f"restoring drill copy {copy_id} ({status})", {**handle, "step": "restore"}, outputs)

    replica = _replica(ctx, params)
    snapshot = _snapshot(rds, snapshot_id)
    if snapshot is None:
        aws_call(
            f"CreateDBSnapshot {snapshot_id} of {params.replica_identifier}",
            rds.create_db_snapshot,
            tolerate=("DBSnapshotAlreadyExists",),
            DBSnapshotIdentifier=snapshot_id,
            DBInstanceIdentifier=params.replica_identifier,
            Tags=ctx.tags(),
        )
        ctx.log.info("rds.drill_snapshot_requested", snapshot=snapshot_id)
        return _wait(f"snapshotting {params.replica_identifier} as {snapshot_id}", {**handle, "step": "snapshot"})
    if snapshot["Status"] in ("failed", "error"):
        raise fatal(f"drill snapshot {snapshot_id} is {snapshot['Status']}", "DrillSnapshotFailed")
    if snapshot["Status"] != "available":
        return _wait(f"snapshot {snapshot_id} is {snapshot['Status']}", {**handle, "step": "snapshot"})

    restore: dict[str, Any] = {
        "DBInstanceIdentifier": copy_id,
        "DBSnapshotIdentifier": snapshot_id,
        "DBInstanceClass": params.drill_instance_class or replica["DBInstanceClass"],
        "MultiAZ": False,
        "DeletionProtection": False,
        "Tags": ctx.tags(),
    }
    # The copy sits in the replica's network and parameter group, so a drill test reaches it the way the
    # application would reach the promoted replica.
    if replica.get("DBSubnetGroup", {}).get("DBSubnetGroupName"):
        restore["DBSubnetGroupName"] = replica["DBSubnetGroup"]["DBSubnetGroupName"]
    if replica.get("VpcSecurityGroups"):
        restore["VpcSecurityGroupIds"] = [g["VpcSecurityGroupId"] for g in replica["VpcSecurityGroups"]]
    if replica.get("DBParameterGroups"):
        restore["DBParameterGroupName"] = replica["DBParameterGroups"][0]["DBParameterGroupName"]
    # SQL Server and Oracle keep features such as TDE in an option group: a copy restored into the default group
    # would fail to open the databases that use them.
    groups = [g["OptionGroupName"] for g in replica.get("OptionGroupMemberships") or []]
    if groups and not groups[0].startswith("default:"):
        restore["OptionGroupName"] = groups[0]
    restore_from = rds.restore_db_instance_from_db_snapshot
    aws_call(f"RestoreDBInstanceFromDBSnapshot {copy_id}", restore_from, ("DBInstanceAlreadyExists",), **restore)
    ctx.log.info("rds.drill_restore_requested", instance=copy_id, snapshot=snapshot_id)
    return _wait(f"restoring drill copy {copy_id} from {snapshot_id}", {**handle, "step": "restore"})


def _drill_cleanup(ctx: ResourceContext, params: RdsReadReplicaParameters, previous: dict[str, Any]) -> Operation:
    rds = _rds(ctx, ctx.recovery_region)
    snapshot_id, copy_id = _drill_names(ctx, params)
    # What this cleanup found and deleted, kept across polls so the last one can say it.
    deleted: list[str] = list(previous.get("deleted", []))
    handle = {"snapshotId": snapshot_id, "instanceId": copy_id, "deleted": deleted}

    copy = _describe(rds, copy_id)
    if copy is not None:
        _require_ours(ctx, copy.get("TagList", []), f"instance {copy_id}")
        if copy["DBInstanceStatus"] != "deleting":
            # Tolerated: still restoring (deleted on a later poll) or already gone.
            aws_call(
                f"DeleteDBInstance {copy_id}",
                rds.delete_db_instance,
                tolerate=("InvalidDBInstanceState", "DBInstanceNotFound"),
                DBInstanceIdentifier=copy_id,
                SkipFinalSnapshot=True,
                DeleteAutomatedBackups=True,
            )
            ctx.log.info("rds.drill_copy_delete_requested", instance=copy_id)
        handle["deleted"] = list(dict.fromkeys([*deleted, f"drill copy {copy_id}"]))
        return _wait(f"deleting drill copy {copy_id}", {**handle, "step": "delete-instance"})

    snapshot = _snapshot(rds, snapshot_id)
    if snapshot is not None:
        _require_ours(ctx, snapshot.get("TagList", []), f"snapshot {snapshot_id}")
        if snapshot["Status"] != "deleting":
            tolerate = ("InvalidDBSnapshotState", "DBSnapshotNotFound")
            delete = rds.delete_db_snapshot
            aws_call(f"DeleteDBSnapshot {snapshot_id}", delete, tolerate, DBSnapshotIdentifier=snapshot_id)
            ctx.log.info("rds.drill_snapshot_delete_requested", snapshot=snapshot_id)
        handle["deleted"] = list(dict.fromkeys([*deleted, f"snapshot {snapshot_id}"]))
        return _wait(f"deleting drill snapshot {snapshot_id}", {**handle, "step": "delete-snapshot"})

    if deleted:
        return Operation(done=True, handle=handle, message=f"deleted {len(deleted)} RDS drill artefact(s) of "
                                                           f"{ctx.call.execution_id}: {', '.join(deleted)}")
    return Operation(done=True, handle=handle, message=f"no RDS drill copy of {ctx.call.execution_id} to delete "
                                                       f"(drill copy {copy_id} and snapshot {snapshot_id} are gone)")


def _old_primary(ctx: ResourceContext, params: RdsReadReplicaParameters) -> Operation:
    action = params.old_primary_action
    if action == "none":
        return Operation(done=True, message=f"old primary {params.primary_identifier} left as it is (action none)")
    try:
        return _stop_or_delete_primary(ctx, params, action)
    except (BotoCoreError, ClientError) as exc:
        # In a disaster the primary region may be down: we say so and let the failover finish.
        if ctx.mode is Mode.DISASTER and unreachable(exc):
            ctx.log.warning("rds.primary_unreachable", region=ctx.primary_region, error=str(exc))
            return Operation(
                done=True,
                outputs={"primaryReachable": False},
                message=f"could not {action} {params.primary_identifier}: {ctx.primary_region} unreachable ({exc}); "
                "do it when the region is back",
            )
        raise


def _stop_or_delete_primary(ctx: ResourceContext, params: RdsReadReplicaParameters, action: str) -> Operation:
    rds = _rds(ctx, ctx.primary_region)
    name = params.primary_identifier
    primary = _describe(rds, name)
    if primary is None:
        return Operation(done=True, message=f"old primary {name} does not exist in {ctx.primary_region}")
    status = primary["DBInstanceStatus"]
    outputs = {"oldPrimary": name, "status": status}

    if action == "stop":
        if status == "stopped":
            # RDS starts a stopped instance again after seven days; the operator has to decide before then.
            message = f"old primary {name} stopped (RDS restarts it after 7 days)"
            return Operation(done=True, outputs=outputs, message=message)
        if status == "available":
            stop = rds.stop_db_instance
            aws_call(f"StopDBInstance {name}", stop, ("InvalidDBInstanceState",), DBInstanceIdentifier=name)
            ctx.log.info("rds.old_primary_stop_requested", instance=name)
        return _wait(f"stopping old primary {name} ({status})", {"step": "stop"}, outputs)

    if status != "deleting":
        final_snapshot = f"{name}-dr-final-{ctx.drill_suffix()}"
        # A final snapshot already named so means an earlier attempt's delete is under way.
        aws_call(
            f"DeleteDBInstance {name}",
            rds.delete_db_instance,
            tolerate=("InvalidDBInstanceState", "DBSnapshotAlreadyExists"),
            DBInstanceIdentifier=name,
            FinalDBSnapshotIdentifier=final_snapshot,
            SkipFinalSnapshot=False,
            DeleteAutomatedBackups=False,
        )
        ctx.log.info("rds.old_primary_delete_requested", instance=name, final_snapshot=final_snapshot)
        outputs["finalSnapshot"] = final_snapshot
    return _wait(f"deleting old primary {name}", {"step": "delete"}, outputs)


def _replicate_back(ctx: ResourceContext, params: RdsReadReplicaParameters) -> Operation:
    promoted = _replica(ctx, params)
    if promoted.get("ReadReplicaSourceDBInstanceIdentifier"):
        raise fatal(f"{params.replica_identifier} is still a read replica; promote it before REPLICATE", "NotPromoted")
    new_id = params.new_replica_identifier or f"{params.primary_identifier}-replica"
    source_arn = promoted["DBInstanceArn"]
    rds = _rds(ctx, ctx.primary_region)
    outputs: dict[str, Any] = {"replica": new_id, "region": ctx.primary_region, "source": source_arn}

    existing = _describe(rds, new_id)
    if existing is not None:
        if existing.get("ReadReplicaSourceDBInstanceIdentifier") != source_arn:
            raise fatal(
                f"{new_id} already exists in {ctx.primary_region} and is not a replica of {source_arn}",
                "ReplicaIdentifierTaken",
            )
        status = existing["DBInstanceStatus"]
        outputs.update(status=status, endpoint=_endpoint(existing))
        if status == "available":
            return Operation(done=True, outputs=outputs, message=f"{new_id} replicates {params.replica_identifier}")
        if status in _BROKEN:
            raise fatal(f"new replica {new_id} is {status}", "ReplicaFailed")
        return _wait(f"creating replica {new_id} ({status})", {"step": "replica"}, outputs)

    aws_call(
        f"CreateDBInstanceReadReplica {new_id} in {ctx.primary_region}",
        rds.create_db_instance_read_replica,
        tolerate=("DBInstanceAlreadyExists",),
        DBInstanceIdentifier=new_id,
        SourceDBInstanceIdentifier=source_arn,
        SourceRegion=ctx.recovery_region,  # boto3 signs the cross-region PreSignedUrl from this
        DBInstanceClass=promoted["DBInstanceClass"],
        Tags=ctx.tags(),
    )
    ctx.log.info("rds.replica_requested", replica=new_id, region=ctx.primary_region, source=source_arn)
    return _wait(f"creating replica {new_id} in {ctx.primary_region}", {"step": "replica"}, outputs)


# --- helpers --------------------------------------------------------------------------------------------------------


def _rds(ctx: ResourceContext, region: str) -> Any:
    return ctx.client("rds", region=region)


def _wait(message: str, handle: dict[str, Any], outputs: dict[str, Any] | None = None) -> Operation:
    return Operation(
        done=False, handle=handle, outputs=outputs or {}, message=message, poll_interval_seconds=_POLL_SECONDS
    )


def _describe(rds: Any, identifier: str) -> dict[str, Any] | None:
    found = aws_call(f"DescribeDBInstances {identifier}", rds.describe_db_instances, ("DBInstanceNotFound",),
                     DBInstanceIdentifier=identifier)
    return dict(found["DBInstances"][0]) if found and found["DBInstances"] else None


def _snapshot(rds: Any, identifier: str) -> dict[str, Any] | None:
    found = aws_call(f"DescribeDBSnapshots {identifier}", rds.describe_db_snapshots, ("DBSnapshotNotFound",),
                     DBSnapshotIdentifier=identifier)
    return dict(found["DBSnapshots"][0]) if found and found["DBSnapshots"] else None


def _replica(ctx: ResourceContext, params: RdsReadReplicaParameters) -> dict[str, Any]:
    replica = _describe(_rds(ctx, ctx.recovery_region), params.replica_identifier)
    if replica is None:
        raise fatal(
            f"{params.replica_identifier} not found in {ctx.recovery_region} (account {ctx.call.account.id})",
            "ReplicaNotFound",
        )
    return replica


def _is_replica_of(instance: dict[str, Any], primary: str) -> bool:
    # Same-region sources are named by identifier, cross-region ones by ARN (arn:aws:rds:region:account:db:name).
    source = instance.get("ReadReplicaSourceDBInstanceIdentifier") or ""
    return source.rsplit(":", 1)[-1] == primary


def _drill_names(ctx: ResourceContext, params: RdsReadReplicaParameters) -> tuple[str, str]:
    suffix = ctx.drill_suffix()
    tail = f"-drill-{suffix}"
    # Instance identifiers stop at 63 characters and may not end with a hyphen.
    base = params.replica_identifier[: 63 - len(tail)].rstrip("-")
    return f"dr-drill-{suffix}", f"{base}{tail}"


def _require_ours(ctx: ResourceContext, tags: list[dict[str, str]], what: str) -> None:
    # Names are derived from the execution, but deletion is irreversible: the tag must confirm it is our drill copy.
    if {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} not in tags:
        raise fatal(f"refusing to delete {what}: it is not tagged {TAG_EXECUTION}={ctx.call.execution_id}", "NotOurs")


def _report(ctx: ResourceContext, instance: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": instance["DBInstanceStatus"],
        "source": instance.get("ReadReplicaSourceDBInstanceIdentifier"),
        "isReplica": bool(instance.get("ReadReplicaSourceDBInstanceIdentifier")),
        "engine": instance.get("Engine"),
        "engineVersion": instance.get("EngineVersion"),
        "instanceClass": instance.get("DBInstanceClass"),
        "endpoint": _endpoint(instance),
        "replication": _replication_state(instance),
        "lagSeconds": _lag_seconds(ctx, instance["DBInstanceIdentifier"]),
    }


def _endpoint(instance: dict[str, Any]) -> str | None:
    endpoint = instance.get("Endpoint") or {}
    return f"{endpoint['Address']}:{endpoint.get('Port')}" if endpoint.get("Address") else None


def _replication_state(instance: dict[str, Any]) -> str | None:
    for info in instance.get("StatusInfos") or []:
        if info.get("StatusType") == "read replication":
            return str(info.get("Status"))
    return None


def _lag_seconds(ctx: ResourceContext, identifier: str) -> float | None:
    """The latest ReplicaLag datapoint; None when CloudWatch has none or we may not read it (it is only a report)."""
    now = datetime.now(UTC)
    try:
        points = ctx.client("cloudwatch", region=ctx.recovery_region).get_metric_statistics(
            Namespace="AWS/RDS",
            MetricName="ReplicaLag",
            Dimensions=[{"Name": "DBInstanceIdentifier", "Value": identifier}],
            StartTime=now - timedelta(minutes=10),
            EndTime=now,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
    except (BotoCoreError, ClientError) as exc:
        ctx.log.warning("rds.lag_unavailable", replica=identifier, error=str(exc))
        return None
    if not points:
        return None
    return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])

