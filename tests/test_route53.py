"""route53.record on the sandbox: the zone lives in the app account, reached through the orchestrator's role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from temporalio.exceptions import ApplicationError

from activities.core import registry
from plans.model import Mode, Phase
from tests.aws_helpers import count_calls, drive, make_ctx, unique, with_phase
from tests.conftest import APP_ACCOUNT, account_session

# Through the registry, as the runtime finds it: a direct import would fill the registry with this module alone, and
# registry.get loads the other built-in modules only while it is empty.
module = registry.get("route53.record")
assert module is not None
PRIMARY = "db-primary.us-east-1.example.net"
RECOVERY = "db-recovery.us-west-2.example.net"


@dataclass
class Zone:
    id: str
    name: str
    record: str
    route53: Any  # a client in the app account, to read back what the module did

    def records(self, name: str) -> list[dict[str, Any]]:
        wanted = name.rstrip(".") + "."
        sets = self.route53.list_resource_record_sets(HostedZoneId=self.id)["ResourceRecordSets"]
        return [r for r in sets if r["Name"] == wanted and r["Type"] == "CNAME"]

    def value(self, name: str) -> str | None:
        found = self.records(name)
        return found[0]["ResourceRecords"][0]["Value"] if found else None


@pytest.fixture
def zone(sandbox) -> Zone:  # type: ignore[no-untyped-def]
    route53 = account_session(APP_ACCOUNT).client("route53", region_name="us-east-1")
    name = f"{unique('zone')}.example.com"
    zone_id = route53.create_hosted_zone(Name=name, CallerReference=unique("ref"))["HostedZone"]["Id"]
    zone_id = zone_id.removeprefix("/hostedzone/")
    record = f"app.{name}"
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": record,
                        "Type": "CNAME",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": PRIMARY}],
                    },
                }
            ]
        },
    )
    return Zone(id=zone_id, name=name, record=record, route53=route53)


def _params(zone: Zone, **extra: Any) -> dict[str, Any]:
    return {
        "hostedZoneId": zone.id,
        "recordName": zone.record,
        "recoveryValue": RECOVERY,
        "primaryValue": PRIMARY,
        **extra,
    }


def test_instantiate_reports_without_changing(zone: Zone) -> None:
    ctx, params = make_ctx(module, _params(zone), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    operation = module.start(ctx, params)
    assert operation.done
    assert operation.outputs["pointsTo"] == "primary"
    assert operation.outputs["isPrimary"] is True and operation.outputs["isRecovery"] is False
    assert operation.outputs["values"] == [PRIMARY] and operation.outputs["ttl"] == 300
    assert zone.value(zone.record) == PRIMARY


def test_instantiate_missing_record_is_fatal(zone: Zone) -> None:
    ctx, params = make_ctx(
        module, _params(zone, recordName=f"nope.{zone.name}"), mode=Mode.PLANNED, phase=Phase.INSTANTIATE
    )
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.non_retryable and error.value.type == "RecordNotFound"
    assert f"nope.{zone.name}." in str(error.value)


def test_planned_activate_switches_record_and_is_idempotent(zone: Zone) -> None:
    ctx, params = make_ctx(module, _params(zone, ttl=30), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    steps = drive(module, ctx, params)
    assert not steps[0].done and steps[0].handle["changeId"]  # a change was submitted, then polled to INSYNC
    assert steps[-1].done
    record = zone.records(zone.record)[0]
    assert record["ResourceRecords"] == [{"Value": RECOVERY}] and record["TTL"] == 30

    client = ctx.client("route53", region="us-east-1")
    with count_calls(client.meta.events, "route53", "ChangeResourceRecordSets") as changes:
        again = module.start(ctx, params)
    assert again.done and "changeId" not in again.handle
    assert len(changes) == 0
    assert len(zone.records(zone.record)) == 1


def test_drill_writes_only_the_drill_record_and_cleanup_removes_it(zone: Zone) -> None:
    ctx, params = make_ctx(module, _params(zone), mode=Mode.DRILL, phase=Phase.ACTIVATE)
    drill_name = f"drill-{ctx.drill_suffix()}.{zone.record}"
    steps = drive(module, ctx, params)
    assert steps[-1].outputs["recordName"] == drill_name + "."
    assert zone.value(drill_name) == RECOVERY
    assert zone.value(zone.record) == PRIMARY  # production untouched

    cleanup = with_phase(ctx, Phase.CLEANUP)
    drive(module, cleanup, params)
    assert zone.records(drill_name) == []
    assert zone.value(zone.record) == PRIMARY
    gone = module.start(cleanup, params)  # a retried cleanup finds nothing to do
    assert gone.done and "already gone" in gone.message


def test_drill_record_name_can_be_given(zone: Zone) -> None:
    drill_name = f"rehearsal.{zone.name}"
    ctx, params = make_ctx(module, _params(zone, drillRecordName=drill_name), mode=Mode.DRILL, phase=Phase.ACTIVATE)
    drive(module, ctx, params)
    assert zone.value(drill_name) == RECOVERY and zone.value(zone.record) == PRIMARY
    status = module.status(ctx, params)
    assert status["drillRecord"]["values"] == [RECOVERY]
    assert status["pointsTo"] == "primary"


def test_failback_points_back_to_primary(zone: Zone) -> None:
    ctx, params = make_ctx(module, _params(zone), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    drive(module, ctx, params)
    assert zone.value(zone.record) == RECOVERY
    back = with_phase(ctx, Phase.ACTIVATE, mode=Mode.FAILBACK)
    drive(module, back, params)
    assert zone.value(zone.record) == PRIMARY


def test_failback_without_primary_value_is_fatal(zone: Zone) -> None:
    parameters = _params(zone)
    del parameters["primaryValue"]
    ctx, params = make_ctx(module, parameters, mode=Mode.FAILBACK, phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "MissingParameter" and error.value.non_retryable
    assert zone.value(zone.record) == PRIMARY


def test_cleanup_in_real_mode_changes_nothing(zone: Zone) -> None:
    ctx, params = make_ctx(module, _params(zone), mode=Mode.DISASTER, phase=Phase.CLEANUP)
    operation = module.start(ctx, params)
    assert operation.done and "nothing to clean up" in operation.message
    assert zone.value(zone.record) == PRIMARY


def test_zone_found_by_name(zone: Zone) -> None:
    parameters = _params(zone, zoneName=zone.name)
    del parameters["hostedZoneId"]
    ctx, params = make_ctx(module, parameters, mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    steps = drive(module, ctx, params)
    assert steps[-1].outputs["hostedZoneId"] == zone.id
    assert zone.value(zone.record) == RECOVERY


def test_private_zone_found_and_same_name_is_ambiguous(zone: Zone) -> None:
    app = account_session(APP_ACCOUNT)
    vpc = app.client("ec2", region_name="us-east-1").create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    private_name = f"{unique('private')}.internal"
    zone.route53.create_hosted_zone(
        Name=private_name,
        CallerReference=unique("ref"),
        VPC={"VPCRegion": "us-east-1", "VPCId": vpc},
        HostedZoneConfig={"PrivateZone": True, "Comment": "dr test"},
    )
    ctx, params = make_ctx(
        module,
        {"zoneName": private_name, "recordName": f"db.{private_name}", "recoveryValue": RECOVERY},
        mode=Mode.DRILL,
        phase=Phase.ACTIVATE,
    )
    steps = drive(module, ctx, params)
    assert steps[-1].done

    # A private zone with the same name as the public one: the module refuses to guess.
    zone.route53.create_hosted_zone(
        Name=zone.name,
        CallerReference=unique("ref"),
        VPC={"VPCRegion": "us-east-1", "VPCId": vpc},
        HostedZoneConfig={"PrivateZone": True, "Comment": "split horizon"},
    )
    parameters = _params(zone, zoneName=zone.name)
    del parameters["hostedZoneId"]
    ctx, params = make_ctx(module, parameters, mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "AmbiguousHostedZone"
    assert "private" in str(error.value) and "public" in str(error.value)


def test_unknown_zone_name_is_fatal(sandbox) -> None:  # type: ignore[no-untyped-def]
    ctx, params = make_ctx(
        module,
        {"zoneName": f"{unique('absent')}.example.org", "recordName": "x", "recoveryValue": RECOVERY},
        mode=Mode.PLANNED,
        phase=Phase.INSTANTIATE,
    )
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "HostedZoneNotFound"


def test_zone_is_in_the_app_account_only(zone: Zone) -> None:
    ctx, params = make_ctx(module, _params(zone), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    assert module.status(ctx, params)["values"] == [PRIMARY]
    hub = boto3.client("route53", region_name="us-east-1")
    hub_zones = hub.list_hosted_zones_by_name(DNSName=zone.name)["HostedZones"]
    assert all(z["Name"] != zone.name + "." for z in hub_zones)


def test_status_reports_record(zone: Zone) -> None:
    ctx, params = make_ctx(module, _params(zone), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    status = module.status(ctx, params)
    assert status == {
        "hostedZoneId": zone.id,
        "recordName": zone.record + ".",
        "recordType": "CNAME",
        "exists": True,
        "values": [PRIMARY],
        "ttl": 300,
        "pointsTo": "primary",
    }


# --- alias and weighted records ---------------------------------------------------------------------------------------

ELB_ZONE_EAST, ELB_ZONE_WEST = "Z35SXDOTRQ7X7K", "Z1H1FL5HABSF5"
ALB_EAST = "app-east-1234.us-east-1.elb.amazonaws.com"
ALB_WEST = "app-west-5678.us-west-2.elb.amazonaws.com"


def _create(zone: Zone, *record_sets: dict[str, Any]) -> None:
    zone.route53.change_resource_record_sets(
        HostedZoneId=zone.id,
        ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": r} for r in record_sets]},
    )


def _sets(zone: Zone, name: str, record_type: str = "A") -> dict[str | None, dict[str, Any]]:
    sets = zone.route53.list_resource_record_sets(HostedZoneId=zone.id)["ResourceRecordSets"]
    return {r.get("SetIdentifier"): r for r in sets if r["Name"] == name.rstrip(".") + "." and r["Type"] == record_type}


@pytest.fixture
def alias_zone(zone: Zone) -> Zone:
    _create(zone, {"Name": f"www.{zone.name}", "Type": "A", "AliasTarget": {
        "HostedZoneId": ELB_ZONE_EAST, "DNSName": ALB_EAST, "EvaluateTargetHealth": True}})
    return zone


def _alias_params(zone: Zone, **extra: Any) -> dict[str, Any]:
    return {"hostedZoneId": zone.id, "recordName": f"www.{zone.name}", "recordType": "A",
            "recoveryAliasTarget": {"hostedZoneId": ELB_ZONE_WEST, "dnsName": ALB_WEST, "evaluateTargetHealth": True},
            "primaryAliasTarget": {"hostedZoneId": ELB_ZONE_EAST, "dnsName": ALB_EAST, "evaluateTargetHealth": True},
            **extra}


def test_alias_planned_switches_target_idempotently_and_failback_restores(alias_zone: Zone) -> None:
    zone, name = alias_zone, f"www.{alias_zone.name}"
    ctx, params = make_ctx(module, _alias_params(zone), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    assert module.start(ctx, params).outputs["pointsTo"] == "primary"

    activate = with_phase(ctx, Phase.ACTIVATE)
    steps = drive(module, activate, params)
    assert not steps[0].done and steps[-1].done
    target = _sets(zone, name)[None]["AliasTarget"]
    assert target["DNSName"].rstrip(".") == ALB_WEST and target["HostedZoneId"] == ELB_ZONE_WEST
    assert "TTL" not in _sets(zone, name)[None]
    client = activate.client("route53", region="us-east-1")
    with count_calls(client.meta.events, "route53", "ChangeResourceRecordSets") as changes:
        assert module.start(activate, params).done
    assert len(changes) == 0
    assert module.status(activate, params)["pointsTo"] == "recovery"

    drive(module, with_phase(ctx, Phase.ACTIVATE, mode=Mode.FAILBACK), params)
    assert _sets(zone, name)[None]["AliasTarget"]["DNSName"].rstrip(".") == ALB_EAST


def test_alias_drill_writes_an_alias_drill_record_only(alias_zone: Zone) -> None:
    zone, name = alias_zone, f"www.{alias_zone.name}"
    ctx, params = make_ctx(module, _alias_params(zone), mode=Mode.DRILL, phase=Phase.ACTIVATE)
    drill_name = f"drill-{ctx.drill_suffix()}.{name}"
    drive(module, ctx, params)
    assert _sets(zone, drill_name)[None]["AliasTarget"]["DNSName"].rstrip(".") == ALB_WEST
    assert _sets(zone, name)[None]["AliasTarget"]["DNSName"].rstrip(".") == ALB_EAST  # production untouched
    drive(module, with_phase(ctx, Phase.CLEANUP), params)
    assert _sets(zone, drill_name) == {}
    assert _sets(zone, name)[None]["AliasTarget"]["DNSName"].rstrip(".") == ALB_EAST


def test_plan_kind_must_match_the_record(alias_zone: Zone) -> None:
    ctx, params = make_ctx(module, _params(alias_zone, recordName=f"www.{alias_zone.name}", recordType="A"),
                           mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "UnsupportedRecord" and error.value.non_retryable
    assert "alias" in str(error.value)


def test_parameters_name_exactly_one_kind() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        module.Parameters.model_validate({"hostedZoneId": "Z1", "recordName": "a.example.com"})
    with pytest.raises(ValueError, match="primarySetIdentifier"):
        module.Parameters.model_validate({"hostedZoneId": "Z1", "recordName": "a", "recoverySetIdentifier": "west"})
    with pytest.raises(ValueError, match="0/0"):
        module.Parameters.model_validate({"hostedZoneId": "Z1", "recordName": "a", "recoverySetIdentifier": "w",
                                          "primarySetIdentifier": "e", "failoverWeights": {"primary": 0,
                                                                                           "recovery": 0}})


@pytest.fixture
def weighted_zone(zone: Zone) -> Zone:
    name = f"api.{zone.name}"
    _create(zone,
            {"Name": name, "Type": "A", "SetIdentifier": "east", "Weight": 100, "TTL": 60,
             "ResourceRecords": [{"Value": "10.1.0.10"}]},
            {"Name": name, "Type": "A", "SetIdentifier": "west", "Weight": 0, "TTL": 60,
             "ResourceRecords": [{"Value": "10.2.0.10"}, {"Value": "10.2.0.11"}]})
    return zone


def _weighted_params(zone: Zone, **extra: Any) -> dict[str, Any]:
    return {"hostedZoneId": zone.id, "recordName": f"api.{zone.name}", "recordType": "A",
            "primarySetIdentifier": "east", "recoverySetIdentifier": "west", **extra}


def _weights(zone: Zone) -> dict[str | None, int]:
    return {k: v["Weight"] for k, v in _sets(zone, f"api.{zone.name}").items()}


def test_weighted_planned_shifts_weights_in_one_change_and_failback_shifts_back(weighted_zone: Zone) -> None:
    zone = weighted_zone
    ctx, params = make_ctx(module, _weighted_params(zone), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    before = module.start(ctx, params)
    assert before.outputs["pointsTo"] == "primary" and before.outputs["weights"] == {"east": 100, "west": 0}

    activate = with_phase(ctx, Phase.ACTIVATE)
    client = activate.client("route53", region="us-east-1")
    with count_calls(client.meta.events, "route53", "ChangeResourceRecordSets") as changes:
        steps = drive(module, activate, params)
        assert module.start(activate, params).done  # the retry finds the weights shifted
    # One batch holding both sets, so no resolver sees the weights half shifted.
    assert len(changes) == 1 and changes.calls[0]["body"].count(b"<Change>") == 2
    assert steps[-1].outputs["weights"] == {"east": 0, "west": 100}
    assert _weights(zone) == {"east": 0, "west": 100}
    west = _sets(zone, f"api.{zone.name}")["west"]
    assert west["ResourceRecords"] == [{"Value": "10.2.0.10"}, {"Value": "10.2.0.11"}] and west["TTL"] == 60
    assert module.status(activate, params)["pointsTo"] == "recovery"

    drive(module, with_phase(ctx, Phase.ACTIVATE, mode=Mode.FAILBACK), params)
    assert _weights(zone) == {"east": 100, "west": 0}


def test_weighted_custom_weights(weighted_zone: Zone) -> None:
    ctx, params = make_ctx(module, _weighted_params(weighted_zone, failoverWeights={"primary": 10, "recovery": 90}),
                           mode=Mode.DISASTER, phase=Phase.ACTIVATE)
    drive(module, ctx, params)
    assert _weights(weighted_zone) == {"east": 10, "west": 90}


def test_weighted_drill_answers_like_the_recovery_set_and_leaves_weights(weighted_zone: Zone) -> None:
    zone = weighted_zone
    ctx, params = make_ctx(module, _weighted_params(zone), mode=Mode.DRILL, phase=Phase.ACTIVATE)
    drill_name = f"drill-{ctx.drill_suffix()}.api.{zone.name}"
    drive(module, ctx, params)
    drill = _sets(zone, drill_name)[None]
    assert drill["ResourceRecords"] == [{"Value": "10.2.0.10"}, {"Value": "10.2.0.11"}]
    assert "Weight" not in drill and "SetIdentifier" not in drill
    assert _weights(zone) == {"east": 100, "west": 0}
    drive(module, with_phase(ctx, Phase.CLEANUP), params)
    assert _sets(zone, drill_name) == {} and _weights(zone) == {"east": 100, "west": 0}


def test_weighted_missing_set_is_fatal(weighted_zone: Zone) -> None:
    ctx, params = make_ctx(module, _weighted_params(weighted_zone, recoverySetIdentifier="eu"),
                           mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "RecordNotFound" and error.value.non_retryable and "'eu'" in str(error.value)
    assert _weights(weighted_zone) == {"east": 100, "west": 0}


def test_activate_waits_for_insync(zone: Zone, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.moto_fixes import route53 as sandbox_route53

    monkeypatch.setattr(sandbox_route53, "PROPAGATION_SECONDS", 0.5)
    ctx, params = make_ctx(module, _params(zone), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    steps = drive(module, ctx, params, max_polls=500)
    assert any("PENDING" in step.message for step in steps[1:-1])  # polled while Route 53 was still propagating
    assert steps[-1].done and "INSYNC" in steps[-1].message
    assert zone.value(zone.record) == RECOVERY
