"""route53.health_check on the sandbox: a FAILOVER pair in the app account, failed over by health check inversion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.core import registry
from activities.route53_health import TAG_BY, TAG_PREVIOUS
from plans.model import Mode, Phase
from tests.aws_helpers import count_calls, make_ctx, unique, with_phase
from tests.conftest import APP_ACCOUNT, account_session

module = registry.get("route53.health_check")
assert module is not None
PRIMARY_IP, SECONDARY_IP, DOWN_IP = "10.1.0.10", "10.2.0.10", "192.0.2.10"  # 192.0.2.0/24: down in the sandbox


@dataclass
class Pair:
    zone_id: str
    record: str
    health_check: str
    route53: Any

    def check(self) -> dict[str, Any]:
        return dict(self.route53.get_health_check(HealthCheckId=self.health_check)["HealthCheck"])

    def tags(self) -> dict[str, str]:
        found = self.route53.list_tags_for_resource(ResourceType="healthcheck", ResourceId=self.health_check)
        return {t["Key"]: t["Value"] for t in found["ResourceTagSet"].get("Tags", [])}

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"hostedZoneId": self.zone_id, "recordName": self.record, **extra}


def make_pair(route53: Any, health_check_config: dict[str, Any] | None = None) -> Pair:
    name = f"{unique('failover')}.example.com"
    zone = route53.create_hosted_zone(Name=name, CallerReference=unique("ref"))["HostedZone"]["Id"]
    zone = zone.removeprefix("/hostedzone/")
    config = health_check_config or {"Type": "HTTP", "IPAddress": PRIMARY_IP, "Port": 80, "ResourcePath": "/health",
                                     "Regions": ["us-east-1", "us-west-1", "eu-west-1"]}
    check = route53.create_health_check(CallerReference=unique("hc"), HealthCheckConfig=config)["HealthCheck"]["Id"]
    record = f"app.{name}"
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": record, "Type": "A", "SetIdentifier": "primary", "Failover": "PRIMARY", "TTL": 60,
            "HealthCheckId": check, "ResourceRecords": [{"Value": PRIMARY_IP}]}},
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": record, "Type": "A", "SetIdentifier": "secondary", "Failover": "SECONDARY", "TTL": 60,
            "ResourceRecords": [{"Value": SECONDARY_IP}]}},
    ]})
    return Pair(zone_id=zone, record=record, health_check=check, route53=route53)


@pytest.fixture
def route53(sandbox) -> Any:  # type: ignore[no-untyped-def]
    return account_session(APP_ACCOUNT).client("route53", region_name="us-east-1")


@pytest.fixture
def pair(route53: Any) -> Pair:
    return make_pair(route53)


def test_instantiate_reports_pair_and_status(pair: Pair) -> None:
    ctx, params = make_ctx(module, pair.params(), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    operation = module.start(ctx, params)
    assert operation.done
    out = operation.outputs
    assert out["healthCheckId"] == pair.health_check and out["healthy"] and out["serving"] == "PRIMARY"
    assert out["checkersPassing"] == "3/3" and out["inverted"] is False
    assert out["primary"] == PRIMARY_IP and out["secondary"] == SECONDARY_IP


def test_drill_never_inverts(pair: Pair) -> None:
    before = pair.check()
    ctx, params = make_ctx(module, pair.params(), mode=Mode.DRILL, phase=Phase.ACTIVATE)
    operation = module.start(ctx, params)
    assert operation.done and operation.outputs["wouldInvert"] is True and "nothing changed" in operation.message
    assert module.start(with_phase(ctx, Phase.CLEANUP), params).done
    assert pair.check() == before and pair.tags() == {}


def test_planned_inverts_once_and_failback_restores_exactly(pair: Pair) -> None:
    ctx, params = make_ctx(module, pair.params(), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    operation = module.start(ctx, params)
    assert operation.outputs["serving"] == "SECONDARY"
    check = pair.check()
    assert check["HealthCheckConfig"]["Inverted"] is True and check["HealthCheckVersion"] == 2
    assert check["HealthCheckConfig"]["Regions"] == ["us-east-1", "us-west-1", "eu-west-1"]  # an update keeps them
    assert pair.tags() == {TAG_PREVIOUS: "false", TAG_BY: ctx.call.execution_id}
    status = module.status(ctx, params)
    assert status["healthy"] is False and status["serving"] == "SECONDARY"

    client = ctx.client("route53", region="us-east-1")
    with count_calls(client.meta.events, "route53", "UpdateHealthCheck") as updates:
        again = module.start(ctx, params)
    assert again.done and len(updates) == 0 and "this run" in again.message
    assert module.start(with_phase(ctx, Phase.CLEANUP), params).done  # revertOnCleanup is off: stays failed over
    assert pair.check()["HealthCheckConfig"]["Inverted"] is True

    back = with_phase(ctx, Phase.ACTIVATE, mode=Mode.FAILBACK)
    module.start(back, params)
    assert pair.check()["HealthCheckConfig"]["Inverted"] is False and pair.tags() == {}
    assert module.status(back, params)["serving"] == "PRIMARY"
    assert "nothing to revert" in module.start(back, params).message


def test_an_originally_inverted_check_is_restored_to_inverted(route53: Any) -> None:
    # A check watching a "maintenance" flag endpoint that is down in normal operation, inverted to read healthy.
    pair = make_pair(route53, {"Type": "HTTP", "IPAddress": DOWN_IP, "Port": 80, "Inverted": True})
    ctx, params = make_ctx(module, pair.params(revertOnCleanup=True), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    assert module.status(ctx, params)["serving"] == "PRIMARY"
    module.start(ctx, params)
    assert pair.check()["HealthCheckConfig"]["Inverted"] is False
    assert module.status(ctx, params)["serving"] == "SECONDARY"
    module.start(with_phase(ctx, Phase.CLEANUP), params)
    assert pair.check()["HealthCheckConfig"]["Inverted"] is True and pair.tags() == {}


def test_disaster_with_primary_down_leaves_the_check_alone(pair: Pair) -> None:
    pair.route53.update_health_check(HealthCheckId=pair.health_check, IPAddress=DOWN_IP)
    ctx, params = make_ctx(module, pair.params(), mode=Mode.DISASTER, phase=Phase.ACTIVATE)
    operation = module.start(ctx, params)
    assert operation.done and "not inverted" in operation.message
    assert operation.outputs["serving"] == "SECONDARY" and operation.outputs["checkersPassing"] == "0/3"
    assert pair.check()["HealthCheckConfig"]["Inverted"] is False and pair.tags() == {}


def test_retry_after_a_crash_between_tag_and_update_finishes_the_inversion(pair: Pair) -> None:
    ctx, params = make_ctx(module, pair.params(), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    pair.route53.change_tags_for_resource(ResourceType="healthcheck", ResourceId=pair.health_check, AddTags=[
        {"Key": TAG_PREVIOUS, "Value": "false"}, {"Key": TAG_BY, "Value": ctx.call.execution_id}])
    module.start(ctx, params)
    assert pair.check()["HealthCheckConfig"]["Inverted"] is True


def test_another_runs_inversion_is_not_flipped_back(pair: Pair) -> None:
    first, params = make_ctx(module, pair.params(), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    module.start(first, params)
    second, _ = make_ctx(module, pair.params(), mode=Mode.DISASTER, phase=Phase.ACTIVATE)
    operation = module.start(second, params)
    assert first.call.execution_id in operation.message
    assert pair.check()["HealthCheckConfig"]["Inverted"] is True and pair.tags()[TAG_BY] == first.call.execution_id


def test_calculated_check_keeps_its_children(route53: Any) -> None:
    child = route53.create_health_check(CallerReference=unique("hc"), HealthCheckConfig={
        "Type": "TCP", "IPAddress": PRIMARY_IP, "Port": 5432})["HealthCheck"]["Id"]
    pair = make_pair(route53, {"Type": "CALCULATED", "ChildHealthChecks": [child], "HealthThreshold": 1})
    ctx, params = make_ctx(module, pair.params(), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    assert module.status(ctx, params)["serving"] == "PRIMARY"
    module.start(ctx, params)
    config = pair.check()["HealthCheckConfig"]
    assert config["Inverted"] is True and config["ChildHealthChecks"] == [child] and config["HealthThreshold"] == 1
    assert module.status(ctx, params)["serving"] == "SECONDARY"


def test_disabled_check_is_fatal(pair: Pair) -> None:
    pair.route53.update_health_check(HealthCheckId=pair.health_check, Disabled=True)
    ctx, params = make_ctx(module, pair.params(), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "HealthCheckDisabled" and error.value.non_retryable
    assert pair.check()["HealthCheckConfig"]["Inverted"] is False


def test_missing_health_check_and_missing_pair_are_fatal(pair: Pair) -> None:
    ctx, params = make_ctx(module, pair.params(healthCheckId="00000000-0000-0000-0000-000000000000"),
                           mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "HealthCheckNotFound" and error.value.non_retryable
    assert "00000000-0000-0000-0000-000000000000" in str(error.value)

    ctx, params = make_ctx(module, pair.params(recordName=f"www.{pair.record}"), mode=Mode.PLANNED,
                           phase=Phase.INSTANTIATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "RecordNotFound" and f"www.{pair.record}." in str(error.value)


def test_sandbox_health_check_version_and_observations(pair: Pair) -> None:
    route53 = pair.route53
    with pytest.raises(ClientError) as error:
        route53.update_health_check(HealthCheckId=pair.health_check, HealthCheckVersion=7, Inverted=True)
    assert error.value.response["Error"]["Code"] == "HealthCheckVersionMismatch"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    updated = route53.update_health_check(HealthCheckId=pair.health_check, HealthCheckVersion=1,
                                          ResetElements=["ResourcePath"])["HealthCheck"]
    assert updated["HealthCheckVersion"] == 2 and "ResourcePath" not in updated["HealthCheckConfig"]
    observations = route53.get_health_check_status(HealthCheckId=pair.health_check)["HealthCheckObservations"]
    assert [o["Region"] for o in observations] == ["us-east-1", "us-west-1", "eu-west-1"]
    assert all(o["StatusReport"]["Status"].startswith("Success") for o in observations)


def test_sandbox_deletes_only_the_named_record_set(pair: Pair) -> None:
    other = pair.record.replace("app.", "www.", 1)
    record = {"Name": other, "Type": "A", "SetIdentifier": "primary", "Failover": "PRIMARY", "TTL": 60,
              "HealthCheckId": pair.health_check, "ResourceRecords": [{"Value": PRIMARY_IP}]}
    pair.route53.change_resource_record_sets(HostedZoneId=pair.zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": record}]})
    pair.route53.change_resource_record_sets(HostedZoneId=pair.zone_id, ChangeBatch={"Changes": [
        {"Action": "DELETE", "ResourceRecordSet": record}]})
    sets = pair.route53.list_resource_record_sets(HostedZoneId=pair.zone_id)["ResourceRecordSets"]
    left = {(r["Name"], r.get("SetIdentifier")) for r in sets if r["Type"] == "A"}
    assert left == {(pair.record + ".", "primary"), (pair.record + ".", "secondary")}
