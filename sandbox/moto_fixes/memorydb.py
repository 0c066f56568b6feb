"""MemoryDB: multi-region clusters, which moto 5.2.5 lacks, and restores that take time.

Added on moto's own MemoryDB backend and response handler. Shapes and error codes follow botocore's memorydb
2021-01-01 model (JSON protocol, which botocore prefers over CBOR for this service):
- CreateMultiRegionCluster / DescribeMultiRegionClusters (regional clusters listed only with ShowClusterDetails);
- CreateCluster with MultiRegionClusterName joins the multi-region cluster (one regional cluster per region) and
  reports it in DescribeClusters; with SnapshotName it needs the snapshot in that region (moto 5.2.5 accepts any name).
A regional cluster joining, or restored from a snapshot, is `creating` for a few DescribeClusters calls, as on AWS.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from moto.core.responses import ActionResult
from moto.memorydb.exceptions import MemoryDBClientError
from moto.memorydb.models import memorydb_backends
from moto.memorydb.responses import MemoryDBResponse

from sandbox.moto_fixes._guard import UnsupportedMoto, require
from sandbox.moto_fixes.elasticache import region_prefix

_LOOKS = 3
_lock = threading.RLock()


@dataclass
class _MultiRegionCluster:
    name: str
    account_id: str
    description: str
    node_type: str
    engine: str
    engine_version: str
    num_shards: int
    tls_enabled: bool
    parameter_group: str
    status: str = "creating"
    looks: int = _LOOKS
    clusters: dict[str, str] = field(default_factory=dict)  # region -> regional cluster name

    def to_dict(self, details: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "MultiRegionClusterName": self.name, "Description": self.description, "Status": self.status,
            "NodeType": self.node_type, "Engine": self.engine, "EngineVersion": self.engine_version,
            "NumberOfShards": self.num_shards, "MultiRegionParameterGroupName": self.parameter_group,
            "TLSEnabled": self.tls_enabled,
            "ARN": f"arn:aws:memorydb::{self.account_id}:multiregioncluster/{self.name}",
        }
        if details:
            out["Clusters"] = []
            for region, name in sorted(self.clusters.items()):
                cluster = _backend(self.account_id, region).clusters.get(name)
                out["Clusters"].append({"ClusterName": name, "Region": region,
                                        "Status": cluster.status if cluster else "deleting",
                                        "ARN": f"arn:aws:memorydb:{region}:{self.account_id}:cluster/{name}"})
        return out


def apply() -> None:
    # moto renders a cluster in its own way (5.2.5: MemoryDBCluster.to_dict; 5.2.6: inline in each handler): the
    # handlers are wrapped and what they rendered gets the fields moto lacks, so either rendering will do.
    create_cluster = require(MemoryDBResponse, "create_cluster")
    describe_clusters = require(MemoryDBResponse, "describe_clusters")
    delete_cluster = require(MemoryDBResponse, "delete_cluster")
    for used in ("memorydb_backend", "_get_param"):
        require(MemoryDBResponse, used)
    require(ActionResult, "result")

    def create(self: Any) -> Any:
        backend = self.memorydb_backend
        with _lock:
            multi = None
            if self._get_param("MultiRegionClusterName"):
                multi = _find(backend.account_id, self._get_param("MultiRegionClusterName"))
                if multi.status != "available":
                    raise _error("InvalidMultiRegionClusterStateFault", f"{multi.name} is {multi.status}.")
                if backend.region_name in multi.clusters:
                    raise _error("InvalidParameterValueException",
                                 f"{multi.name} already has a cluster in {backend.region_name}.")
            snapshot = self._get_param("SnapshotName")
            if snapshot and snapshot not in backend.snapshots:
                raise _error("SnapshotNotFoundFault", f"Snapshot {snapshot} not found.")
            result = create_cluster(self)
            cluster = backend.clusters[self._get_param("ClusterName")]
            if multi is not None:
                cluster.multi_region_cluster_name = multi.name
                multi.clusters[backend.region_name] = cluster.cluster_name
            if multi is not None or snapshot:
                cluster.status = "creating"
                cluster.dr_looks = _LOOKS
            return _as_now(result, backend)

    def describe(self: Any) -> Any:
        with _lock:
            _tick(self.memorydb_backend.account_id)
            return _as_now(describe_clusters(self), self.memorydb_backend)

    def delete(self: Any) -> Any:
        with _lock:
            cluster = self.memorydb_backend.clusters.get(self._get_param("ClusterName"))
            if cluster is not None and cluster.status != "available":
                raise _error("InvalidClusterStateFault", f"Cluster {cluster.cluster_name} is {cluster.status}.")
            name = getattr(cluster, "multi_region_cluster_name", None)
            if name and name in _multi(self.memorydb_backend.account_id):
                _multi(self.memorydb_backend.account_id)[name].clusters.pop(self.memorydb_backend.region_name, None)
            return delete_cluster(self)

    # Patched onto moto's class, which mypy cannot follow: handlers replaced (method-assign) and added (attr-defined).
    MemoryDBResponse.create_cluster = create  # type: ignore[method-assign]
    MemoryDBResponse.describe_clusters = describe  # type: ignore[method-assign]
    MemoryDBResponse.delete_cluster = delete  # type: ignore[method-assign]
    MemoryDBResponse.create_multi_region_cluster = _create_multi_region_cluster  # type: ignore[attr-defined]
    MemoryDBResponse.describe_multi_region_clusters = _describe_multi_region_clusters  # type: ignore[attr-defined]


def _as_now(result: Any, backend: Any) -> Any:
    """moto's answer ({"Cluster": {...}} or {"Clusters": [...]}) with each cluster's status as the sandbox has it
    (creating while it joins or restores) and its MultiRegionClusterName, which moto does not know."""
    found = result.result
    shown = found.get("Clusters", [found.get("Cluster")]) if isinstance(found, dict) else None
    if shown is None or not all(isinstance(out, dict) and "Name" in out for out in shown):
        raise UnsupportedMoto("moto_fixes/memorydb", "reads the clusters in moto's answers, which moto now shapes "
                              f"differently: {str(found)[:200]!r}")
    for out in shown:
        cluster = backend.clusters.get(out["Name"])
        if cluster is None:
            continue
        out["Status"] = cluster.status
        if getattr(cluster, "multi_region_cluster_name", None):
            out["MultiRegionClusterName"] = cluster.multi_region_cluster_name
    return result


def _error(code: str, message: str) -> Exception:
    # (code, message) on moto 5.2.5 (a JsonRESTError) and 5.2.6 (a ServiceException) alike. moto finds the service
    # model (error shapes, HTTP status) from the exception's module, so a bare ServiceException would not do.
    return MemoryDBClientError(code, message)


def _backend(account_id: str, region: str) -> Any:
    return memorydb_backends[account_id][region]


def _multi(account_id: str) -> dict[str, _MultiRegionCluster]:
    """Account-wide state on the account's us-east-1 backend, so moto's reset clears it with everything else."""
    home = _backend(account_id, "us-east-1")
    if not hasattr(home, "dr_multi_region_clusters"):
        home.dr_multi_region_clusters = {}
    return home.dr_multi_region_clusters


def _find(account_id: str, name: str) -> _MultiRegionCluster:
    found = _multi(account_id).get(name)
    if found is None:
        raise _error("MultiRegionClusterNotFoundFault", f"Multi-region cluster {name} not found.")
    return found


def _tick(account_id: str) -> None:
    """One look at the account's state: creations move on."""
    for multi in _multi(account_id).values():
        multi.looks -= 1
        if multi.status == "creating" and multi.looks <= 0:
            multi.status = "available"
    cluster: Any  # moto's MemoryDBCluster, with the dr_looks that create() gives it
    for backend in list(memorydb_backends[account_id].values()):
        for cluster in backend.clusters.values():
            if getattr(cluster, "dr_looks", 0) > 0:
                cluster.dr_looks -= 1
                if cluster.dr_looks == 0 and cluster.status == "creating":
                    cluster.status = "available"


def _create_multi_region_cluster(self: Any) -> Any:
    params = {k: self._get_param(k) for k in ("MultiRegionClusterNameSuffix", "Description", "NodeType", "Engine",
                                              "EngineVersion", "NumShards", "TLSEnabled",
                                              "MultiRegionParameterGroupName", "Tags")}
    backend = self.memorydb_backend
    with _lock:
        name = f"{region_prefix(backend.region_name)}-{params['MultiRegionClusterNameSuffix']}"
        if name in _multi(backend.account_id):
            raise _error("MultiRegionClusterAlreadyExistsFault", f"Multi-region cluster {name} already exists.")
        multi = _MultiRegionCluster(
            name=name, account_id=backend.account_id, description=params.get("Description") or "",
            node_type=params["NodeType"], engine=params.get("Engine") or "valkey",
            engine_version=params.get("EngineVersion") or "7.3", num_shards=params.get("NumShards") or 1,
            tls_enabled=params["TLSEnabled"] is not False,
            parameter_group=params.get("MultiRegionParameterGroupName") or "default.memorydb-valkey7.multiregion",
        )
        _multi(backend.account_id)[name] = multi
        if params.get("Tags"):
            backend.tagger.tag_resource(multi.to_dict(False)["ARN"], params["Tags"])
        return ActionResult({"MultiRegionCluster": multi.to_dict(details=False)})


def _describe_multi_region_clusters(self: Any) -> Any:
    account_id = self.memorydb_backend.account_id
    with _lock:
        _tick(account_id)
        name = self._get_param("MultiRegionClusterName")
        found = [_find(account_id, name)] if name else sorted(_multi(account_id).values(), key=lambda m: m.name)
        details = bool(self._get_param("ShowClusterDetails"))
        return ActionResult({"MultiRegionClusters": [m.to_dict(details) for m in found]})
