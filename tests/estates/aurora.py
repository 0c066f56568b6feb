"""aurora.global_database estate: a global database with its primary cluster in us-east-1 and a secondary in
us-west-2, each with one instance, in the app account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plans.model import Mode, Phase
from tests.estates import Estate

PRIMARY_REGION = "us-east-1"
RECOVERY_REGION = "us-west-2"
ENGINE, ENGINE_VERSION = "aurora-postgresql", "15.4"


@dataclass
class GlobalDatabase:
    global_id: str
    primary: str
    secondary: str
    east: Any  # RDS clients in the app account, to read back what the module did
    west: Any

    def parameters(self, **extra: Any) -> dict[str, Any]:
        return {"globalClusterIdentifier": self.global_id, "recoveryClusterIdentifier": self.secondary,
                "primaryClusterIdentifier": self.primary, **extra}

    def describe(self) -> dict[str, Any]:
        return dict(self.west.describe_global_clusters(GlobalClusterIdentifier=self.global_id)["GlobalClusters"][0])

    def cluster(self, client: Any, name: str) -> dict[str, Any] | None:
        found = client.describe_db_clusters(Filters=[{"Name": "db-cluster-id", "Values": [name]}])["DBClusters"]
        return found[0] if found else None

    def writer_region(self) -> str:
        members = self.describe()["GlobalClusterMembers"]
        return next(m["DBClusterArn"].split(":")[3] for m in members if m["IsWriter"])

    def drill_copies(self) -> list[dict[str, Any]]:
        clusters = self.west.describe_db_clusters()["DBClusters"]
        return [c for c in clusters if c["DBClusterIdentifier"].startswith(f"{self.secondary}-drill-")]


def create(prefix: str) -> GlobalDatabase:
    from tests.conftest import APP_ACCOUNT, account_session

    app = account_session(APP_ACCOUNT)
    east, west = app.client("rds", region_name=PRIMARY_REGION), app.client("rds", region_name=RECOVERY_REGION)
    db = GlobalDatabase(global_id=f"{prefix}-global", primary=f"{prefix}-east", secondary=f"{prefix}-west",
                        east=east, west=west)
    arn = east.create_db_cluster(DBClusterIdentifier=db.primary, Engine=ENGINE, EngineVersion=ENGINE_VERSION,
                                 MasterUsername="app", MasterUserPassword="sandbox-password")["DBCluster"]
    arn = arn["DBClusterArn"]
    east.create_db_instance(DBInstanceIdentifier=f"{db.primary}-1", DBClusterIdentifier=db.primary, Engine=ENGINE,
                            DBInstanceClass="db.r6g.large")
    east.create_global_cluster(GlobalClusterIdentifier=db.global_id, SourceDBClusterIdentifier=arn)
    west.create_db_cluster(DBClusterIdentifier=db.secondary, Engine=ENGINE, EngineVersion=ENGINE_VERSION,
                           GlobalClusterIdentifier=db.global_id)
    west.create_db_instance(DBInstanceIdentifier=f"{db.secondary}-1", DBClusterIdentifier=db.secondary, Engine=ENGINE,
                            DBInstanceClass="db.r6g.large")
    return db


def build(prefix: str) -> Estate:
    db = create(f"{prefix}-aurora")

    def check(phase: Phase, mode: Mode) -> None:
        found = db.describe()
        assert not found.get("FailoverState"), found.get("FailoverState")
        assert {m["DBClusterArn"].split(":")[-1] for m in found["GlobalClusterMembers"]} == {db.primary, db.secondary}
        if mode is Mode.DRILL:
            assert db.writer_region() == PRIMARY_REGION  # production writes never moved
            copies = db.drill_copies()
            if phase is Phase.ACTIVATE:
                assert copies and all(not c.get("GlobalClusterIdentifier") for c in copies)
            if phase in (Phase.CLEANUP, Phase.REPLICATE):
                assert not copies
            return
        if phase is Phase.INSTANTIATE:
            assert db.writer_region() == PRIMARY_REGION
            return
        assert db.writer_region() == RECOVERY_REGION
        primary = db.cluster(db.east, db.primary)
        assert primary is not None  # CLEANUP of a real failover destroys nothing
        assert primary["ReplicationSourceIdentifier"].endswith(f":cluster:{db.secondary}")
        secondaries = [m for m in found["GlobalClusterMembers"] if not m["IsWriter"]]
        assert [m.get("SynchronizationStatus") for m in secondaries] == ["connected"]

    resource = {"name": f"{prefix}-aurora-orders", "action": "aurora.global_database",
                "parameters": db.parameters()}
    return Estate(resources=[resource], check=check,
                  notes=[f"global database {db.global_id}: {db.primary} (us-east-1) -> {db.secondary} (us-west-2)"])
