"""ElastiCache (Valkey / Redis OSS) global datastore: make the recovery region's member the writer.

Planned and failback: FailoverGlobalReplicationGroup promotes the recovery-region secondary and demotes the old
primary to a secondary, with no data loss. Disaster: the primary region cannot take part, so the recovery-region
secondary is disassociated (DisassociateGlobalReplicationGroup): it becomes a standalone, writable replication group.

Drill: AWS has no way to write-test a global secondary without touching production: a failover moves production
writes and a disassociation is one-way. So the drill snapshots the recovery-region member (a backup reads a replica
node and changes nothing), restores the snapshot as a separate, tagged replication group in the recovery region, waits
until it is available (its endpoint is the output) and deletes both in CLEANUP. AWS documents no restriction on
backing up a global secondary; should an account refuse it, `drillMethod: check` gives a read-only readiness check
(datastore and member available, member still a secondary) instead.

REPLICATE after a planned failover only verifies that the old primary is now a secondary. After a disaster the
standalone group cannot rejoin its old datastore (AWS adds only new clusters as secondaries, and that datastore's
primary is still the old one): a new global datastore is created with the promoted group as primary, and a new
secondary in the old primary region. The old datastore and its stale primary are reported, never deleted.

Every step looks at the real state first (roles, statuses, names derived from the execution), so a retried start or
a poll after a crash never requests a second failover or a second copy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from activities.core.context import ResourceContext
from activities.core.aws import aws_call, aws_errors, fatal
from activities.core.context import TAG_EXECUTION
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, StateMachineModule, register
from plans.model import Mode

_GROUP_ID = r"^[a-zA-Z][a-zA-Z0-9-]{0,39}$"
_POLL_SECONDS = 15.0
_BROKEN = frozenset({"create-failed", "deleting", "incompatible-network", "restore-failed"})


class GlobalDatastoreParameters(ModuleParameters):
    global_replication_group_id: str = Field(min_length=1, max_length=255)  # the full id, AWS prefix included
    replication_group_id: str = Field(pattern=_GROUP_ID)  # the member in the recovery region
    # The member in the primary region; default: whichever member the datastore lists there (one per region).
    primary_replication_group_id: str | None = Field(default=None, pattern=_GROUP_ID)
    drill_method: Literal["restore", "check"] = "restore"
    drill_node_type: str | None = None  # node type of the drill copy (default: the member's)
    drill_cache_subnet_group: str | None = None  # where the drill copy lives (default: the account's default)
    drill_security_group_ids: tuple[str, ...] = ()
    replicate_global_suffix: str | None = None  # REPLICATE after a disaster: suffix of the new datastore
    replicate_secondary_id: str | None = Field(default=None, pattern=_GROUP_ID)  # its member in the old region
    replicate_cache_subnet_group: str | None = None


@register
class ElastiCacheGlobalDatastore(StateMachineModule):
    action = "elasticache.global_datastore"
    summary = "Fail an ElastiCache global datastore over to the recovery region (or detach its secondary in a disaster)"
    Parameters = GlobalDatastoreParameters

    def status(self, ctx: ResourceContext, params: GlobalDatastoreParameters) -> dict[str, Any]:
        group = _group(ctx, ctx.recovery_region, params.replication_group_id)
        datastore = _find_datastore(ctx, params.global_replication_group_id)
        return {"datastore": datastore and datastore["Status"], "role": _role(group),
                "groupStatus": group and group["Status"], "endpoint": _endpoint(group)}

    def instantiate(self, ctx: ResourceContext, params: GlobalDatastoreParameters, handle: dict[str, Any]) -> Operation:
        return _preflight(ctx, params)

    def activate(self, ctx: ResourceContext, params: GlobalDatastoreParameters, handle: dict[str, Any]) -> Operation:
        if ctx.is_drill:
            return _preflight(ctx, params) if params.drill_method == "check" else _drill_copy(ctx, params)
        return _disassociate(ctx, params) if ctx.mode is Mode.DISASTER else _failover(ctx, params)

    def cleanup(self, ctx: ResourceContext, params: GlobalDatastoreParameters, handle: dict[str, Any]) -> Operation:
        if ctx.is_drill and params.drill_method == "restore":
            return _drill_cleanup(ctx, params)
        return Operation(done=True, message="nothing to clean up: the old primary is handled by REPLICATE")

    def replicate(self, ctx: ResourceContext, params: GlobalDatastoreParameters, handle: dict[str, Any]) -> Operation:
        if ctx.is_drill:
            return Operation(done=True, message="replication untouched by drill")
        return _replicate(ctx, params)


# --- phases ---------------------------------------------------------------------------------------------------------


def _preflight(ctx: ResourceContext, params: GlobalDatastoreParameters) -> Operation:
    datastore = _datastore(ctx, params.global_replication_group_id)
    member = _member(datastore, ctx.recovery_region, params.replication_group_id)
    primary = _member(datastore, ctx.primary_region, params.primary_replication_group_id)
    group = _require_group(ctx, ctx.recovery_region, params.replication_group_id)
    outputs = {"datastore": datastore["GlobalReplicationGroupId"], "datastoreStatus": datastore["Status"],
               "members": _members(datastore), "groupStatus": group["Status"], "endpoint": _endpoint(group)}
    if member is None:
        raise fatal(f"{params.replication_group_id} ({ctx.recovery_region}) is not a member of global datastore "
                    f"{params.global_replication_group_id}", "NotAMember")
    if member["Role"] == "PRIMARY":
        return Operation(done=True, outputs=outputs, message=f"{params.replication_group_id} is already the primary")
    if primary is None or primary["Role"] != "PRIMARY":
        primary_id = params.primary_replication_group_id or "its member"
        raise fatal(f"{primary_id} ({ctx.primary_region}) is not the primary of {params.global_replication_group_id}",
                    "NotThePrimary")
    if group["Status"] in _BROKEN:
        raise fatal(f"{params.replication_group_id} is {group['Status']}", "MemberNotAvailable")
    if datastore["Status"] != "available" or group["Status"] != "available" or member["Status"] != "associated":
        return _wait(f"{params.global_replication_group_id} is {datastore['Status']}, {params.replication_group_id} "
                     f"{group['Status']} ({member['Status']})", outputs)
    message = f"{params.replication_group_id} is an available secondary of {params.global_replication_group_id}"
    return Operation(done=True, outputs=outputs, message=message)


def _failover(ctx: ResourceContext, params: GlobalDatastoreParameters) -> Operation:
    datastore = _datastore(ctx, params.global_replication_group_id)
    member = _member(datastore, ctx.recovery_region, params.replication_group_id)
    if member is None:
        raise fatal(f"{params.replication_group_id} is not a member of {params.global_replication_group_id}",
                    "NotAMember")
    group = _require_group(ctx, ctx.recovery_region, params.replication_group_id)
    outputs = {"role": member["Role"], "datastoreStatus": datastore["Status"], "endpoint": _endpoint(group)}
    if member["Role"] == "PRIMARY" and datastore["Status"] == "available" and group["Status"] == "available":
        return Operation(done=True, outputs=outputs, message=f"{params.replication_group_id} is the primary")
    if member["Role"] == "SECONDARY" and datastore["Status"] == "available":
        # Idempotent in intent: it names the new primary. InvalidGlobalReplicationGroupState means an earlier
        # attempt's failover has begun and AWS refuses a second one.
        aws_call(f"FailoverGlobalReplicationGroup {params.global_replication_group_id}",
                 _client(ctx).failover_global_replication_group, tolerate=("InvalidGlobalReplicationGroupState",),
                 GlobalReplicationGroupId=params.global_replication_group_id, PrimaryRegion=ctx.recovery_region,
                 PrimaryReplicationGroupId=params.replication_group_id)
        ctx.log.info("elasticache.failover_requested", datastore=params.global_replication_group_id)
        return _wait(f"failing {params.global_replication_group_id} over to {params.replication_group_id}", outputs)
    return _wait(f"{params.global_replication_group_id} is {datastore['Status']}; {params.replication_group_id} is "
                 f"{member['Role'].lower()} ({group['Status']})", outputs)


def _disassociate(ctx: ResourceContext, params: GlobalDatastoreParameters) -> Operation:
    group = _require_group(ctx, ctx.recovery_region, params.replication_group_id)
    info = group.get("GlobalReplicationGroupInfo") or {}
    outputs = {"groupStatus": group["Status"], "endpoint": _endpoint(group)}
    if not info.get("GlobalReplicationGroupId"):
        if group["Status"] == "available":
            return Operation(done=True, outputs=outputs,
                             message=f"{params.replication_group_id} is standalone and writable")
        return _wait(f"{params.replication_group_id} is {group['Status']}", outputs)
    if info["GlobalReplicationGroupId"] != params.global_replication_group_id:
        raise fatal(f"{params.replication_group_id} belongs to {info['GlobalReplicationGroupId']}, not "
                    f"{params.global_replication_group_id}", "NotAMember")
    if _role(group) == "PRIMARY":
        return Operation(done=True, outputs=outputs, message=f"{params.replication_group_id} is already the primary")
    datastore = _datastore(ctx, params.global_replication_group_id)
    member = _member(datastore, ctx.recovery_region, params.replication_group_id)
    if datastore["Status"] == "available" and member is not None and member["Status"] == "associated":
        aws_call(f"DisassociateGlobalReplicationGroup {params.replication_group_id}",
                 _client(ctx).disassociate_global_replication_group, tolerate=("InvalidGlobalReplicationGroupState",),
                 GlobalReplicationGroupId=params.global_replication_group_id,
                 ReplicationGroupId=params.replication_group_id, ReplicationGroupRegion=ctx.recovery_region)
        ctx.log.info("elasticache.disassociate_requested", group=params.replication_group_id)
    return _wait(f"detaching {params.replication_group_id} from {params.global_replication_group_id}", outputs)


def _drill_copy(ctx: ResourceContext, params: GlobalDatastoreParameters) -> Operation:
    snapshot_name, copy_id = _drill_names(ctx, params)
    outputs: dict[str, Any] = {"drillGroup": copy_id, "snapshot": snapshot_name}
    copy = _group(ctx, ctx.recovery_region, copy_id)
    if copy is not None:
        outputs.update(status=copy["Status"], endpoint=_endpoint(copy))
        if copy["Status"] == "available":
            return Operation(done=True, outputs=outputs, message=f"drill copy {copy_id} available")
        if copy["Status"] in _BROKEN:
            raise fatal(f"drill copy {copy_id} is {copy['Status']}", "DrillCopyFailed")
        return _wait(f"restoring drill copy {copy_id} ({copy['Status']})", outputs)

    member = _require_group(ctx, ctx.recovery_region, params.replication_group_id)
    snapshot = _snapshot(ctx, snapshot_name)
    if snapshot is None:
        aws_call(f"CreateSnapshot {snapshot_name} of {params.replication_group_id}", _client(ctx).create_snapshot,
                 tolerate=("SnapshotAlreadyExistsFault",), ReplicationGroupId=params.replication_group_id,
                 SnapshotName=snapshot_name, Tags=ctx.tags())
        ctx.log.info("elasticache.drill_snapshot_requested", snapshot=snapshot_name)
        return _wait(f"snapshotting {params.replication_group_id} as {snapshot_name}", outputs)
    if snapshot["SnapshotStatus"] in ("failed", "deleting"):
        raise fatal(f"drill snapshot {snapshot_name} is {snapshot['SnapshotStatus']}", "DrillSnapshotFailed")
    if snapshot["SnapshotStatus"] != "available":
        return _wait(f"snapshot {snapshot_name} is {snapshot['SnapshotStatus']}", outputs)

    restore: dict[str, Any] = {
        "ReplicationGroupId": copy_id,
        "ReplicationGroupDescription": f"DR drill copy of {params.replication_group_id}",
        "SnapshotName": snapshot_name,
        "CacheNodeType": params.drill_node_type or member["CacheNodeType"],
        "Engine": member.get("Engine", "redis"),
        "Tags": ctx.tags(),
    }
    if member.get("ClusterEnabled"):
        restore.update(NumNodeGroups=len(member.get("NodeGroups") or [1]), ReplicasPerNodeGroup=0)
    else:
        restore["NumCacheClusters"] = 1
    if params.drill_cache_subnet_group:
        restore["CacheSubnetGroupName"] = params.drill_cache_subnet_group
    if params.drill_security_group_ids:
        restore["SecurityGroupIds"] = list(params.drill_security_group_ids)
    aws_call(f"CreateReplicationGroup {copy_id}", _client(ctx).create_replication_group,
             tolerate=("ReplicationGroupAlreadyExists",), **restore)
    ctx.log.info("elasticache.drill_restore_requested", group=copy_id, snapshot=snapshot_name)
    return _wait(f"restoring drill copy {copy_id} from {snapshot_name}", outputs)


def _drill_cleanup(ctx: ResourceContext, params: GlobalDatastoreParameters) -> Operation:
    snapshot_name, copy_id = _drill_names(ctx, params)
    client = _client(ctx)
    copy = _group(ctx, ctx.recovery_region, copy_id)
    if copy is not None:
        _require_ours(ctx, copy["ARN"], f"replication group {copy_id}")
        if copy["Status"] != "deleting":
            # InvalidReplicationGroupState: still restoring; the next poll asks again.
            aws_call(f"DeleteReplicationGroup {copy_id}", client.delete_replication_group,
                     tolerate=("InvalidReplicationGroupState", "ReplicationGroupNotFoundFault"),
                     ReplicationGroupId=copy_id, RetainPrimaryCluster=False)
            ctx.log.info("elasticache.drill_copy_delete_requested", group=copy_id)
        return _wait(f"deleting drill copy {copy_id}", {"drillGroup": copy_id})
    snapshot = _snapshot(ctx, snapshot_name)
    if snapshot is not None:
        _require_ours(ctx, snapshot["ARN"], f"snapshot {snapshot_name}")
        if snapshot["SnapshotStatus"] != "deleting":
            aws_call(f"DeleteSnapshot {snapshot_name}", client.delete_snapshot,
                     tolerate=("InvalidSnapshotState", "SnapshotNotFoundFault"), SnapshotName=snapshot_name)
            ctx.log.info("elasticache.drill_snapshot_delete_requested", snapshot=snapshot_name)
        return _wait(f"deleting drill snapshot {snapshot_name}", {"snapshot": snapshot_name})
    return Operation(done=True, message=f"drill copy {copy_id} and snapshot {snapshot_name} are gone")


def _replicate(ctx: ResourceContext, params: GlobalDatastoreParameters) -> Operation:
    group = _require_group(ctx, ctx.recovery_region, params.replication_group_id)
    info = group.get("GlobalReplicationGroupInfo") or {}
    global_id = info.get("GlobalReplicationGroupId")
    if global_id and _role(group) != "PRIMARY":
        raise fatal(f"{params.replication_group_id} is still a secondary of {global_id}; run ACTIVATE first",
                    "NotPromoted")
    if not global_id:
        if group["Status"] != "available":
            return _wait(f"{params.replication_group_id} is {group['Status']}")
        suffix = params.replicate_global_suffix or params.global_replication_group_id.split("-", 1)[-1]
        created = aws_call(f"CreateGlobalReplicationGroup {suffix}", _client(ctx).create_global_replication_group,
                           GlobalReplicationGroupIdSuffix=suffix, PrimaryReplicationGroupId=params.replication_group_id,
                           GlobalReplicationGroupDescription=f"{params.global_replication_group_id} after failover",
                           tolerate=("GlobalReplicationGroupAlreadyExistsFault",))
        if created is None:
            raise fatal(f"a global datastore with suffix {suffix} already exists in {ctx.recovery_region} and "
                        f"{params.replication_group_id} is not its primary: set replicateGlobalSuffix",
                        "GlobalDatastoreNameTaken")
        ctx.log.info("elasticache.global_datastore_requested", suffix=suffix)
        return _wait(f"creating a global datastore with {params.replication_group_id} as primary")

    datastore = _datastore(ctx, global_id)
    outputs: dict[str, Any] = {"datastore": global_id, "members": _members(datastore)}
    if global_id != params.global_replication_group_id:
        outputs["oldDatastore"] = params.global_replication_group_id
    if datastore["Status"] != "available":
        return _wait(f"{global_id} is {datastore['Status']}", outputs)
    members = datastore.get("Members", [])
    secondary = next((m for m in members if m["ReplicationGroupRegion"] == ctx.primary_region), None)
    if secondary is None:
        if global_id == params.global_replication_group_id:
            raise fatal(f"{global_id} has no member in {ctx.primary_region} after the failover", "NoSecondary")
        old_primary = params.primary_replication_group_id or params.replication_group_id
        new_id = params.replicate_secondary_id or f"{old_primary[:37]}-dr"
        request: dict[str, Any] = {"ReplicationGroupId": new_id, "GlobalReplicationGroupId": global_id,
                                   "ReplicationGroupDescription": f"secondary of {global_id}", "Tags": ctx.tags()}
        if params.replicate_cache_subnet_group:
            request["CacheSubnetGroupName"] = params.replicate_cache_subnet_group
        aws_call(f"CreateReplicationGroup {new_id} in {ctx.primary_region}",
                 ctx.client("elasticache", region=ctx.primary_region).create_replication_group,
                 tolerate=("ReplicationGroupAlreadyExists",), **request)
        ctx.log.info("elasticache.secondary_requested", group=new_id, region=ctx.primary_region)
        return _wait(f"creating secondary {new_id} in {ctx.primary_region}", outputs)
    member_group = _group(ctx, ctx.primary_region, secondary["ReplicationGroupId"])
    if secondary["Status"] != "associated" or member_group is None or member_group["Status"] != "available":
        return _wait(f"secondary {secondary['ReplicationGroupId']} is {secondary['Status']}", outputs)
    message = f"{secondary['ReplicationGroupId']} ({ctx.primary_region}) replicates {params.replication_group_id}"
    if "oldDatastore" in outputs:
        message += f"; old datastore {params.global_replication_group_id} still exists: delete it when unused"
    return Operation(done=True, outputs=outputs, message=message)


# --- helpers --------------------------------------------------------------------------------------------------------


def _client(ctx: ResourceContext) -> Any:
    # The recovery region: in a disaster it is the one that answers, and it serves the datastore's API.
    return ctx.client("elasticache", region=ctx.recovery_region)


def _wait(message: str, outputs: dict[str, Any] | None = None) -> Operation:
    return Operation(done=False, outputs=outputs or {}, message=message, poll_interval_seconds=_POLL_SECONDS)


def _datastore(ctx: ResourceContext, global_id: str) -> dict[str, Any]:
    datastore = _find_datastore(ctx, global_id)
    if datastore is None:
        raise fatal(f"global datastore {global_id} not found (account {ctx.call.account.id})",
                    "GlobalDatastoreNotFound")
    return datastore


def _find_datastore(ctx: ResourceContext, global_id: str) -> dict[str, Any] | None:
    found = aws_call(f"DescribeGlobalReplicationGroups {global_id}", _client(ctx).describe_global_replication_groups,
                     tolerate=("GlobalReplicationGroupNotFoundFault",), GlobalReplicationGroupId=global_id,
                     ShowMemberInfo=True)
    if found and found["GlobalReplicationGroups"]:
        return dict(found["GlobalReplicationGroups"][0])
    return None


def _member(datastore: dict[str, Any], region: str, group_id: str | None) -> dict[str, Any] | None:
    found = next((m for m in datastore.get("Members", [])
                  if m["ReplicationGroupRegion"] == region and group_id in (None, m["ReplicationGroupId"])), None)
    return {**found, "Role": str(found.get("Role", "")).upper()} if found else None


def _members(datastore: dict[str, Any]) -> list[str]:
    members = datastore.get("Members", [])
    return [f"{m['ReplicationGroupId']}@{m['ReplicationGroupRegion']}:{m['Role']}" for m in members]


def _group(ctx: ResourceContext, region: str, group_id: str) -> dict[str, Any] | None:
    found = aws_call(f"DescribeReplicationGroups {group_id}",
                     ctx.client("elasticache", region=region).describe_replication_groups,
                     tolerate=("ReplicationGroupNotFoundFault",), ReplicationGroupId=group_id)
    return dict(found["ReplicationGroups"][0]) if found and found["ReplicationGroups"] else None


def _require_group(ctx: ResourceContext, region: str, group_id: str) -> dict[str, Any]:
    group = _group(ctx, region, group_id)
    if group is None:
        raise fatal(f"replication group {group_id} not found in {region} (account {ctx.call.account.id})",
                    "ReplicationGroupNotFound")
    return group


def _snapshot(ctx: ResourceContext, name: str) -> dict[str, Any] | None:
    found = aws_call(f"DescribeSnapshots {name}", _client(ctx).describe_snapshots,
                     tolerate=("SnapshotNotFoundFault",), SnapshotName=name)
    return dict(found["Snapshots"][0]) if found and found["Snapshots"] else None


def _role(group: dict[str, Any] | None) -> str | None:
    info = (group or {}).get("GlobalReplicationGroupInfo") or {}
    # The model documents the roles as "primary or secondary"; AWS answers in capitals. Either is accepted.
    return str(info.get("GlobalReplicationGroupMemberRole") or ("STANDALONE" if group else "")).upper() or None


def _endpoint(group: dict[str, Any] | None) -> str | None:
    if not group:
        return None
    endpoint = group.get("ConfigurationEndpoint") or next(
        (g.get("PrimaryEndpoint") for g in group.get("NodeGroups", []) if g.get("PrimaryEndpoint")), None)
    return f"{endpoint['Address']}:{endpoint.get('Port')}" if endpoint and endpoint.get("Address") else None


def _drill_names(ctx: ResourceContext, params: GlobalDatastoreParameters) -> tuple[str, str]:
    tail = f"-drill-{ctx.drill_suffix()}"
    # Replication group ids stop at 40 characters and may not end with, or double, a hyphen.
    base = params.replication_group_id[: 40 - len(tail)].rstrip("-")
    return f"{params.replication_group_id}{tail}", f"{base}{tail}"


def _require_ours(ctx: ResourceContext, arn: str, what: str) -> None:
    # Names are derived from the execution, but deletion is irreversible: the tag must confirm it is our drill copy.
    with aws_errors(f"ListTagsForResource {arn}"):
        tags = _client(ctx).list_tags_for_resource(ResourceName=arn).get("TagList", [])
    if {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} not in tags:
        raise fatal(f"refusing to delete {what}: it is not tagged {TAG_EXECUTION}={ctx.call.execution_id}", "NotOurs")
