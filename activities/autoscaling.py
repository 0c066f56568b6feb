"""Auto Scaling group: scale the recovery region's group to an absolute size, or to a share of what the primary runs
now, and wait until that many instances are InService; after a real failover, scale the old primary to 0 if asked.

Drill: scaling the recovery group up moves no production traffic (DNS and load balancers still send it to the
primary), so a drill does it to prove capacity (quotas, AMIs, subnets) and CLEANUP puts the group back. A group whose
instances pull production work (queue workers) would process it: such a group is set to `drill: verify`. The
capacity before the change is kept as a tag on the group, named after the execution, so CLEANUP (another activity,
maybe another worker) restores exactly it and a retried ACTIVATE never records its own scaled-up size.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, model_validator

from activities.core.context import ResourceContext
from activities.core.aws import aws_call, aws_errors, fatal, unreachable
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, ServiceModule, register

_POLL_SECONDS = 15.0
_TAG_PREFIX = "dr:previous-capacity:"
_SIZE = Field(default=None, ge=0, le=100_000)


class AutoScalingGroupParameters(ModuleParameters):
    group_name: str = Field(min_length=1, max_length=255)  # in the recovery region
    min_size: int | None = _SIZE
    max_size: int | None = _SIZE
    desired_capacity: int | None = _SIZE  # absolute; with primaryPercent, used when the primary does not answer
    primary_percent: int | None = Field(default=None, ge=1, le=1000)  # of the primary's desired now, rounded up
    primary_group_name: str | None = None  # default: groupName
    scale_down_primary: bool = False  # CLEANUP of a real failover: the old primary to 0 (never in a drill)
    drill: Literal["scale", "verify"] = "scale"  # verify: a drill leaves the group as it is

    @model_validator(mode="after")
    def _target(self) -> AutoScalingGroupParameters:
        if self.desired_capacity is None and self.primary_percent is None:
            raise ValueError("set desiredCapacity, primaryPercent, or both")
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            raise ValueError("minSize is above maxSize")
        low = self.min_size if self.min_size is not None else 0
        high = self.max_size if self.max_size is not None else self.desired_capacity
        if self.desired_capacity is not None and high is not None and not low <= self.desired_capacity <= high:
            raise ValueError("desiredCapacity must be between minSize and maxSize")
        return self


@register
class AutoScalingGroup(ServiceModule):
    action = "autoscaling.group"
    summary = "Scale an Auto Scaling group in the recovery region (absolute or % of the primary) until InService"
    Parameters = AutoScalingGroupParameters

    def instantiate(self, ctx: ResourceContext, params: AutoScalingGroupParameters) -> Operation:
        group = _group(ctx, params.group_name, ctx.recovery_region)
        return Operation(done=True, outputs=_sizes(group), message=f"{params.group_name}: {_summary(group)}")

    def status(self, ctx: ResourceContext, params: AutoScalingGroupParameters) -> dict[str, Any]:
        return _sizes(_group(ctx, params.group_name, ctx.recovery_region))

    def poll(self, ctx: ResourceContext, params: AutoScalingGroupParameters, handle: dict[str, Any]) -> Operation:
        group = _group(ctx, handle["group"], handle["region"])
        instances = group.get("Instances", [])
        in_service = [i for i in instances if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy"]
        # Done when exactly the desired instances serve: none still launching, none still terminating.
        done = group["DesiredCapacity"] == handle["desired"] == len(in_service) == len(instances)
        message = f"{handle['group']} ({handle['region']}): {_summary(group)}"
        return Operation(done=done, handle=handle, outputs=_sizes(group), message=message,
                         poll_interval_seconds=_POLL_SECONDS)

    def activate(self, ctx: ResourceContext, params: AutoScalingGroupParameters) -> Operation:
        region = ctx.recovery_region
        group = _group(ctx, params.group_name, region)
        if ctx.is_drill and params.drill == "verify":
            return Operation(done=True, outputs=_sizes(group),
                             message=f"{params.group_name}: drill verifies only (plan): {_summary(group)}")
        min_size, max_size, desired, basis = _target(ctx, params, group)
        tag = _TAG_PREFIX + ctx.call.execution_id
        if ctx.is_drill and not any(t["Key"] == tag for t in group.get("Tags", [])):
            # Before changing anything, and only once: a retry must not record its own scaled-up size.
            previous = f"{group['MinSize']}/{group['MaxSize']}/{group['DesiredCapacity']}"
            with aws_errors(f"CreateOrUpdateTags {params.group_name}"):
                _client(ctx, region).create_or_update_tags(Tags=[{
                    "ResourceId": params.group_name, "ResourceType": "auto-scaling-group", "Key": tag,
                    "Value": previous, "PropagateAtLaunch": False}])
        _update(ctx, region, group, min_size, max_size, desired)
        handle = {"group": params.group_name, "region": region, "desired": desired, "basis": basis}
        return self.poll(ctx, params, handle)

    def cleanup(self, ctx: ResourceContext, params: AutoScalingGroupParameters) -> Operation:
        if ctx.is_drill:
            region = ctx.recovery_region
            group = _group(ctx, params.group_name, region)
            tag = _TAG_PREFIX + ctx.call.execution_id
            previous = next((t["Value"] for t in group.get("Tags", []) if t["Key"] == tag), None)
            if previous is None:
                return Operation(done=True, message=f"{params.group_name}: nothing this drill changed is left")
            min_size, max_size, desired = (int(v) for v in previous.split("/"))
            _update(ctx, region, group, min_size, max_size, desired)
            aws_call(f"DeleteTags {params.group_name}", _client(ctx, region).delete_tags, Tags=[{
                "ResourceId": params.group_name, "ResourceType": "auto-scaling-group", "Key": tag}])
            return self.poll(ctx, params, {"group": params.group_name, "region": region, "desired": desired})
        if not params.scale_down_primary:
            return Operation(done=True, message=f"{params.group_name}: the old primary is kept as it is (plan)")
        name, region = params.primary_group_name or params.group_name, ctx.primary_region
        group = _group(ctx, name, region)
        _update(ctx, region, group, 0, group["MaxSize"], 0)
        return self.poll(ctx, params, {"group": name, "region": region, "desired": 0})


def _target(ctx: ResourceContext, params: AutoScalingGroupParameters, group: dict[str, Any]) -> tuple[int, int, int, str]:
    """Min, max and desired for the recovery group, and what the desired count is based on."""
    desired, basis = params.desired_capacity, "desiredCapacity"
    if params.primary_percent is not None:
        name = params.primary_group_name or params.group_name
        try:
            primary = _group(ctx, name, ctx.primary_region)
        except (BotoCoreError, ClientError) as exc:
            # A disaster may have taken the primary region: then the absolute size is the plan's answer, if any.
            if desired is None or not unreachable(exc):
                raise
            ctx.log.warning("autoscaling.primary_unreachable", group=name, fallback=desired)
        else:
            desired = math.ceil(primary["DesiredCapacity"] * params.primary_percent / 100)
            basis = f"{params.primary_percent}% of {primary['DesiredCapacity']} in {name} ({ctx.primary_region})"
    assert desired is not None
    # Bounds the plan leaves out stretch just enough to admit the desired count.
    min_size = params.min_size if params.min_size is not None else min(group["MinSize"], desired)
    max_size = params.max_size if params.max_size is not None else max(group["MaxSize"], desired)
    if not min_size <= desired <= max_size:
        raise fatal(f"{params.group_name}: desired {desired} ({basis}) is outside minSize {min_size} .. maxSize "
                    f"{max_size}", "InvalidParameters")
    return min_size, max_size, desired, basis


def _update(ctx: ResourceContext, region: str, group: dict[str, Any], min_size: int, max_size: int, desired: int) -> None:
    if (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (min_size, max_size, desired):
        return
    name = group["AutoScalingGroupName"]
    with aws_errors(f"UpdateAutoScalingGroup {name}"):
        _client(ctx, region).update_auto_scaling_group(AutoScalingGroupName=name, MinSize=min_size,
                                                       MaxSize=max_size, DesiredCapacity=desired)
    ctx.log.info("autoscaling.scaled", group=name, region=region, min=min_size, max=max_size, desired=desired)


def _client(ctx: ResourceContext, region: str) -> Any:
    return ctx.client("autoscaling", region=region)


def _group(ctx: ResourceContext, name: str, region: str) -> dict[str, Any]:
    with aws_errors(f"DescribeAutoScalingGroups {name}"):
        found = _client(ctx, region).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    groups = [g for g in found.get("AutoScalingGroups", []) if g.get("Status") != "Delete in progress"]
    if not groups:
        raise fatal(f"Auto Scaling group {name} not found in {region}", "AutoScalingGroupNotFound")
    return dict(groups[0])


def _sizes(group: dict[str, Any]) -> dict[str, Any]:
    in_service = sum(1 for i in group.get("Instances", []) if i["LifecycleState"] == "InService")
    return {"minSize": group["MinSize"], "maxSize": group["MaxSize"], "desiredCapacity": group["DesiredCapacity"],
            "inService": in_service, "instances": len(group.get("Instances", []))}


def _summary(group: dict[str, Any]) -> str:
    sizes = _sizes(group)
    return (f"{sizes['inService']}/{sizes['desiredCapacity']} InService "
            f"(min {sizes['minSize']}, max {sizes['maxSize']})")
