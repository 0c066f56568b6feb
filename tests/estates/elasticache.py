"""ElastiCache: a global datastore with its primary in us-east-1 and a secondary in us-west-2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plans.model import Mode, Phase
from tests.conftest import APP_ACCOUNT, account_session
from tests.estates import Estate

PRIMARY_REGION, RECOVERY_REGION = "us-east-1", "us-west-2"
NODE_TYPE = "cache.r6g.large"  # global datastores need large or bigger nodes of the current families


@dataclass
class GlobalDatastore:
    global_id: str
    primary: str  # replication group in the primary region
    secondary: str  # replication group in the recovery region
    east: Any  # ElastiCache clients in the app account
    west: Any

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"globalReplicationGroupId": self.global_id, "replicationGroupId": self.secondary,
                "primaryReplicationGroupId": self.primary, **extra}

    def datastore(self, global_id: str | None = None) -> dict[str, Any]:
        found = self.west.describe_global_replication_groups(GlobalReplicationGroupId=global_id or self.global_id,
                                                             ShowMemberInfo=True)
        return dict(found["GlobalReplicationGroups"][0])

    def roles(self, global_id: str | None = None) -> dict[str, str]:
        return {m["ReplicationGroupId"]: m["Role"] for m in self.datastore(global_id).get("Members", [])}

    def group(self, client: Any, group_id: str) -> dict[str, Any] | None:
        try:
            return dict(client.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"][0])
        except client.exceptions.ReplicationGroupNotFoundFault:
            return None

    def drill_copies(self) -> list[dict[str, Any]]:
        groups = self.west.describe_replication_groups()["ReplicationGroups"]
        return [g for g in groups if g["ReplicationGroupId"].startswith(f"{self.secondary[:25]}-drill-")]

    def settle(self) -> None:
        """Look until the sandbox has finished what it simulates (creation, association)."""
        for _ in range(10):
            store = self.datastore()
            if store["Status"] == "available" and all(m["Status"] == "associated" for m in store["Members"]):
                return
        raise AssertionError(f"global datastore {self.global_id} did not settle: {store}")


def seed(prefix: str) -> GlobalDatastore:
    app = account_session(APP_ACCOUNT)
    east = app.client("elasticache", region_name=PRIMARY_REGION)
    west = app.client("elasticache", region_name=RECOVERY_REGION)
    primary, secondary = f"{prefix}-east", f"{prefix}-west"
    east.create_replication_group(ReplicationGroupId=primary, ReplicationGroupDescription="sessions",
                                  CacheNodeType=NODE_TYPE, Engine="redis", NumCacheClusters=2,
                                  AutomaticFailoverEnabled=True, MultiAZEnabled=True)
    global_id = east.create_global_replication_group(
        GlobalReplicationGroupIdSuffix=prefix, PrimaryReplicationGroupId=primary
    )["GlobalReplicationGroup"]["GlobalReplicationGroupId"]
    estate = GlobalDatastore(global_id=global_id, primary=primary, secondary=secondary, east=east, west=west)
    for _ in range(10):
        if estate.datastore()["Status"] == "available":
            break
    west.create_replication_group(ReplicationGroupId=secondary, ReplicationGroupDescription="sessions (secondary)",
                                  GlobalReplicationGroupId=global_id)
    estate.settle()
    return estate


def build(prefix: str) -> Estate:
    estate = seed(f"{prefix}-ec")
    resource = {"name": f"{prefix}-elasticache", "action": "elasticache.global_datastore",
                "parameters": estate.params()}

    def check(phase: Phase, mode: Mode) -> None:
        roles = estate.roles()
        if mode is Mode.DRILL or phase is Phase.INSTANTIATE:
            assert roles == {estate.primary: "PRIMARY", estate.secondary: "SECONDARY"}, f"roles changed: {roles}"
            assert estate.datastore()["Status"] == "available"
            copies = estate.drill_copies()
            if mode is Mode.DRILL and phase is Phase.ACTIVATE:
                assert [c["Status"] for c in copies] == ["available"], f"drill copy: {copies}"
            else:
                assert not copies, f"drill copies left after {phase.value}: {copies}"
            return
        # A planned failover (and everything after it): the recovery member writes, the old primary replicates.
        assert roles == {estate.primary: "SECONDARY", estate.secondary: "PRIMARY"}, f"after {phase.value}: {roles}"
        assert estate.datastore()["Status"] == "available"

    return Estate(resources=[resource], check=check)
