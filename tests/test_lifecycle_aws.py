"""The lifecycle with the real modules on the sandbox: what changed in AWS, and what a drill must not change."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.plan_loading import load_plan
from plans.model import Mode, Plan
from sandbox import scenario as scenarios
from tests.conftest import APP_ACCOUNT, HUB_ACCOUNT, account_session
from tests.lifecycle_helpers import finish, start_run, status_of
from contracts.lifecycle import RunStatus, StepStatus

EXAMPLE = "plans/examples/web-app.yaml"


class Estate:
    """The demo scenario with names of its own, so runs of several tests never meet in the shared sandbox."""

    def __init__(self) -> None:
        sfx = uuid.uuid4().hex[:6]
        self.db, self.replica, self.zone = f"orders-{sfx}", f"orders-{sfx}-replica", f"app-{sfx}.example.com"
        self.record, self.role = f"www.{self.zone}", f"DrTarget-{sfx}"
        self.primary_value, self.recovery_value = f"web.us-east-1.{self.zone}", f"web.us-west-2.{self.zone}"
        base = scenarios.load("demo")
        scenarios.seed(base.model_copy(update={
            "name": f"test-{sfx}",
            "roles": [base.roles[0].model_copy(update={"name": self.role})],
            "databases": [base.databases[0].model_copy(update={
                "identifier": self.db,
                "replicas": [base.databases[0].replicas[0].model_copy(update={"identifier": self.replica})]})],
            "zones": [base.zones[0].model_copy(update={
                "name": self.zone,
                "records": [base.zones[0].records[0].model_copy(update={"name": self.record,
                                                                        "value": self.primary_value})]})],
        }))
        self.app = account_session(APP_ACCOUNT)

    def plan(self, name: str) -> Plan:
        """The example plan, pointed at this estate."""
        data = load_plan(EXAMPLE).model_dump(by_alias=True, mode="json")
        data["name"] = name
        data["accounts"]["app"]["roleName"] = self.role
        for phase in data["phases"].values():
            for layer in phase["layers"]:
                for resource in layer["resources"]:
                    _retarget(resource["parameters"], self)
        return Plan.model_validate(data)

    def record_values(self) -> list[str]:
        route53 = self.app.client("route53", region_name="us-east-1")
        zone_id = route53.list_hosted_zones_by_name(DNSName=self.zone)["HostedZones"][0]["Id"]
        records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        return sorted(f"{r['Name'].rstrip('.')}={r['ResourceRecords'][0]['Value']}" for r in records
                      if r["Type"] == "CNAME")

    def instances(self, region: str) -> dict[str, dict[str, Any]]:
        found = self.app.client("rds", region_name=region).describe_db_instances()["DBInstances"]
        return {i["DBInstanceIdentifier"]: i for i in found if i["DBInstanceIdentifier"].startswith(self.db)}


def _retarget(params: dict[str, Any], estate: Estate) -> None:
    replacements = {"orders-db-replica": estate.replica, "orders-db": estate.db,
                    "orders-db-new-replica": f"{estate.db}-new-replica", "app.example.com": estate.zone,
                    "www.app.example.com": estate.record, "web.us-east-1.app.example.com": estate.primary_value,
                    "web.us-west-2.app.example.com": estate.recovery_value}
    for key, value in params.items():
        if isinstance(value, str) and value in replacements:
            params[key] = replacements[value]


@pytest.fixture
def estate(sandbox) -> Estate:  # type: ignore[no-untyped-def]
    return Estate()


async def test_drill_runs_all_phases_and_leaves_production_untouched(worker, estate: Estate):
    records_before = estate.record_values()
    handle = await start_run(worker.client, worker.task_queue, estate.plan("drill-e2e"), mode=Mode.DRILL)
    result = await finish(handle)
    state = await status_of(handle)

    assert result.status is RunStatus.COMPLETED, result.message
    assert all(p.status is StepStatus.SUCCEEDED for p in state.phases)
    drill_copy = state.phases[1].layers[0].resources[0]
    assert drill_copy.outputs, "the drill copy's endpoint is reported"
    # Production: the live record, the replica's replication and the primary are as they were.
    assert estate.record_values() == records_before
    replica = estate.instances("us-west-2")[estate.replica]
    assert replica["ReadReplicaSourceDBInstanceIdentifier"].endswith(f":db:{estate.db}")
    # CLEANUP removed the drill artefacts: only the replica is left in the recovery region.
    assert set(estate.instances("us-west-2")) == {estate.replica}


async def test_planned_failover_changes_dns_promotes_and_replicates_back(worker, estate: Estate):
    handle = await start_run(worker.client, worker.task_queue, estate.plan("planned-e2e"), mode=Mode.PLANNED)
    result = await finish(handle)
    state = await status_of(handle)

    assert result.status is RunStatus.COMPLETED, result.message
    assert estate.record_values() == [f"{estate.record}={estate.recovery_value}"]
    promoted = estate.instances("us-west-2")[estate.replica]
    assert promoted.get("ReadReplicaSourceDBInstanceIdentifier") is None
    new_replica = estate.instances("us-east-1")[f"{estate.db}-new-replica"]
    assert new_replica["ReadReplicaSourceDBInstanceIdentifier"].endswith(f":db:{estate.replica}")
    # Every resource acted in the application account, none in the hub.
    assert {r.account for p in state.phases for layer in p.layers for r in layer.resources} == {APP_ACCOUNT}
    hub = {i["DBInstanceIdentifier"] for i in account_session(HUB_ACCOUNT).client(
        "rds", region_name="us-west-2").describe_db_instances()["DBInstances"]}
    assert estate.replica not in hub


async def test_a_failing_resource_fails_the_run_and_skips_the_rest(worker, estate: Estate):
    plan = estate.plan("failing-e2e")
    data = plan.model_dump(by_alias=True, mode="json")
    data["phases"]["ACTIVATE"]["layers"][0]["resources"][0]["parameters"]["replicaIdentifier"] = "no-such-db"
    handle = await start_run(worker.client, worker.task_queue, Plan.model_validate(data), mode=Mode.PLANNED,
                             )
    with pytest.raises(Exception) as failure:
        await handle.result()
    assert "DrRunFailed" in repr(failure.value.cause) or "no-such-db" in str(failure.value.cause)
    state = await status_of(handle)
    assert state.status is RunStatus.FAILED
    db = state.phases[1].layers[0].resources[0]
    assert db.status is StepStatus.FAILED and "no-such-db" in (db.error or "")
    assert state.phases[1].layers[1].resources[0].status is StepStatus.SKIPPED  # DNS never switched
    assert estate.record_values() == [f"{estate.record}={estate.primary_value}"]
    assert [p.status for p in state.phases[2:]] == [StepStatus.SKIPPED, StepStatus.SKIPPED]


async def test_resources_in_two_accounts_each_act_in_their_own(worker, estate: Estate):
    """A hub-account zone (worker's own credentials) beside the app-account resources (assumed role)."""
    hub_zone = f"hub-{estate.zone}"
    hub = account_session(HUB_ACCOUNT)
    scenarios.seed(scenarios.Scenario(name="hub-dns", accounts={"hub": HUB_ACCOUNT}, zones=[scenarios.ZoneSpec(
        account="hub", name=hub_zone,
        records=[scenarios.RecordSpec(name=f"status.{hub_zone}", value=f"status.us-east-1.{hub_zone}")])]))
    data = estate.plan("two-accounts").model_dump(by_alias=True, mode="json")
    data["phases"]["ACTIVATE"]["layers"][1]["resources"].append({
        "name": "status-page", "action": "route53.record", "account": "hub",
        "parameters": {"zoneName": hub_zone, "recordName": f"status.{hub_zone}",
                       "recoveryValue": f"status.us-west-2.{hub_zone}"}})
    handle = await start_run(worker.client, worker.task_queue, Plan.model_validate(data), mode=Mode.PLANNED)
    assert (await finish(handle)).status is RunStatus.COMPLETED
    state = await status_of(handle)

    traffic = {r.name: r for r in state.phases[1].layers[1].resources}
    assert (traffic["status-page"].account, traffic["app-dns"].account) == (HUB_ACCOUNT, APP_ACCOUNT)
    # Each record changed in its own account, and neither zone is visible from the other account.
    assert estate.record_values() == [f"{estate.record}={estate.recovery_value}"]
    hub_route53 = hub.client("route53", region_name="us-east-1")
    hub_zone_ids = {z["Name"].rstrip("."): z["Id"] for z in hub_route53.list_hosted_zones()["HostedZones"]}
    assert estate.zone not in hub_zone_ids
    records = hub_route53.list_resource_record_sets(HostedZoneId=hub_zone_ids[hub_zone])["ResourceRecordSets"]
    status_record = next(r for r in records if r["Name"].rstrip(".") == f"status.{hub_zone}")
    assert status_record["ResourceRecords"] == [{"Value": f"status.us-west-2.{hub_zone}"}]
    app_zones = {z["Name"].rstrip(".") for z in estate.app.client("route53", region_name="us-east-1")
                 .list_hosted_zones()["HostedZones"]}
    assert hub_zone not in app_zones
