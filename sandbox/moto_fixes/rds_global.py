"""RDS: Aurora global databases on moto's RDS backend (moto 5.2.5).

Added: SwitchoverGlobalCluster and FailoverGlobalCluster, which moto lacks. Corrected: CreateGlobalCluster,
CreateDBCluster (joining a global cluster), RemoveFromGlobalCluster, DescribeGlobalClusters, DeleteDBCluster and
RestoreDBClusterFromSnapshot, where moto's global-cluster bookkeeping is wrong (see each function).

moto keeps every global cluster in the us-east-1 backend of the account (its responses' `global_backend`); the
clusters themselves live in their regional backends. A switchover or failover is not instantaneous on AWS:
`GlobalCluster.FailoverState` shows it (pending, then switching-over or failing-over) until the roles have swapped,
then disappears. Here it advances one step per DescribeGlobalClusters that sees the global cluster, so a client
that waits is really made to wait, deterministically.
"""

from __future__ import annotations

import inspect
from typing import Any

from moto.core.responses import ActionResult
from moto.rds.exceptions import RDSClientError
from moto.rds.models import GlobalCluster, RDSBackend, rds_backends
from moto.rds.responses import RDSResponse

from sandbox.moto_fixes._guard import require

# What a DescribeGlobalClusters sees after the call: the state, then how many more describes it lasts.
_SWITCHOVER_STEPS = ("pending", "switching-over", "switching-over")
_FAILOVER_STEPS = ("pending", "failing-over", "failing-over")
_RESYNC_DESCRIBES = 3  # after a failover with data loss, the old primary is pending-resync this long


def apply() -> None:
    # What is replaced or wrapped, with the parameters the replacements take or pass on by name (moto calls them
    # positionally from its responses), checked before anything here is patched.
    for name, params in (("create_global_cluster", _create_global_cluster), ("create_db_cluster", ("kwargs",)),
                         ("remove_from_global_cluster", _remove_from_global_cluster),
                         ("delete_db_cluster", ("cluster_identifier", "snapshot_name")),
                         ("restore_db_cluster_from_snapshot", _restore_db_cluster_from_snapshot),
                         ("describe_db_cluster_snapshots", ())):
        require(RDSBackend, name, *(params if isinstance(params, tuple) else _params(params)))
    require(GlobalCluster, "__init__", "backend", "global_cluster_identifier", "engine", "engine_version",
            "storage_encrypted", "deletion_protection")
    require(GlobalCluster, "global_cluster_members")  # how moto renders GlobalClusterMembers: replaced below
    require(RDSResponse, "describe_global_clusters")
    require(RDSResponse, "backend")

    GlobalCluster.global_cluster_members = property(_global_cluster_members)  # type: ignore[assignment]
    GlobalCluster.failover_state = None  # type: ignore[attr-defined]

    RDSBackend.create_global_cluster = _create_global_cluster  # type: ignore[method-assign]
    RDSBackend.remove_from_global_cluster = _remove_from_global_cluster  # type: ignore[method-assign]
    RDSBackend.switchover_global_cluster = _switchover  # type: ignore[attr-defined]
    RDSBackend.failover_global_cluster = _failover  # type: ignore[attr-defined]
    _wrap_create_db_cluster(RDSBackend)
    _wrap_delete_db_cluster(RDSBackend)
    RDSBackend.restore_db_cluster_from_snapshot = _restore_db_cluster_from_snapshot  # type: ignore[method-assign]

    RDSResponse.describe_global_clusters = _describe_global_clusters_response  # type: ignore[method-assign]
    RDSResponse.switchover_global_cluster = _switchover_response  # type: ignore[attr-defined]
    RDSResponse.failover_global_cluster = _failover_response  # type: ignore[attr-defined]


# --- errors, lookups ------------------------------------------------------------------------------------------------


def _params(function: Any) -> tuple[str, ...]:
    """The names of a replacement's parameters after `self`: moto's original must have the same."""
    return tuple(inspect.signature(function).parameters)[1:]


def _fault(code: str, message: str) -> Exception:
    # The HTTP status (404 for the NotFound faults, 400 otherwise) comes from botocore's model when moto serializes.
    return RDSClientError(code, message)


def _store(account_id: str) -> Any:
    return rds_backends[account_id]["us-east-1"].global_clusters


def _global(account_id: str, identifier: str) -> Any:
    found = _store(account_id).get(identifier)
    if found is None:
        raise _fault("GlobalClusterNotFoundFault", f"Global cluster {identifier} not found.")
    return found


def _cluster(backend: Any, identifier: str) -> Any:
    """A cluster by ARN (any region of the account, as AWS asks for global operations) or by identifier (here)."""
    if identifier.startswith("arn:"):
        parts = identifier.split(":")
        region, account, name = parts[3], parts[4], parts[-1]
        clusters = rds_backends[account][region].clusters if region else {}
    else:
        clusters, name = backend.clusters, identifier
    if name not in clusters:
        raise _fault("DBClusterNotFoundFault", f"DBCluster {identifier} not found.")
    return clusters[name]


def _writer(global_cluster: Any) -> Any:
    return next((c for c in global_cluster.members if c.is_writer), None)


def _require_idle(global_cluster: Any) -> None:
    if global_cluster.failover_state is not None:
        raise _fault(
            "InvalidGlobalClusterStateFault",
            f"Global cluster {global_cluster.global_cluster_identifier} has a switchover or failover in progress "
            f"({global_cluster.failover_state['Status']}).",
        )


def _make_writer(global_cluster: Any, target: Any) -> None:
    """The roles after a switchover or failover: the target writes, every other member replicates from it."""
    for member in global_cluster.members:
        member.is_writer = member is target
        member.replication_source_identifier = None if member is target else target.db_cluster_arn
        member.read_replica_identifiers = []
    target.read_replica_identifiers = [m.db_cluster_arn for m in global_cluster.members if m is not target]


def _join_as_secondary(global_cluster: Any, cluster: Any) -> None:
    writer = _writer(global_cluster)
    cluster.global_cluster_identifier = global_cluster.global_cluster_identifier
    if writer is not None and not cluster.master_username:
        cluster.master_username = writer.master_username  # one database, one master user, in every region
    if writer is None or writer is cluster:
        cluster.is_writer = True
        return
    cluster.is_writer = False
    cluster.replication_source_identifier = writer.db_cluster_arn
    if cluster.db_cluster_arn not in writer.read_replica_identifiers:
        writer.read_replica_identifiers.append(cluster.db_cluster_arn)


# --- the global cluster as AWS shows it -----------------------------------------------------------------------------


def _global_cluster_members(self: Any) -> list[dict[str, Any]]:
    members = []
    for member in self.members:
        entry: dict[str, Any] = {
            "DBClusterArn": member.db_cluster_arn,
            "IsWriter": bool(member.is_writer),
            "Readers": [],
        }
        if member.is_writer:
            entry["Readers"] = [m.db_cluster_arn for m in self.members if not m.is_writer]
        else:
            entry["GlobalWriteForwardingStatus"] = "disabled"
            entry["SynchronizationStatus"] = getattr(member, "dr_sync_status", "connected")
        members.append(entry)
    return members


def _advance(global_cluster: Any) -> None:
    """One step of an operation in progress, as seen by one describe."""
    for member in global_cluster.members:
        remaining = getattr(member, "dr_resync_describes", 0)
        if remaining:
            member.dr_resync_describes = remaining - 1
            if remaining == 1:
                member.dr_sync_status = "connected"
    steps = getattr(global_cluster, "dr_steps", None)
    if global_cluster.failover_state is None or not steps:
        return
    steps.pop(0)
    if steps:
        global_cluster.failover_state = {**global_cluster.failover_state, "Status": steps[0]}
        return
    state = global_cluster.failover_state
    source = next(m for m in global_cluster.members if m.db_cluster_arn == state["FromDbClusterArn"])
    target = next(m for m in global_cluster.members if m.db_cluster_arn == state["ToDbClusterArn"])
    _make_writer(global_cluster, target)
    if state["IsDataLossAllowed"]:
        # AWS demotes the old primary and brings it back as a secondary that must resynchronise (it may have
        # writes the new primary never saw): pending-resync until that is done.
        source.dr_sync_status = "pending-resync"
        source.dr_resync_describes = _RESYNC_DESCRIBES
    global_cluster.failover_state = None
    global_cluster.dr_steps = None


def _start_role_change(backend: Any, identifier: str, target_id: str, data_loss: bool) -> Any:
    global_cluster = _global(backend.account_id, identifier)
    target = _cluster(backend, target_id)
    _require_idle(global_cluster)
    if target not in global_cluster.members:
        raise _fault(
            "InvalidDBClusterStateFault",
            f"DBCluster {target.db_cluster_arn} is not a member of global cluster {identifier}.",
        )
    if target.is_writer:
        raise _fault(
            "InvalidDBClusterStateFault",
            f"DBCluster {target.db_cluster_arn} is already the primary cluster of global cluster {identifier}.",
        )
    source = _writer(global_cluster)
    if source is None:
        raise _fault("InvalidGlobalClusterStateFault", f"Global cluster {identifier} has no primary cluster.")
    for member in (source, target):
        if member.status != "available":
            raise _fault(
                "InvalidDBClusterStateFault",
                f"DBCluster {member.db_cluster_identifier} is {member.status}, expected available.",
            )
    if not data_loss and source.engine_version != target.engine_version:
        raise _fault(
            "InvalidDBClusterStateFault",
            f"A switchover needs the same engine version on {source.db_cluster_identifier} "
            f"({source.engine_version}) and {target.db_cluster_identifier} ({target.engine_version}).",
        )
    steps = list(_FAILOVER_STEPS if data_loss else _SWITCHOVER_STEPS)
    global_cluster.dr_steps = steps
    global_cluster.failover_state = {
        "Status": steps[0],
        "FromDbClusterArn": source.db_cluster_arn,
        "ToDbClusterArn": target.db_cluster_arn,
        "IsDataLossAllowed": data_loss,
    }
    return global_cluster


def _switchover(self: Any, global_cluster_identifier: str, target_db_cluster_identifier: str) -> Any:
    return _start_role_change(self, global_cluster_identifier, target_db_cluster_identifier, data_loss=False)


def _failover(self: Any, global_cluster_identifier: str, target_db_cluster_identifier: str,
              allow_data_loss: bool | None, switchover: bool | None) -> Any:
    if allow_data_loss and switchover:
        raise _fault("InvalidParameterCombination", "AllowDataLoss and Switchover cannot both be specified.")
    # Without AllowDataLoss the operation is a switchover, as AWS documents.
    return _start_role_change(self, global_cluster_identifier, target_db_cluster_identifier,
                              data_loss=bool(allow_data_loss))


# --- corrected operations -------------------------------------------------------------------------------------------


def _create_global_cluster(self: Any, global_cluster_identifier: str, source_db_cluster_identifier: str | None,
                           engine: str | None, engine_version: str | None, storage_encrypted: bool | None,
                           deletion_protection: bool | None) -> Any:
    """moto 5.2.5 looks the source up in us-east-1 only, leaves it IsWriter false, records the global ARN as the
    cluster's GlobalClusterIdentifier, and silently replaces a global cluster of the same name."""
    store = _store(self.account_id)
    if global_cluster_identifier in store:
        raise _fault("GlobalClusterAlreadyExistsFault", f"Global cluster {global_cluster_identifier} already exists.")
    source = None
    if source_db_cluster_identifier is not None:
        if not source_db_cluster_identifier.startswith("arn:"):
            raise _fault("InvalidParameterValue", "SourceDBClusterIdentifier must be a DB cluster ARN.")
        source = _cluster(self, source_db_cluster_identifier)
        if engine is not None:
            raise _fault("InvalidParameterCombination", "Engine is inherited from the source cluster.")
        if source.global_cluster_identifier:
            raise _fault("InvalidDBClusterStateFault",
                         f"DBCluster {source.db_cluster_identifier} is already in a global cluster.")
        engine, engine_version = source.engine, source.engine_version
    elif engine is None:
        raise _fault("InvalidParameterValue", "Engine is required for a global cluster without a source cluster.")
    global_cluster = GlobalCluster(backend=self, global_cluster_identifier=global_cluster_identifier,
                                   engine=engine, engine_version=engine_version,
                                   storage_encrypted=storage_encrypted, deletion_protection=deletion_protection)
    store[global_cluster_identifier] = global_cluster
    if source is not None:
        global_cluster.members.append(source)
        _join_as_secondary(global_cluster, source)
    return global_cluster


def _wrap_create_db_cluster(backend_class: Any) -> None:
    """moto 5.2.5 creates a standalone cluster when GlobalClusterIdentifier names no global cluster, and a secondary
    shows no ReplicationSourceIdentifier; AWS refuses the first and names the primary in the second."""
    original = backend_class.create_db_cluster

    def create_db_cluster(self: Any, kwargs: dict[str, Any]) -> Any:
        identifier = kwargs.get("global_cluster_identifier")
        if identifier:
            global_cluster = _global(self.account_id, identifier)
            _require_idle(global_cluster)
        cluster = original(self, kwargs)
        if identifier:
            _join_as_secondary(global_cluster, cluster)
        return cluster

    backend_class.create_db_cluster = create_db_cluster


def _remove_from_global_cluster(self: Any, global_cluster_identifier: str, db_cluster_identifier: str) -> Any:
    """Detach and promote. moto 5.2.5 looks the global cluster up in the caller's region (so a secondary's region
    finds nothing and returns an empty answer), and leaves the detached cluster a replica."""
    global_cluster = _global(self.account_id, global_cluster_identifier)
    cluster = _cluster(self, db_cluster_identifier)
    if cluster not in global_cluster.members:
        raise _fault("DBClusterNotFoundFault",
                     f"DBCluster {db_cluster_identifier} is not a member of {global_cluster_identifier}.")
    _require_idle(global_cluster)
    if cluster.is_writer and len(global_cluster.members) > 1:
        raise _fault("InvalidGlobalClusterStateFault",
                     f"The primary cluster of {global_cluster_identifier} can only be removed after its secondaries.")
    writer = _writer(global_cluster)
    global_cluster.members.remove(cluster)
    if writer is not None and cluster.db_cluster_arn in writer.read_replica_identifiers:
        writer.read_replica_identifiers.remove(cluster.db_cluster_arn)
    cluster.global_cluster_identifier = None
    cluster.replication_source_identifier = None
    cluster.is_writer = False
    return global_cluster


def _wrap_delete_db_cluster(backend_class: Any) -> None:
    """moto 5.2.5 removes a deleted cluster from a global cluster of its own region only; AWS refuses to delete a
    member of a global database until it is removed from it."""
    original = backend_class.delete_db_cluster

    def delete_db_cluster(self: Any, cluster_identifier: str, snapshot_name: str | None = None) -> Any:
        cluster = self.clusters.get(cluster_identifier)
        if cluster is not None and cluster.global_cluster_identifier:
            raise _fault("InvalidDBClusterStateFault",
                         f"DBCluster {cluster_identifier} is a member of global cluster "
                         f"{cluster.global_cluster_identifier}; remove it from the global cluster first.")
        return original(self, cluster_identifier, snapshot_name)

    backend_class.delete_db_cluster = delete_db_cluster


def _restore_db_cluster_from_snapshot(self: Any, from_snapshot_id: str, overrides: dict[str, Any]) -> Any:
    """moto 5.2.5 copies the source cluster's whole configuration, global membership and replication source
    included, so a copy restored from a secondary's snapshot joined the global database. A restored cluster is
    standalone on AWS unless the request says otherwise."""
    snapshot = self.describe_db_cluster_snapshots(None, from_snapshot_id)[0]
    props = {k: v for k, v in snapshot.cluster.__dict__.items() if k != "backend"}
    for key in ("global_cluster_identifier", "replication_source_identifier", "tags"):
        props.pop(key, None)
    for private in ("_enable_http_endpoint", "_vpc_security_group_ids"):
        props[private[1:]] = props.pop(private, None)
    # A secondary has no password of its own (moto's get_cfg fails on it); on AWS the credentials are in the data
    # the snapshot carries, so any placeholder will do for the emulated copy.
    props["master_user_password"] = props.pop("_master_user_password", None) or "restored-from-snapshot"
    for key, value in overrides.items():
        if value:
            props[key] = value
    return self.create_db_cluster(props)


# --- responses ------------------------------------------------------------------------------------------------------


def _describe_global_clusters_response(self: Any) -> Any:
    """moto 5.2.5 ignores GlobalClusterIdentifier and always lists every global cluster."""
    identifier = self.params.get("GlobalClusterIdentifier")
    store = _store(self.current_account)
    clusters = [_global(self.current_account, identifier)] if identifier else list(store.values())
    for name, values in ((f["Name"], f["Values"]) for f in self.params.get("Filters", []) or []):
        if name == "region":  # the only filter AWS supports: a member in one of these regions
            clusters = [g for g in clusters if any(m.region in values for m in g.members)]
    for global_cluster in clusters:
        _advance(global_cluster)
    return ActionResult({"GlobalClusters": clusters})


def _switchover_response(self: Any) -> Any:
    global_cluster = self.backend.switchover_global_cluster(
        self.params["GlobalClusterIdentifier"], self.params["TargetDbClusterIdentifier"]
    )
    return ActionResult({"GlobalCluster": global_cluster})


def _failover_response(self: Any) -> Any:
    global_cluster = self.backend.failover_global_cluster(
        self.params["GlobalClusterIdentifier"],
        self.params["TargetDbClusterIdentifier"],
        self.params.get("AllowDataLoss"),
        self.params.get("Switchover"),
    )
    return ActionResult({"GlobalCluster": global_cluster})
