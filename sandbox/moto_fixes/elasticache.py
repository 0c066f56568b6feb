"""ElastiCache: global datastores, which moto 5.2.5 lacks entirely, and the replication-group behaviour they need.

Added on moto's own ElastiCache backend and response handler, so replication groups, snapshots and tags stay in one
place. Shapes, error codes and HTTP statuses follow botocore's elasticache 2015-02-02 model (query protocol).

AWS changes take time; here a change finishes after a few looks at the account's ElastiCache state (Describe*
calls), so a client sees `modifying` / `creating` / `deleting` for a describe or two, as it must be ready to on AWS.
Global datastores are account-wide: any region's endpoint answers for them (as AWS does for a member's regions).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.core.responses import ActionResult
from moto.elasticache.exceptions import ElastiCacheException, ReplicationGroupNotFound
from moto.elasticache.models import ElastiCacheBackend, elasticache_backends
from moto.elasticache.responses import ElastiCacheResponse

from sandbox.moto_fixes._guard import require

_LOOKS = 3  # describes until a simulated change is finished
_lock = threading.RLock()


@dataclass
class _Member:
    region: str
    replication_group_id: str
    role: str  # PRIMARY | SECONDARY
    status: str = "associated"


@dataclass
class _Pending:
    looks: int
    finish: Callable[[], None]


@dataclass
class _GlobalDatastore:
    id: str
    description: str
    account_id: str
    cache_node_type: str
    engine: str
    engine_version: str | None
    cluster_enabled: bool
    auth_token_enabled: bool
    transit_encryption_enabled: bool
    at_rest_encryption_enabled: bool
    status: str = "creating"
    members: list[_Member] = field(default_factory=list)

    @property
    def arn(self) -> str:
        return f"arn:aws:elasticache::{self.account_id}:globalreplicationgroup:{self.id}"

    def member(self, region: str, replication_group_id: str) -> _Member | None:
        return next((m for m in self.members
                     if m.region == region and m.replication_group_id == replication_group_id), None)

    def to_dict(self, show_members: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "GlobalReplicationGroupId": self.id, "GlobalReplicationGroupDescription": self.description,
            "Status": self.status, "CacheNodeType": self.cache_node_type, "Engine": self.engine,
            "ClusterEnabled": self.cluster_enabled, "AuthTokenEnabled": self.auth_token_enabled,
            "TransitEncryptionEnabled": self.transit_encryption_enabled,
            "AtRestEncryptionEnabled": self.at_rest_encryption_enabled, "ARN": self.arn,
        }
        if self.engine_version:
            out["EngineVersion"] = self.engine_version
        # Members are only listed on request (ShowMemberInfo), as on AWS.
        if show_members:
            out["Members"] = [
                {"ReplicationGroupId": m.replication_group_id, "ReplicationGroupRegion": m.region, "Role": m.role,
                 "AutomaticFailover": getattr(_group(self.account_id, m.region, m.replication_group_id),
                                              "automatic_failover", "disabled"),
                 "Status": m.status}
                for m in self.members
            ]
        return out


def region_prefix(region: str) -> str:
    """AWS prefixes a global datastore's id with a fixed five-letter code of the region it was created in; the
    sandbox derives a stable stand-in from the region name (the real table is not part of the API)."""
    digest = hashlib.sha256(region.encode()).hexdigest()
    return "".join(chr(ord("a") + int(digest[i : i + 2], 16) % 26) for i in range(0, 10, 2))


# The backend methods wrapped below, with the parameters the wrappers read or pass on by name.
_WRAPPED = {"create_replication_group": ("global_replication_group_id", "cache_node_type", "engine", "engine_version",
                                         "snapshot_name"),
            "describe_replication_groups": ("replication_group_id",),
            "delete_replication_group": ("replication_group_id", "retain_primary_cluster"),
            "create_snapshot": ("replication_group_id",),
            "describe_snapshots": ()}


def apply() -> None:
    originals = {name: require(ElastiCacheBackend, name, *params) for name, params in _WRAPPED.items()}
    for used in ("elasticache_backend", "_get_param", "_get_bool_param"):  # what the added handlers read
        require(ElastiCacheResponse, used)
    for name in ("create_global_replication_group", "describe_global_replication_groups",
                 "failover_global_replication_group", "disassociate_global_replication_group"):
        setattr(ElastiCacheResponse, name, globals()[f"_response_{name}"])
    _wrap_backend(ElastiCacheBackend, originals)


# --- errors (codes and HTTP statuses come from the model's error shapes) --------------------------------------------


def _error(code: str, message: str) -> Exception:
    return ElastiCacheException(code, message)


def _not_found(global_id: str) -> Exception:
    return _error("GlobalReplicationGroupNotFoundFault", f"Global Replication Group {global_id} not found.")


def _invalid_global_state(datastore: _GlobalDatastore) -> Exception:
    return _error("InvalidGlobalReplicationGroupStateFault",
                  f"Global Replication Group {datastore.id} is not in available state (it is {datastore.status}).")


# --- state ----------------------------------------------------------------------------------------------------------


def _home(account_id: str) -> Any:
    """Account-wide state hangs on the account's us-east-1 backend, so moto's reset clears it with everything else."""
    backend: Any = elasticache_backends[account_id]["us-east-1"]  # Any: the dr_* attributes are ours, not moto's
    if not hasattr(backend, "dr_global_datastores"):
        backend.dr_global_datastores = {}
        backend.dr_pending = []
    return backend


def _datastores(account_id: str) -> dict[str, _GlobalDatastore]:
    return _home(account_id).dr_global_datastores


def _later(account_id: str, finish: Callable[[], None]) -> None:
    _home(account_id).dr_pending.append(_Pending(looks=_LOOKS, finish=finish))


def _tick(account_id: str) -> None:
    """One look at the account's state: simulated changes move on."""
    home = _home(account_id)
    due = []
    for pending in list(home.dr_pending):
        pending.looks -= 1
        if pending.looks <= 0:
            home.dr_pending.remove(pending)
            due.append(pending)
    for pending in due:
        pending.finish()


def _group(account_id: str, region: str, replication_group_id: str) -> Any:
    return elasticache_backends[account_id][region].replication_groups.get(replication_group_id)


def _find(account_id: str, global_id: str) -> _GlobalDatastore:
    datastore = _datastores(account_id).get(global_id or "")
    if datastore is None:
        raise _not_found(global_id)
    return datastore


def _set_membership(group: Any, global_id: str | None, role: str | None) -> None:
    # moto renders GlobalReplicationGroupInfo from a property that fails (so the field is left out) when the role
    # attribute is absent: that is how a standalone group must look.
    if global_id:
        group.global_replication_group_id = global_id
        group.global_replication_group_member_role = role
    else:
        group.global_replication_group_id = ""
        if hasattr(group, "global_replication_group_member_role"):
            del group.global_replication_group_member_role


# --- operations -----------------------------------------------------------------------------------------------------


def _response_create_global_replication_group(self: Any) -> Any:
    suffix = self._get_param("GlobalReplicationGroupIdSuffix")
    primary_id = self._get_param("PrimaryReplicationGroupId")
    backend = self.elasticache_backend
    with _lock:
        group = backend.replication_groups.get(primary_id)
        if group is None:
            raise ReplicationGroupNotFound(primary_id)
        if group.global_replication_group_id or group.status != "available":
            raise _error("InvalidReplicationGroupStateFault",
                         f"Replication group {primary_id} is not available or already in a global datastore.")
        global_id = f"{region_prefix(backend.region_name)}-{suffix}"
        if global_id in _datastores(backend.account_id):
            raise _error("GlobalReplicationGroupAlreadyExistsFault",
                         f"Global Replication Group {global_id} already exists.")
        datastore = _GlobalDatastore(
            id=global_id, description=self._get_param("GlobalReplicationGroupDescription") or "",
            account_id=backend.account_id, cache_node_type=group.cache_node_type, engine=group.engine,
            engine_version=group.engine_version, cluster_enabled=group.cluster_enabled,
            auth_token_enabled=group.auth_token_enabled, transit_encryption_enabled=group.transit_encryption_enabled,
            at_rest_encryption_enabled=group.at_rest_encryption_enabled,
            members=[_Member(backend.region_name, primary_id, "PRIMARY")],
        )
        _datastores(backend.account_id)[global_id] = datastore
        _set_membership(group, global_id, "PRIMARY")

        def created() -> None:
            datastore.status = "available"

        _later(backend.account_id, created)
        return ActionResult({"GlobalReplicationGroup": datastore.to_dict(show_members=True)})


def _response_describe_global_replication_groups(self: Any) -> Any:
    global_id = self._get_param("GlobalReplicationGroupId")
    show = bool(self._get_bool_param("ShowMemberInfo"))
    account_id = self.current_account
    with _lock:
        _tick(account_id)
        if global_id:
            found = [_find(account_id, global_id)]
        else:
            found = sorted(_datastores(account_id).values(), key=lambda d: d.id)
        return ActionResult({"GlobalReplicationGroups": [d.to_dict(show) for d in found]})


def _response_failover_global_replication_group(self: Any) -> Any:
    global_id = self._get_param("GlobalReplicationGroupId")
    region = self._get_param("PrimaryRegion")
    new_primary_id = self._get_param("PrimaryReplicationGroupId")
    account_id = self.current_account
    with _lock:
        datastore = _find(account_id, global_id)
        if datastore.status != "available":
            raise _invalid_global_state(datastore)
        new_primary = datastore.member(region, new_primary_id)
        if new_primary is None or new_primary.role != "SECONDARY":
            raise _error("InvalidParameterValue",
                         f"{new_primary_id} in {region} is not a secondary member of {global_id}.")
        old_primary = next(m for m in datastore.members if m.role == "PRIMARY")
        datastore.status = "modifying"
        groups = [_group(account_id, m.region, m.replication_group_id) for m in (old_primary, new_primary)]
        for group in groups:
            if group is not None:
                group.status = "modifying"

        def failed_over() -> None:
            old_primary.role, new_primary.role = "SECONDARY", "PRIMARY"
            for member, group in zip((old_primary, new_primary), groups, strict=True):
                if group is not None:
                    _set_membership(group, global_id, member.role)
                    group.status = "available"
            datastore.status = "available"

        _later(account_id, failed_over)
        return ActionResult({"GlobalReplicationGroup": datastore.to_dict(show_members=True)})


def _response_disassociate_global_replication_group(self: Any) -> Any:
    global_id = self._get_param("GlobalReplicationGroupId")
    group_id = self._get_param("ReplicationGroupId")
    region = self._get_param("ReplicationGroupRegion")
    account_id = self.current_account
    with _lock:
        datastore = _find(account_id, global_id)
        if datastore.status != "available":
            raise _invalid_global_state(datastore)
        member = datastore.member(region, group_id)
        if member is None:
            raise _error("InvalidParameterValue", f"{group_id} in {region} is not a member of {global_id}.")
        if member.role != "SECONDARY":
            raise _error("InvalidParameterValue",
                         f"{group_id} is the primary of {global_id}; only a secondary can be disassociated.")
        member.status = "disassociating"
        datastore.status = "modifying"
        group = _group(account_id, region, group_id)
        if group is not None:
            group.status = "modifying"

        def disassociated() -> None:
            datastore.members.remove(member)
            if group is not None:
                _set_membership(group, None, None)
                group.status = "available"
            datastore.status = "available"

        _later(account_id, disassociated)
        return ActionResult({"GlobalReplicationGroup": datastore.to_dict(show_members=True)})


# --- replication groups and snapshots -------------------------------------------------------------------------------


def _wrap_backend(backend_class: Any, originals: dict[str, Any]) -> None:
    create_group, describe_groups, delete_group, create_snapshot, describe_snapshots = (
        originals[name] for name in _WRAPPED)

    def create_replication_group(self: Any, **kwargs: Any) -> Any:
        """A secondary of a global datastore takes the datastore's node type and engine and joins it; a group
        restored from a snapshot, like a secondary, is `creating` until its data is in."""
        global_id = kwargs.get("global_replication_group_id")
        with _lock:
            datastore = None
            if global_id:
                datastore = _find(self.account_id, global_id)
                if datastore.status != "available":
                    raise _invalid_global_state(datastore)
                if any(m.region == self.region_name for m in datastore.members):
                    raise _error("InvalidParameterValue",
                                 f"Global Replication Group {global_id} already has a member in {self.region_name}.")
                kwargs["cache_node_type"] = kwargs.get("cache_node_type") or datastore.cache_node_type
                kwargs["engine"] = kwargs.get("engine") or datastore.engine
                kwargs["engine_version"] = kwargs.get("engine_version") or datastore.engine_version
            group = create_group(self, **kwargs)
            if datastore is None and not kwargs.get("snapshot_name"):
                return group
            group.status = "creating"
            member = None
            if datastore is not None:
                # A secondary takes the primary's Multi-AZ and automatic-failover settings.
                primary = next(m for m in datastore.members if m.role == "PRIMARY")
                source = _group(self.account_id, primary.region, primary.replication_group_id)
                if source is not None:
                    group.automatic_failover, group.multi_az = source.automatic_failover, source.multi_az
                member = _Member(self.region_name, group.replication_group_id, "SECONDARY", status="associating")
                datastore.members.append(member)
                _set_membership(group, datastore.id, "SECONDARY")

            def created() -> None:
                group.status = "available"
                if member is not None:
                    member.status = "associated"

            _later(self.account_id, created)
            return group

    def describe_replication_groups(self: Any, replication_group_id: str | None = None) -> Any:
        with _lock:
            _tick(self.account_id)
            return describe_groups(self, replication_group_id=replication_group_id)

    def delete_replication_group(self: Any, replication_group_id: str, retain_primary_cluster: bool | None) -> Any:
        """AWS refuses to delete a global datastore's member; moto 5.2.5 also never removes a deleted group (it stays
        `deleting` for ever): here it is gone after a few looks."""
        with _lock:
            group = self.replication_groups.get(replication_group_id)
            if group is not None and group.global_replication_group_id:
                raise _error("InvalidReplicationGroupStateFault",
                             f"Replication group {replication_group_id} is a member of global datastore "
                             f"{group.global_replication_group_id}; disassociate it first.")
            if group is not None and group.status not in ("available", "create-failed"):
                raise _error("InvalidReplicationGroupStateFault",
                             f"Replication group {replication_group_id} is {group.status}.")
            deleted = delete_group(self, replication_group_id, retain_primary_cluster)

            def gone() -> None:
                self.replication_groups.pop(replication_group_id, None)

            _later(self.account_id, gone)
            return deleted

    def create_snapshot_(self: Any, **kwargs: Any) -> Any:
        with _lock:
            group_id = kwargs.get("replication_group_id")
            group = self.replication_groups.get(group_id) if group_id else None
            if group is not None and group.status != "available":
                raise _error("InvalidReplicationGroupStateFault", f"Replication group {group_id} is {group.status}.")
            snapshot = create_snapshot(self, **kwargs)
            snapshot.snapshot_status = "creating"

            def taken() -> None:
                snapshot.snapshot_status = "available"

            _later(self.account_id, taken)
            return snapshot

    def describe_snapshots_(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            _tick(self.account_id)
            return describe_snapshots(self, *args, **kwargs)

    backend_class.create_replication_group = create_replication_group
    backend_class.describe_replication_groups = describe_replication_groups
    backend_class.delete_replication_group = delete_replication_group
    backend_class.create_snapshot = create_snapshot_
    backend_class.describe_snapshots = describe_snapshots_
