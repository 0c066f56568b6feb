"""MemoryDB cluster in the recovery region, by one of two methods (`method`).

multi-region: a MemoryDB multi-region cluster is active-active; every regional cluster takes writes. Failing over is
moving traffic (DNS, a later layer), not a database call: ACTIVATE only verifies that the recovery-region cluster is
an available member and reports its endpoint as output for the DNS step. A drill does the same, so it is read-only
by nature. REPLICATE verifies that the primary region's member is back and available (replication resumes on its own).

snapshot-restore: ACTIVATE creates the cluster in the recovery region from a snapshot there, named (`snapshotName`)
or the latest available one of a named source cluster (`sourceClusterName`), and waits until it is available.
MemoryDB snapshots are regional: they must already be in the recovery region. A drill restores under a drill name,
tagged with the execution, and CLEANUP deletes it; a real failover keeps the cluster under `clusterName`.

A cluster this module creates carries the execution tag; one found under the name is accepted only with that tag,
so a retry adopts its own restore and never another cluster.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from activities.core.context import ResourceContext
from activities.core.aws import aws_call, aws_errors, fatal
from activities.core.context import TAG_EXECUTION
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, StateMachineModule, register

_NAME = r"^[a-zA-Z][a-zA-Z0-9-]{0,39}$"
_POLL_SECONDS = 15.0
_BROKEN = frozenset({"deleting", "create-failed", "snapshot-restore-failed"})


class MemoryDbClusterParameters(ModuleParameters):
    method: Literal["multi-region", "snapshot-restore"]
    cluster_name: str = Field(pattern=_NAME)  # in the recovery region: the member, or the cluster to restore
    multi_region_cluster_name: str | None = None  # multi-region
    primary_cluster_name: str | None = Field(default=None, pattern=_NAME)  # multi-region: member in the primary region
    snapshot_name: str | None = None  # snapshot-restore: in the recovery region ...
    source_cluster_name: str | None = None  # ... or the latest available snapshot of this cluster there
    node_type: str | None = None  # default: the snapshot's
    acl_name: str = "open-access"
    subnet_group_name: str | None = None
    security_group_ids: tuple[str, ...] = ()
    tls_enabled: bool | None = None

    @model_validator(mode="after")
    def _one_method(self) -> MemoryDbClusterParameters:
        if self.method == "multi-region" and not self.multi_region_cluster_name:
            raise ValueError("method multi-region needs multiRegionClusterName")
        if self.method == "snapshot-restore" and bool(self.snapshot_name) == bool(self.source_cluster_name):
            raise ValueError("method snapshot-restore needs exactly one of snapshotName and sourceClusterName")
        return self


@register
class MemoryDbCluster(StateMachineModule):
    action = "memorydb.cluster"
    summary = "Verify a MemoryDB multi-region member (failover is DNS) or restore a cluster from a snapshot"
    Parameters = MemoryDbClusterParameters

    def status(self, ctx: ResourceContext, params: MemoryDbClusterParameters) -> dict[str, Any]:
        cluster = _cluster(ctx, ctx.recovery_region, params.cluster_name)
        return {"cluster": params.cluster_name, "exists": cluster is not None,
                "status": cluster and cluster["Status"], "endpoint": _endpoint(cluster)}

    def instantiate(self, ctx: ResourceContext, params: MemoryDbClusterParameters, handle: dict[str, Any]) -> Operation:
        if params.method == "multi-region":
            return _member_ready(ctx, params, ctx.recovery_region, params.cluster_name)
        snapshot = _resolve_snapshot(ctx, params)
        return Operation(done=True, outputs={"snapshot": snapshot["Name"]},
                         message=f"snapshot {snapshot['Name']} available in {ctx.recovery_region}")

    def activate(self, ctx: ResourceContext, params: MemoryDbClusterParameters, handle: dict[str, Any]) -> Operation:
        if params.method == "multi-region":
            return _member_ready(ctx, params, ctx.recovery_region, params.cluster_name)
        return _restore(ctx, params)

    def cleanup(self, ctx: ResourceContext, params: MemoryDbClusterParameters, handle: dict[str, Any]) -> Operation:
        if params.method != "multi-region" and ctx.is_drill:
            return _delete_drill_cluster(ctx, params)
        return _nothing_to_change(params)

    def replicate(self, ctx: ResourceContext, params: MemoryDbClusterParameters, handle: dict[str, Any]) -> Operation:
        if params.method == "multi-region" and not ctx.is_drill:
            return _member_ready(ctx, params, ctx.primary_region, params.primary_cluster_name)
        return _nothing_to_change(params)


def _nothing_to_change(params: MemoryDbClusterParameters) -> Operation:
    method = "multi-region cluster" if params.method == "multi-region" else "snapshot restore"
    return Operation(done=True, message=f"{method}: nothing to change in this phase")


def _member_ready(ctx: ResourceContext, params: MemoryDbClusterParameters, region: str, name: str | None) -> Operation:
    multi_name = params.multi_region_cluster_name or ""
    found = aws_call(f"DescribeMultiRegionClusters {multi_name}", _client(ctx).describe_multi_region_clusters,
                     tolerate=("MultiRegionClusterNotFoundFault",), MultiRegionClusterName=multi_name,
                     ShowClusterDetails=True)
    if not found or not found["MultiRegionClusters"]:
        raise fatal(f"multi-region cluster {multi_name} not found (account {ctx.call.account.id})",
                    "MultiRegionClusterNotFound")
    multi = found["MultiRegionClusters"][0]
    regional = next((c for c in multi.get("Clusters", []) if c["Region"] == region
                     and (name is None or c["ClusterName"] == name)), None)
    if regional is None:
        raise fatal(f"multi-region cluster {multi_name} has no member {name or ''} in {region}", "NotAMember")
    cluster = _cluster(ctx, region, regional["ClusterName"])
    if cluster is None:
        raise fatal(f"MemoryDB cluster {regional['ClusterName']} not found in {region}", "ClusterNotFound")
    outputs = {"cluster": cluster["Name"], "region": region, "status": cluster["Status"],
               "multiRegionStatus": multi["Status"], "endpoint": _endpoint(cluster),
               "endpointAddress": (cluster.get("ClusterEndpoint") or {}).get("Address")}
    if cluster["Status"] in _BROKEN:
        raise fatal(f"{cluster['Name']} in {region} is {cluster['Status']}", "ClusterNotAvailable")
    if cluster["Status"] != "available":
        return _wait(f"{cluster['Name']} in {region} is {cluster['Status']}", outputs)
    return Operation(done=True, outputs=outputs,
                     message=f"{cluster['Name']} ({region}) is available at {outputs['endpoint']}: move traffic by DNS")


def _restore(ctx: ResourceContext, params: MemoryDbClusterParameters) -> Operation:
    name = _target_name(ctx, params)
    cluster = _cluster(ctx, ctx.recovery_region, name)
    if cluster is not None:
        _require_ours(ctx, cluster["ARN"], f"cluster {name}")
        outputs = {"cluster": name, "status": cluster["Status"], "endpoint": _endpoint(cluster)}
        if cluster["Status"] == "available":
            return Operation(done=True, outputs=outputs, message=f"{name} restored and available")
        if cluster["Status"] in _BROKEN:
            raise fatal(f"{name} is {cluster['Status']}", "RestoreFailed")
        return _wait(f"restoring {name} ({cluster['Status']})", outputs)
    snapshot = _resolve_snapshot(ctx, params)
    config = snapshot.get("ClusterConfiguration") or {}
    request: dict[str, Any] = {
        "ClusterName": name,
        "NodeType": params.node_type or config.get("NodeType"),
        "ACLName": params.acl_name,
        "SnapshotName": snapshot["Name"],
        "Description": f"restored from {snapshot['Name']} by DR execution {ctx.call.execution_id}",
        "Tags": ctx.tags(),
    }
    if params.subnet_group_name:
        request["SubnetGroupName"] = params.subnet_group_name
    if params.security_group_ids:
        request["SecurityGroupIds"] = list(params.security_group_ids)
    if params.tls_enabled is not None:
        request["TLSEnabled"] = params.tls_enabled
    aws_call(f"CreateCluster {name} from {snapshot['Name']}", _client(ctx).create_cluster,
             tolerate=("ClusterAlreadyExistsFault",), **request)
    ctx.log.info("memorydb.restore_requested", cluster=name, snapshot=snapshot["Name"])
    return _wait(f"restoring {name} from {snapshot['Name']}", {"cluster": name, "snapshot": snapshot["Name"]})


def _delete_drill_cluster(ctx: ResourceContext, params: MemoryDbClusterParameters) -> Operation:
    name = _target_name(ctx, params)
    cluster = _cluster(ctx, ctx.recovery_region, name)
    if cluster is None:
        return Operation(done=True, message=f"drill cluster {name} is gone")
    _require_ours(ctx, cluster["ARN"], f"cluster {name}")
    if cluster["Status"] != "deleting":
        # InvalidClusterStateFault: still restoring; the next poll asks again.
        aws_call(f"DeleteCluster {name}", _client(ctx).delete_cluster,
                 tolerate=("InvalidClusterStateFault", "ClusterNotFoundFault"), ClusterName=name)
        ctx.log.info("memorydb.drill_delete_requested", cluster=name)
    return _wait(f"deleting drill cluster {name}", {"cluster": name})


# --- helpers --------------------------------------------------------------------------------------------------------


def _client(ctx: ResourceContext, region: str | None = None) -> Any:
    return ctx.client("memorydb", region=region or ctx.recovery_region)


def _wait(message: str, outputs: dict[str, Any] | None = None) -> Operation:
    return Operation(done=False, outputs=outputs or {}, message=message, poll_interval_seconds=_POLL_SECONDS)


def _cluster(ctx: ResourceContext, region: str, name: str) -> dict[str, Any] | None:
    found = aws_call(f"DescribeClusters {name}", _client(ctx, region).describe_clusters,
                     tolerate=("ClusterNotFoundFault",), ClusterName=name)
    return dict(found["Clusters"][0]) if found and found["Clusters"] else None


def _resolve_snapshot(ctx: ResourceContext, params: MemoryDbClusterParameters) -> dict[str, Any]:
    client = _client(ctx)
    if params.snapshot_name:
        found = aws_call(f"DescribeSnapshots {params.snapshot_name}", client.describe_snapshots,
                         tolerate=("SnapshotNotFoundFault",), SnapshotName=params.snapshot_name, ShowDetail=True)
        snapshots = list(found["Snapshots"]) if found else []
        what = f"snapshot {params.snapshot_name}"
    else:
        with aws_errors(f"DescribeSnapshots of {params.source_cluster_name}"):
            snapshots = [s for page in client.get_paginator("describe_snapshots").paginate(
                ClusterName=params.source_cluster_name, ShowDetail=True) for s in page["Snapshots"]]
        what = f"an available snapshot of {params.source_cluster_name}"
    available = [s for s in snapshots if s.get("Status") == "available"]
    if not available:
        raise fatal(f"{what} not found in {ctx.recovery_region} (account {ctx.call.account.id})", "SnapshotNotFound")
    return max(available, key=_taken_at)


def _taken_at(snapshot: dict[str, Any]) -> Any:
    # A snapshot reports its time per shard only (ShowDetail); the latest shard is when it was complete.
    times = [s["SnapshotCreationTime"] for s in (snapshot.get("ClusterConfiguration") or {}).get("Shards", [])
             if s.get("SnapshotCreationTime")]
    return (max(times).timestamp() if times else 0.0, snapshot["Name"])


def _target_name(ctx: ResourceContext, params: MemoryDbClusterParameters) -> str:
    if not ctx.is_drill:
        return params.cluster_name
    tail = f"-drill-{ctx.drill_suffix()}"
    # Cluster names stop at 40 characters and may not end with, or double, a hyphen.
    return f"{params.cluster_name[: 40 - len(tail)].rstrip('-')}{tail}"


def _endpoint(cluster: dict[str, Any] | None) -> str | None:
    endpoint = (cluster or {}).get("ClusterEndpoint") or {}
    return f"{endpoint['Address']}:{endpoint.get('Port')}" if endpoint.get("Address") else None


def _require_ours(ctx: ResourceContext, arn: str, what: str) -> None:
    with aws_errors(f"ListTags {arn}"):
        tags = _client(ctx).list_tags(ResourceArn=arn).get("TagList", [])
    if {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} not in tags:
        raise fatal(f"{what} exists and is not tagged {TAG_EXECUTION}={ctx.call.execution_id}: not ours to "
                    "adopt or delete", "NotOurs")
