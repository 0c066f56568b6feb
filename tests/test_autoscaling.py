"""autoscaling.group on the sandbox: a drill scales the recovery group and puts it back; a real failover can follow
the primary's size and scale the old primary down."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.autoscaling import AutoScalingGroup
from plans.model import Mode, Phase
from tests.aws_helpers import PRIMARY_REGION, RECOVERY_REGION, an_image, drive, make_ctx, unique, with_phase
from tests.conftest import APP_ACCOUNT, account_session

module = AutoScalingGroup()


def make_group(region: str, name: str, min_size: int, max_size: int, desired: int) -> Any:
    session = account_session(APP_ACCOUNT)
    ec2 = session.client("ec2", region_name=region)
    image = an_image(ec2)
    template = unique("lt")
    ec2.create_launch_template(LaunchTemplateName=template,
                               LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"})
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    autoscaling = session.client("autoscaling", region_name=region)
    autoscaling.create_auto_scaling_group(AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": template},
                                          MinSize=min_size, MaxSize=max_size, DesiredCapacity=desired,
                                          VPCZoneIdentifier=subnet)
    return autoscaling


def sizes(autoscaling: Any, name: str) -> tuple[int, int, int, int]:
    """(min, max, desired, InService instances)."""
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    in_service = sum(1 for i in group["Instances"] if i["LifecycleState"] == "InService")
    return group["MinSize"], group["MaxSize"], group["DesiredCapacity"], in_service


def drill_tags(autoscaling: Any, name: str) -> list[str]:
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return [t["Key"] for t in group["Tags"] if t["Key"].startswith("dr:previous-capacity:")]


def test_drill_scales_the_recovery_group_and_cleanup_restores_it(sandbox):
    name = unique("web")
    west = make_group(RECOVERY_REGION, name, min_size=0, max_size=2, desired=1)
    params = {"groupName": name, "minSize": 3, "maxSize": 6, "desiredCapacity": 3}
    ctx, parsed = make_ctx(module, params, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    step = drive(module, ctx, parsed)[-1]
    assert step.done and step.outputs["inService"] == 3 and sizes(west, name) == (3, 6, 3, 3)
    drive(module, ctx, parsed)  # a retried ACTIVATE must not record 3 as "the size before"
    assert len(drill_tags(west, name)) == 1
    drive(module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert sizes(west, name) == (0, 2, 1, 1) and drill_tags(west, name) == []
    assert "nothing this drill changed" in drive(module, with_phase(ctx, Phase.CLEANUP), parsed)[-1].message


def test_drill_in_verify_mode_leaves_the_group_alone(sandbox):
    name = unique("worker")
    west = make_group(RECOVERY_REGION, name, min_size=0, max_size=2, desired=0)
    ctx, parsed = make_ctx(module, {"groupName": name, "desiredCapacity": 2, "drill": "verify"},
                           mode=Mode.DRILL, phase=Phase.ACTIVATE)
    assert "verifies only" in drive(module, ctx, parsed)[-1].message
    assert sizes(west, name) == (0, 2, 0, 0) and drill_tags(west, name) == []
    assert module.status(ctx, parsed) == {"minSize": 0, "maxSize": 2, "desiredCapacity": 0, "inService": 0,
                                          "instances": 0}


def test_failover_follows_a_share_of_the_primary_and_cleanup_scales_the_old_primary_down(sandbox):
    name = unique("web")
    west = make_group(RECOVERY_REGION, name, min_size=0, max_size=2, desired=0)
    east = make_group(PRIMARY_REGION, name, min_size=2, max_size=10, desired=5)
    params = {"groupName": name, "primaryPercent": 50, "scaleDownPrimary": True}
    ctx, parsed = make_ctx(module, params, mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    step = drive(module, ctx, parsed)[-1]
    # 50% of 5 is 2.5: rounded up to 3; the max stretches to admit it, the min stays.
    assert step.done and sizes(west, name) == (0, 3, 3, 3) and "50% of 5" in step.handle["basis"]
    assert sizes(east, name) == (2, 10, 5, 5)  # ACTIVATE leaves the old primary alone
    assert drive(module, ctx, parsed)[-1].done and sizes(west, name) == (0, 3, 3, 3)
    drive(module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert sizes(east, name) == (0, 10, 0, 0) and sizes(west, name) == (0, 3, 3, 3)


def test_a_disaster_falls_back_to_the_absolute_size_when_the_primary_does_not_answer(sandbox):
    from tests.test_eventbridge import PrimaryRegionDown

    name = unique("web")
    west = make_group(RECOVERY_REGION, name, min_size=0, max_size=4, desired=0)
    params = {"groupName": name, "primaryPercent": 100, "desiredCapacity": 2}
    ctx, parsed = make_ctx(module, params, mode=Mode.DISASTER, phase=Phase.ACTIVATE, aws=PrimaryRegionDown())
    step = drive(module, ctx, parsed)[-1]
    assert step.done and step.handle["basis"] == "desiredCapacity" and sizes(west, name) == (0, 4, 2, 2)


def test_cleanup_of_a_real_failover_keeps_the_old_primary_unless_asked(sandbox):
    name = unique("web")
    east = make_group(PRIMARY_REGION, name, min_size=1, max_size=4, desired=2)
    ctx, parsed = make_ctx(module, {"groupName": name, "desiredCapacity": 2}, mode=Mode.DISASTER,
                           phase=Phase.CLEANUP)
    assert "kept as it is" in drive(module, ctx, parsed)[-1].message
    assert sizes(east, name) == (1, 4, 2, 2)


def test_a_missing_group_is_a_clear_permanent_error(sandbox):
    name = unique("none")
    ctx, parsed = make_ctx(module, {"groupName": name, "desiredCapacity": 1}, mode=Mode.DRILL,
                           phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as failure:
        module.start(ctx, parsed)
    assert failure.value.non_retryable and name in failure.value.message and "not found" in failure.value.message


def test_a_desired_count_outside_explicit_bounds_is_refused_before_any_change(sandbox):
    name = unique("web")
    west = make_group(RECOVERY_REGION, name, min_size=0, max_size=2, desired=1)
    make_group(PRIMARY_REGION, name, min_size=0, max_size=20, desired=10)
    ctx, parsed = make_ctx(module, {"groupName": name, "primaryPercent": 100, "maxSize": 4},
                           mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as failure:
        module.start(ctx, parsed)
    assert failure.value.non_retryable and "outside" in failure.value.message
    assert sizes(west, name) == (0, 2, 1, 1)


def test_the_sandbox_refuses_a_desired_capacity_outside_the_bounds_as_aws_does(sandbox):
    name = unique("web")
    west = make_group(RECOVERY_REGION, name, min_size=0, max_size=2, desired=1)
    with pytest.raises(west.exceptions.ClientError) as failure:
        west.update_auto_scaling_group(AutoScalingGroupName=name, MaxSize=2, DesiredCapacity=5)
    assert failure.value.response["Error"]["Code"] == "ValidationError"


@pytest.mark.parametrize("params", [
    {"groupName": "g"},  # no target
    {"groupName": "g", "minSize": 3, "maxSize": 2, "desiredCapacity": 2},
    {"groupName": "g", "maxSize": 0, "desiredCapacity": 3},
    {"groupName": "g", "primaryPercent": 0},
])
def test_inconsistent_parameters_are_rejected_by_plan_validation(params):
    with pytest.raises(ValidationError):
        module.Parameters.model_validate(params)


@pytest.mark.parametrize("mode", [Mode.DRILL, Mode.PLANNED])
def test_the_compute_estate_goes_through_every_phase(sandbox, mode):
    """tests/estates/compute.py as the every-module plan uses it: each resource through each phase its module
    supports, in plan order, and the estate's check after every phase."""
    from activities.core import registry
    from activities.core.aws import AwsClients
    from activities.core.context import ResourceContext
    from plans.model import PHASE_ORDER, Resource
    from tests.estates.compute import build

    estate = build(unique("cmp"))
    execution, aws = unique("dr-every-module"), AwsClients()
    for phase in PHASE_ORDER:
        for resource in estate.resources:
            compute = registry.get(resource["action"])
            assert compute is not None
            if phase not in compute.phases:
                continue
            ctx, parsed = make_ctx(compute, resource["parameters"], mode=mode, phase=phase, execution_id=execution,
                                   aws=aws)
            call = ctx.call.model_copy(update={"resource": Resource.model_validate(resource)})
            assert drive(compute, ResourceContext(call=call, aws=aws), parsed)[-1].done
        estate.check(phase, mode)
