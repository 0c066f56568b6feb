"""MemoryDB: a multi-region cluster with members in us-east-1 and us-west-2, and a cluster whose snapshots are in
us-west-2 (MemoryDB snapshots are regional, so a restore in the recovery region needs them there)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plans.model import Mode, Phase
from tests.conftest import APP_ACCOUNT, account_session
from tests.estates import Estate

PRIMARY_REGION, RECOVERY_REGION = "us-east-1", "us-west-2"
NODE_TYPE = "db.r7g.xlarge"


@dataclass
class MemoryDbEstate:
    multi_region: str  # multi-region cluster name
    east_member: str
    west_member: str
    source: str  # cluster in us-west-2 with snapshots
    snapshots: list[str]  # oldest first
    restored: str  # the cluster a snapshot restore creates
    east: Any  # MemoryDB clients in the app account
    west: Any

    def multi_region_params(self, **extra: Any) -> dict[str, Any]:
        return {"method": "multi-region", "clusterName": self.west_member,
                "multiRegionClusterName": self.multi_region, "primaryClusterName": self.east_member, **extra}

    def restore_params(self, **extra: Any) -> dict[str, Any]:
        return {"method": "snapshot-restore", "clusterName": self.restored, "sourceClusterName": self.source,
                **extra}

    def cluster(self, client: Any, name: str) -> dict[str, Any] | None:
        try:
            return dict(client.describe_clusters(ClusterName=name)["Clusters"][0])
        except client.exceptions.ClusterNotFoundFault:
            return None

    def drill_clusters(self) -> list[dict[str, Any]]:
        clusters = self.west.describe_clusters()["Clusters"]
        return [c for c in clusters if c["Name"].startswith(f"{self.restored[:25]}-drill-")]

    def members(self) -> dict[str, str]:
        multi = self.west.describe_multi_region_clusters(MultiRegionClusterName=self.multi_region,
                                                         ShowClusterDetails=True)["MultiRegionClusters"][0]
        return {c["ClusterName"]: c["Status"] for c in multi.get("Clusters", [])}


def _until_available(describe: Any) -> None:
    for _ in range(10):
        if describe()["Status"] == "available":
            return
    raise AssertionError("the sandbox did not finish creating it")


def seed(prefix: str) -> MemoryDbEstate:
    app = account_session(APP_ACCOUNT)
    east = app.client("memorydb", region_name=PRIMARY_REGION)
    west = app.client("memorydb", region_name=RECOVERY_REGION)
    multi = east.create_multi_region_cluster(MultiRegionClusterNameSuffix=prefix, NodeType=NODE_TYPE,
                                             Engine="valkey")["MultiRegionCluster"]["MultiRegionClusterName"]
    _until_available(lambda: west.describe_multi_region_clusters(MultiRegionClusterName=multi)
                     ["MultiRegionClusters"][0])
    estate = MemoryDbEstate(multi_region=multi, east_member=f"{prefix}-e", west_member=f"{prefix}-w",
                            source=f"{prefix}-src", snapshots=[f"{prefix}-snap-1", f"{prefix}-snap-2"],
                            restored=f"{prefix}-restored", east=east, west=west)
    for client, name in ((east, estate.east_member), (west, estate.west_member)):
        client.create_cluster(ClusterName=name, NodeType=NODE_TYPE, ACLName="open-access",
                              MultiRegionClusterName=multi)
        _until_available(lambda c=client, n=name: c.describe_clusters(ClusterName=n)["Clusters"][0])
    west.create_cluster(ClusterName=estate.source, NodeType="db.r6g.large", ACLName="open-access")
    for snapshot in estate.snapshots:
        west.create_snapshot(ClusterName=estate.source, SnapshotName=snapshot)
    return estate


def build(prefix: str) -> Estate:
    estate = seed(f"{prefix}-mdb")
    resources = [
        {"name": f"{prefix}-memorydb-multi", "action": "memorydb.cluster", "parameters": estate.multi_region_params()},
        {"name": f"{prefix}-memorydb-restore", "action": "memorydb.cluster", "parameters": estate.restore_params()},
    ]

    def check(phase: Phase, mode: Mode) -> None:
        # Multi-region: failover is DNS; nothing in MemoryDB changes in any phase or mode.
        assert estate.members() == {estate.east_member: "available", estate.west_member: "available"}
        source = estate.cluster(estate.west, estate.source)
        assert source is not None and source["Status"] == "available"
        assert {s["Name"] for s in estate.west.describe_snapshots(ClusterName=estate.source)["Snapshots"]} == set(
            estate.snapshots)
        drills, restored = estate.drill_clusters(), estate.cluster(estate.west, estate.restored)
        if mode is Mode.DRILL:
            assert restored is None, "a drill restored under the production name"
            expected = ["available"] if phase is Phase.ACTIVATE else []
            assert [c["Status"] for c in drills] == expected, f"drill clusters after {phase.value}: {drills}"
            return
        assert not drills
        if phase is Phase.INSTANTIATE:
            assert restored is None
        else:  # a real failover keeps the restored cluster
            assert restored is not None and restored["Status"] == "available"

    return Estate(resources=resources, check=check)
