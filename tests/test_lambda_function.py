"""lambda.function on the sandbox: a drill touches only its own alias; a real failover switches the recovery region."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.lambda_function import LambdaFunction
from plans.model import Mode, Phase
from tests.aws_helpers import PRIMARY_REGION, RECOVERY_REGION, drive, make_ctx, unique, with_phase
from tests.conftest import APP_ACCOUNT, account_session

module = LambdaFunction()


def make_function(region: str, name: str, alias: str = "live") -> tuple[Any, str]:
    """A function with versions 1 and 2, `alias` on version 1, and a disabled SQS mapping; returns (client, UUID)."""
    session = account_session(APP_ACCOUNT)
    role = session.client("iam").create_role(RoleName=unique("fn-role"), AssumeRolePolicyDocument="{}")["Role"]
    lam = session.client("lambda", region_name=region)
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return 1\n")
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role["Arn"], Handler="index.handler",
                        Code={"ZipFile": code.getvalue()}, Publish=True)
    lam.update_function_configuration(FunctionName=name, Description="release 2")
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.create_alias(FunctionName=name, Name=alias, FunctionVersion="1")
    sqs = session.client("sqs", region_name=region)
    queue = sqs.create_queue(QueueName=unique("orders"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    mapping = lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=f"{name}:{alias}",
                                              Enabled=False)
    return lam, mapping["UUID"]


def enable_mapping(lam: Any, uuid: str) -> None:
    """Enable a mapping and wait until it settles (Enabling -> Enabled), as a real consumer would be."""
    lam.update_event_source_mapping(UUID=uuid, Enabled=True)
    for _ in range(5):
        if lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled":
            return
    raise AssertionError(f"mapping {uuid} did not settle")


def production(lam: Any, name: str, uuid: str, alias: str = "live") -> dict[str, Any]:
    """What production depends on: the alias's target, reserved concurrency and the mapping's state."""
    target = lam.get_alias(FunctionName=name, Name=alias)
    return {"version": target["FunctionVersion"],
            "weights": (target.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {},
            "reserved": lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions"),
            "mapping": lam.get_event_source_mapping(UUID=uuid)["State"]}


def function_tags(lam: Any, name: str) -> dict[str, str]:
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    return dict(lam.list_tags(Resource=arn)["Tags"])


def test_drill_switches_only_a_new_drill_alias_and_cleanup_deletes_it(sandbox):
    name = unique("fn")
    lam, uuid = make_function(RECOVERY_REGION, name)
    before = production(lam, name, uuid)
    params = {"functionName": name, "alias": "live", "version": "2", "additionalVersionWeights": {"1": 0.25},
              "reservedConcurrency": 20, "provisionedConcurrency": 3, "drillAlias": "dr-drill"}
    ctx, parsed = make_ctx(module, params, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    steps = drive(module, ctx, parsed)
    assert len(steps) > 1 and steps[-1].done  # waited for the provisioned concurrency to be READY
    drill = lam.get_alias(FunctionName=name, Name="dr-drill")
    assert drill["FunctionVersion"] == "2" and drill["RoutingConfig"]["AdditionalVersionWeights"] == {"1": 0.25}
    config = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="dr-drill")
    assert config["Status"] == "READY" and config["RequestedProvisionedConcurrentExecutions"] == 3
    assert production(lam, name, uuid) == before  # alias, reserved concurrency, mapping: untouched
    assert drive(module, ctx, parsed)[-1].done  # a retried ACTIVATE changes nothing and records nothing new
    assert len([k for k in function_tags(lam, name) if k.startswith("dr:previous:")]) == 1

    drive(module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert "dr-drill" not in [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]]
    assert lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []
    assert not [k for k in function_tags(lam, name) if k.startswith("dr:previous:")]
    assert production(lam, name, uuid) == before
    assert "nothing this drill changed" in drive(module, with_phase(ctx, Phase.CLEANUP), parsed)[-1].message


def test_drill_cleanup_restores_an_existing_drill_alias_exactly(sandbox):
    name = unique("fn")
    lam, uuid = make_function(RECOVERY_REGION, name)
    lam.create_alias(FunctionName=name, Name="dr-drill", FunctionVersion="1")
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="dr-drill", ProvisionedConcurrentExecutions=1)
    params = {"functionName": name, "version": "2", "provisionedConcurrency": 4, "drillAlias": "dr-drill"}
    ctx, parsed = make_ctx(module, params, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    drive(module, ctx, parsed)
    assert lam.get_alias(FunctionName=name, Name="dr-drill")["FunctionVersion"] == "2"
    pc = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="dr-drill")
    assert pc["RequestedProvisionedConcurrentExecutions"] == 4
    drive(module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert lam.get_alias(FunctionName=name, Name="dr-drill")["FunctionVersion"] == "1"
    pc = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="dr-drill")
    assert pc["RequestedProvisionedConcurrentExecutions"] == 1
    assert lam.get_event_source_mapping(UUID=uuid)["State"] == "Disabled"


def test_drill_without_a_drill_alias_only_verifies(sandbox):
    name = unique("fn")
    lam, uuid = make_function(RECOVERY_REGION, name)
    before = production(lam, name, uuid)
    params = {"functionName": name, "alias": "live", "version": "2", "reservedConcurrency": 5,
              "provisionedConcurrency": 2}
    ctx, parsed = make_ctx(module, params, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    step = drive(module, ctx, parsed)[-1]
    assert step.done and "verified" in step.message and step.outputs["mappings"] == {uuid: "Disabled"}
    assert production(lam, name, uuid) == before
    assert lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []
    assert not [k for k in function_tags(lam, name) if k.startswith("dr:previous:")]
    assert drive(module, with_phase(ctx, Phase.CLEANUP), parsed)[-1].done
    assert drive(module, with_phase(ctx, Phase.INSTANTIATE), parsed)[-1].message.endswith("ready")
    status = module.status(ctx, parsed)
    assert status["alias"] == {"version": "1", "weights": {}} and status["mappings"] == {uuid: "Disabled"}


def test_real_failover_switches_the_recovery_function_and_cleanup_stops_the_old_primary(sandbox):
    name = unique("fn")
    west, west_uuid = make_function(RECOVERY_REGION, name)
    east, east_uuid = make_function(PRIMARY_REGION, name)
    enable_mapping(east, east_uuid)
    east.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=50)
    east.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=5)
    params = {"functionName": name, "alias": "live", "version": "2", "reservedConcurrency": 30,
              "provisionedConcurrency": 10, "disablePrimaryEventSourceMappings": True,
              "removePrimaryConcurrency": True}
    ctx, parsed = make_ctx(module, params, mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    steps = drive(module, ctx, parsed)
    step = steps[-1]
    assert step.done and step.outputs["mappings"] == {west_uuid: "Enabled"}
    assert any("Enabling" in s.message for s in steps)  # waited for the mapping to settle
    assert production(west, name, west_uuid) == {"version": "2", "weights": {}, "reserved": 30, "mapping": "Enabled"}
    assert west.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")["Status"] == "READY"
    assert production(east, name, east_uuid)["mapping"] == "Enabled"  # ACTIVATE leaves the old primary alone
    assert drive(module, ctx, parsed)[-1].done  # idempotent

    steps = drive(module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert not steps[0].done and "Disabling" in steps[0].message and steps[-1].done
    assert production(east, name, east_uuid) == {"version": "1", "weights": {}, "reserved": None,
                                                 "mapping": "Disabled"}
    assert east.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []
    assert production(west, name, west_uuid)["mapping"] == "Enabled"
    assert drive(module, with_phase(ctx, Phase.CLEANUP), parsed)[-1].done  # a retried CLEANUP is harmless


def test_cleanup_of_a_real_failover_keeps_the_old_primary_unless_asked(sandbox):
    name = unique("fn")
    east, east_uuid = make_function(PRIMARY_REGION, name)
    enable_mapping(east, east_uuid)
    ctx, parsed = make_ctx(module, {"functionName": name}, mode=Mode.DISASTER, phase=Phase.CLEANUP)
    assert "kept as it is" in drive(module, ctx, parsed)[-1].message
    assert east.get_event_source_mapping(UUID=east_uuid)["State"] == "Enabled"


@pytest.mark.parametrize("missing", ["function", "alias", "version"])
def test_missing_function_alias_or_version_is_a_clear_permanent_error(sandbox, missing):
    name = unique("fn")
    if missing != "function":
        make_function(RECOVERY_REGION, name)
    params = {"functionName": name, "alias": "gone" if missing == "alias" else "live",
              "version": "9" if missing == "version" else "2"}
    ctx, parsed = make_ctx(module, params, mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as failure:
        module.start(ctx, parsed)
    assert failure.value.non_retryable and "not found" in failure.value.message
    assert {"function": name, "alias": f"{name}:gone", "version": f"{name}:9"}[missing] in failure.value.message


@pytest.mark.parametrize("params", [
    {"functionName": "f", "provisionedConcurrency": 2},  # provisioned concurrency lives on an alias
    {"functionName": "f", "alias": "live", "additionalVersionWeights": {"1": 0.5}},  # weights without version
    {"functionName": "f", "alias": "live", "version": "2", "additionalVersionWeights": {"1": 1.5}},
    {"functionName": "f", "alias": "live", "drillAlias": "live"},
    {"functionName": "f", "drillAlias": "dr"},  # which version would the drill alias take?
])
def test_inconsistent_parameters_are_rejected_by_plan_validation(params):
    with pytest.raises(ValidationError):
        module.Parameters.model_validate(params)
