"""Route 53 ARC routing controls: turn the recovery cell On and the primary cell Off.

State changes go to the cluster's data plane, which answers at five regional endpoints; as AWS recommends, each call
tries them in turn and moves to the next on an endpoint that is unreachable, failing (5xx) or throttling, so the loss
of one region (even the one being failed away from) does not stop the failover. The endpoints come from the plan
(`clusterEndpoints`, so a failover needs nothing of the us-west-2 control plane) or from DescribeCluster.

Real failover: one UpdateRoutingControlStates sets every recovery control On and every primary control Off at once
(so an "at least one cell On" safety rule holds), then GetRoutingControlState is polled until every endpoint we reach
reports it. A safety rule that blocks the change is a non-retryable error naming the rule; `safetyRulesToOverride` is
sent in disaster mode only (break glass), never for a planned failover. Failback: primary On, recovery Off.
Drill: no state changes. ACTIVATE reads the states through the endpoints and checks the safety rules against the
change a failover would make, reporting any rule that would block it.
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import Field
from temporalio.exceptions import ApplicationError

from activities.core.context import ResourceContext
from activities.core.aws import aws_errors, error_code, fatal, unreachable
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, ServiceModule, register
from plans.model import Mode

# The routing control configuration API exists in us-west-2 only.
_CONTROL_REGION = "us-west-2"
_POLL_SECONDS = 2.0
_ARN = r"^arn:aws[a-z-]*:route53-recovery-control::\d{12}:"
# One attempt per endpoint and short timeouts: the next endpoint is the retry.
_CLIENT_CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=3, read_timeout=10)


class Endpoint(ModuleParameters):
    endpoint: str = Field(min_length=1, max_length=128)
    region: str = Field(min_length=1, max_length=32)


class ArcRoutingControlParameters(ModuleParameters):
    cluster_arn: str = Field(pattern=_ARN + r"cluster/")
    primary_routing_control_arns: list[str] = Field(min_length=1)  # Off after failover
    recovery_routing_control_arns: list[str] = Field(min_length=1)  # On after failover
    cluster_endpoints: list[Endpoint] | None = None  # default: DescribeCluster's
    safety_rules_to_override: list[str] = Field(default_factory=list)  # disaster mode only


@register
class ArcRoutingControl(ServiceModule):
    action = "arc.routing_control"
    summary = "Turn ARC routing controls: recovery cell On, primary cell Off, through the cluster's regional endpoints"
    Parameters = ArcRoutingControlParameters

    def instantiate(self, ctx: ResourceContext, params: ArcRoutingControlParameters) -> Operation:
        endpoints = _endpoints(ctx, params)
        states, used = _states(ctx, endpoints, _controls(params))
        outputs = {"states": states, "endpoints": [e["Region"] for e in endpoints], "answeredBy": used}
        return Operation(done=True, outputs=outputs, message=f"routing controls: {_describe(states)}")

    def activate(self, ctx: ResourceContext, params: ArcRoutingControlParameters) -> Operation:
        endpoints = _endpoints(ctx, params)
        failback = ctx.mode is Mode.FAILBACK
        desired = {arn: "Off" if failback else "On" for arn in params.recovery_routing_control_arns}
        desired |= {arn: "On" if failback else "Off" for arn in params.primary_routing_control_arns}
        states, used = _states(ctx, endpoints, list(desired))
        handle = {"desired": desired, "endpoints": endpoints, "start": used}
        if ctx.is_drill:
            blocked = _blocking_rules(ctx, endpoints, desired, states)
            if blocked:
                ctx.log.warning("arc.failover_would_be_blocked", rules=blocked)
            message = (f"drill, nothing changed: {_describe(states)}; a failover would be "
                       + (f"blocked by safety rule(s) {', '.join(blocked)}" if blocked else "allowed by every rule"))
            return Operation(done=True, outputs={"states": states, "blockedBy": blocked}, message=message)
        if states == desired:
            return Operation(done=True, outputs={"states": states}, message=f"already {_describe(states)}")
        overrides = params.safety_rules_to_override if ctx.mode is Mode.DISASTER else []
        entries = [{"RoutingControlArn": arn, "RoutingControlState": state} for arn, state in desired.items()]
        try:
            _, used = _call(ctx, endpoints, used, "update_routing_control_states",
                            UpdateRoutingControlStateEntries=entries, SafetyRulesToOverride=overrides)
        except ClientError as exc:
            if error_code(exc) == "ConflictException":
                raise fatal(f"ARC refused the failover: {exc.response['Error'].get('Message', '')}"
                            + ("" if ctx.mode is Mode.DISASTER else " (safetyRulesToOverride applies in disaster "
                               "mode only)"), "SafetyRuleBlocked") from exc
            raise
        ctx.log.info("arc.routing_controls_updated", states=desired, overrides=overrides, endpoint=endpoints[used])
        return self.poll(ctx, params, {**handle, "start": used})

    def poll(self, ctx: ResourceContext, params: ArcRoutingControlParameters, handle: dict[str, Any]) -> Operation:
        # The cluster replicates a change across its regions: read until the endpoint we reach agrees.
        states, used = _states(ctx, handle["endpoints"], list(handle["desired"]), handle["start"])
        done = states == handle["desired"]
        return Operation(done=done, handle={**handle, "start": used}, outputs={"states": states},
                         message=("" if done else "waiting: ") + _describe(states),
                         poll_interval_seconds=_POLL_SECONDS)

    def cleanup(self, ctx: ResourceContext, params: ArcRoutingControlParameters) -> Operation:
        if ctx.is_drill:
            return Operation(done=True, message="drill changed no routing control: nothing to clean up")
        return Operation(done=True, message="routing controls stay failed over (failback turns them back)")


def _controls(params: ArcRoutingControlParameters) -> list[str]:
    return [*params.primary_routing_control_arns, *params.recovery_routing_control_arns]


def _describe(states: dict[str, str]) -> str:
    return ", ".join(f"{arn.rsplit('/', 1)[-1]}={state}" for arn, state in states.items())


def _endpoints(ctx: ResourceContext, params: ArcRoutingControlParameters) -> list[dict[str, str]]:
    if params.cluster_endpoints:
        return [{"Endpoint": e.endpoint, "Region": e.region} for e in params.cluster_endpoints]
    with aws_errors(f"DescribeCluster {params.cluster_arn}"):
        cluster = ctx.client("route53-recovery-control-config", region=_CONTROL_REGION).describe_cluster(
            ClusterArn=params.cluster_arn)["Cluster"]
    if cluster.get("Status") != "DEPLOYED" or not cluster.get("ClusterEndpoints"):
        raise ApplicationError(f"ARC cluster {params.cluster_arn} is {cluster.get('Status')}, not DEPLOYED",
                               type="ClusterNotDeployed")
    return [{"Endpoint": e["Endpoint"], "Region": e["Region"]} for e in cluster["ClusterEndpoints"]]


def _states(ctx: ResourceContext, endpoints: list[dict[str, str]], arns: list[str], start: int = 0) -> tuple[dict[str, str], int]:
    states = {}
    for arn in arns:
        found, start = _call(ctx, endpoints, start, "get_routing_control_state", RoutingControlArn=arn)
        states[arn] = found["RoutingControlState"]
    return states, start


def _call(ctx: ResourceContext, endpoints: list[dict[str, str]], start: int, operation: str, **kwargs: Any) -> tuple[Any, int]:
    """One data plane call, trying the endpoints in turn from `start`; returns the answer and who gave it."""
    failures = []
    for step in range(len(endpoints)):
        index = (start + step) % len(endpoints)
        endpoint = endpoints[index]
        try:
            with aws_errors(f"{operation} via {endpoint['Region']}"):
                return getattr(_cluster_client(ctx, endpoint), operation)(**kwargs), index
        except Exception as exc:
            throttled = isinstance(exc, ClientError) and error_code(exc) == "ThrottlingException"
            if not (unreachable(exc) or throttled):
                raise
            ctx.log.warning("arc.endpoint_failed", region=endpoint["Region"], operation=operation,
                            error=f"{type(exc).__name__}: {exc}")
            failures.append(f"{endpoint['Region']}: {exc}")
    # Retryable: a region that is down now may answer in a minute.
    raise ApplicationError(f"{operation}: every cluster endpoint failed: {'; '.join(failures)}",
                           type="ClusterEndpointsUnavailable")


def _cluster_client(ctx: ResourceContext, endpoint: dict[str, str]) -> Any:
    """A client bound to one regional endpoint of the cluster, in the resource's account."""
    return ctx.aws.client("route53-recovery-cluster", ctx.call.account, endpoint["Region"], config=_CLIENT_CONFIG,
                          endpoint_url=endpoint["Endpoint"])


def _blocking_rules(ctx: ResourceContext, endpoints: list[dict[str, str]], desired: dict[str, str],
                    states: dict[str, str]) -> list[str]:
    """The safety rules that would refuse `desired`, judged as ARC judges them: on the states the whole update would
    produce, for rules that watch a control it changes."""
    control_config = ctx.client("route53-recovery-control-config", region=_CONTROL_REGION)
    panels = {arn.split("/routingcontrol/", 1)[0] for arn in desired}
    rules: list[tuple[str, dict[str, Any]]] = []
    for panel in sorted(panels):
        with aws_errors(f"ListSafetyRules {panel}"):
            for page in control_config.get_paginator("list_safety_rules").paginate(ControlPanelArn=panel):
                rules += [(kind, spec) for rule in page.get("SafetyRules", []) for kind, spec in rule.items()]
    proposed = dict(states)
    changed = {arn for arn, state in desired.items() if states.get(arn) != state}
    blocked = []
    for kind, spec in rules:
        watched = spec["AssertedControls"] if kind == "ASSERTION" else spec["TargetControls"]
        judged = spec["AssertedControls"] if kind == "ASSERTION" else spec["GatingControls"]
        if spec.get("Status") != "DEPLOYED" or not changed & set(watched):
            continue
        missing = [arn for arn in judged if arn not in proposed]
        if missing:
            proposed |= _states(ctx, endpoints, missing)[0]
        values = [desired.get(arn, proposed[arn]) for arn in judged]
        on, config = values.count("On"), spec["RuleConfig"]
        holds = {"ATLEAST": on >= config["Threshold"], "AND": on == len(values), "OR": on > 0}[config["Type"]]
        if holds == config["Inverted"]:
            blocked.append(spec["SafetyRuleArn"])
    return blocked
