"""arc.routing_control on the sandbox's ARC emulator: a cluster with an east (primary) and a west (recovery) cell."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.core import registry
from plans.model import Mode, Phase
from sandbox.arc.models import ENDPOINT_REGIONS, arc_world
from tests.aws_helpers import drive, make_ctx, unique, with_phase
from tests.conftest import APP_ACCOUNT, account_session
from tests.estates import route53 as route53_estate

module = registry.get("arc.routing_control")
assert module is not None


@dataclass
class Cells:
    cluster: dict[str, Any]
    panel: str
    east: str
    west: str
    control_config: Any
    session: boto3.Session
    clients: dict[str, Any] = field(default_factory=dict)

    def data_plane(self, region: str = "us-west-2") -> Any:
        if region not in self.clients:
            endpoint = next(e for e in self.cluster["ClusterEndpoints"] if e["Region"] == region)
            self.clients[region] = self.session.client("route53-recovery-cluster", region_name=region,
                                                       endpoint_url=endpoint["Endpoint"])
        return self.clients[region]

    def states(self) -> dict[str, str]:
        client = self.data_plane()
        return {name: client.get_routing_control_state(RoutingControlArn=arn)["RoutingControlState"]
                for name, arn in (("east", self.east), ("west", self.west))}

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"clusterArn": self.cluster["ClusterArn"], "primaryRoutingControlArns": [self.east],
                "recoveryRoutingControlArns": [self.west], **extra}

    def rule(self, **rule: Any) -> str:
        kind = "GatingRule" if "GatingControls" in rule else "AssertionRule"
        created = self.control_config.create_safety_rule(**{kind: {
            "ControlPanelArn": self.panel, "Name": unique("rule"), "WaitPeriodMs": 5000, **rule}})
        return str(created[kind]["SafetyRuleArn"])


@pytest.fixture
def cells(sandbox) -> Cells:  # type: ignore[no-untyped-def]
    session = account_session(APP_ACCOUNT)
    control_config = session.client("route53-recovery-control-config", region_name="us-west-2")
    cluster = control_config.create_cluster(ClusterName=unique("cluster"))["Cluster"]
    panel = control_config.create_control_panel(ClusterArn=cluster["ClusterArn"],
                                                ControlPanelName=unique("panel"))["ControlPanel"]["ControlPanelArn"]
    east, west = (control_config.create_routing_control(
        ClusterArn=cluster["ClusterArn"], ControlPanelArn=panel, RoutingControlName=name,
    )["RoutingControl"]["RoutingControlArn"] for name in ("east", "west"))
    made = Cells(cluster, panel, east, west, control_config, session)
    made.data_plane().update_routing_control_state(RoutingControlArn=east, RoutingControlState="On")
    # The classic guard: never both cells Off.
    made.rule(AssertedControls=[east, west], RuleConfig={"Type": "ATLEAST", "Threshold": 1, "Inverted": False})
    return made


@pytest.fixture
def world() -> Iterator[Any]:
    world = arc_world()
    world.requests.clear()
    try:
        yield world
    finally:
        world.down_regions.clear()


def test_instantiate_reports_states_through_the_endpoints(cells: Cells) -> None:
    ctx, params = make_ctx(module, cells.params(), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    operation = module.start(ctx, params)
    assert operation.outputs["states"] == {cells.east: "On", cells.west: "Off"}
    assert operation.outputs["endpoints"] == list(ENDPOINT_REGIONS)


def test_drill_changes_nothing_and_reports_a_blocking_rule(cells: Cells) -> None:
    ctx, params = make_ctx(module, cells.params(), mode=Mode.DRILL, phase=Phase.ACTIVATE)
    operation = module.start(ctx, params)
    assert operation.done and operation.outputs["blockedBy"] == [] and "allowed" in operation.message
    assert cells.states() == {"east": "On", "west": "Off"}

    # A gating rule whose switch is Off: a real failover would be refused, and the drill says so.
    gate = cells.control_config.create_routing_control(
        ClusterArn=cells.cluster["ClusterArn"], ControlPanelArn=cells.panel, RoutingControlName="gate",
    )["RoutingControl"]["RoutingControlArn"]
    rule = cells.rule(GatingControls=[gate], TargetControls=[cells.east, cells.west],
                      RuleConfig={"Type": "AND", "Threshold": 1, "Inverted": False})
    operation = module.start(ctx, params)
    assert operation.outputs["blockedBy"] == [rule] and rule in operation.message
    assert module.start(with_phase(ctx, Phase.CLEANUP), params).done
    assert cells.states() == {"east": "On", "west": "Off"}


def test_planned_failover_is_one_update_and_idempotent(cells: Cells, world: Any) -> None:
    ctx, params = make_ctx(module, cells.params(), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    steps = drive(module, ctx, params)
    assert steps[-1].done and steps[-1].outputs["states"] == {cells.east: "Off", cells.west: "On"}
    assert cells.states() == {"east": "Off", "west": "On"}  # the ATLEAST 1 rule held: one atomic update
    again = module.start(ctx, params)
    assert again.done and "already" in again.message
    assert [op for _, op in world.requests].count("UpdateRoutingControlStates") == 1

    drive(module, with_phase(ctx, Phase.ACTIVATE, mode=Mode.FAILBACK), params)
    assert cells.states() == {"east": "On", "west": "Off"}


def test_failed_endpoints_are_skipped_in_turn(cells: Cells, world: Any) -> None:
    world.down_regions.update({"us-east-1", "us-west-2"})
    ctx, params = make_ctx(module, cells.params(), mode=Mode.DISASTER, phase=Phase.ACTIVATE)
    drive(module, ctx, params)
    requests = list(world.requests)
    world.down_regions.clear()
    assert cells.states() == {"east": "Off", "west": "On"}
    assert requests[:3] == [("us-east-1", "GetRoutingControlState"), ("us-west-2", "GetRoutingControlState"),
                                  ("eu-west-1", "GetRoutingControlState")]
    # Once an endpoint answers, the following calls start there instead of knocking on the dead ones again.
    assert {region for region, _ in requests[3:]} == {"eu-west-1"}


def test_every_endpoint_down_is_retryable(cells: Cells, world: Any) -> None:
    world.down_regions.update(ENDPOINT_REGIONS)
    ctx, params = make_ctx(module, cells.params(), mode=Mode.DISASTER, phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "ClusterEndpointsUnavailable" and not error.value.non_retryable
    assert all(region in str(error.value) for region in ENDPOINT_REGIONS)


def test_safety_rule_blocks_planned_and_disaster_may_override(cells: Cells) -> None:
    gate = cells.control_config.create_routing_control(
        ClusterArn=cells.cluster["ClusterArn"], ControlPanelArn=cells.panel, RoutingControlName="gate",
    )["RoutingControl"]["RoutingControlArn"]
    rule = cells.rule(GatingControls=[gate], TargetControls=[cells.east, cells.west],
                      RuleConfig={"Type": "AND", "Threshold": 1, "Inverted": False})
    ctx, params = make_ctx(module, cells.params(safetyRulesToOverride=[rule]), mode=Mode.PLANNED,
                           phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "SafetyRuleBlocked" and error.value.non_retryable and rule in str(error.value)
    assert cells.states() == {"east": "On", "west": "Off"}

    drive(module, with_phase(ctx, Phase.ACTIVATE, mode=Mode.DISASTER), params)
    assert cells.states() == {"east": "Off", "west": "On"}


def test_endpoints_from_the_plan_need_no_control_plane(cells: Cells) -> None:
    endpoints = [{"endpoint": e["Endpoint"], "region": e["Region"]} for e in cells.cluster["ClusterEndpoints"]]
    ctx, params = make_ctx(module, cells.params(clusterEndpoints=endpoints, clusterArn=cells.cluster["ClusterArn"]),
                           mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    control_config = ctx.client("route53-recovery-control-config", region="us-west-2")
    calls: list[str] = []
    control_config.meta.events.register("before-call.*", lambda model, **_: calls.append(model.name))
    drive(module, ctx, params)
    assert calls == [] and cells.states() == {"east": "Off", "west": "On"}


def test_missing_routing_control_and_cluster_are_fatal(cells: Cells) -> None:
    ghost = cells.east[:-4] + "0000"
    ctx, params = make_ctx(module, cells.params(primaryRoutingControlArns=[ghost]), mode=Mode.PLANNED,
                           phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "ResourceNotFoundException" and error.value.non_retryable and ghost in str(error.value)

    missing = cells.cluster["ClusterArn"][:-6] + "ffffff"
    ctx, params = make_ctx(module, cells.params(clusterArn=missing), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "ResourceNotFoundException" and missing in str(error.value)
    assert cells.states() == {"east": "On", "west": "Off"}


def test_emulator_answers_with_the_models_errors(cells: Cells) -> None:
    client = cells.data_plane()
    with pytest.raises(ClientError) as error:
        client.update_routing_control_state(RoutingControlArn=cells.east, RoutingControlState="Off")
    assert error.value.response["Error"]["Code"] == "ConflictException"  # both Off would break the ATLEAST rule
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(ClientError) as error:
        cells.control_config.create_safety_rule(AssertionRule={
            "ControlPanelArn": cells.panel, "Name": "bad", "WaitPeriodMs": 1, "AssertedControls": ["arn:nope"],
            "RuleConfig": {"Type": "OR", "Threshold": 1, "Inverted": False}})
    assert error.value.response["Error"]["Code"] == "ValidationException"
    listed = client.list_routing_controls(ControlPanelArn=cells.panel)["RoutingControls"]
    assert {c["RoutingControlName"]: c["RoutingControlState"] for c in listed} == {"east": "On", "west": "Off"}


def test_recovery_control_health_checks_follow_the_routing_controls(cells: Cells) -> None:
    """ARC moves DNS through RECOVERY_CONTROL health checks on FAILOVER records: after the failover, Route 53 (as
    route53.health_check reads it) serves the secondary, without any health check being inverted."""
    from tests.test_route53_health import make_pair

    route53 = cells.session.client("route53", region_name="us-east-1")
    pair = make_pair(route53, {"Type": "RECOVERY_CONTROL", "RoutingControlArn": cells.east})
    assert pair.check()["HealthCheckConfig"]["RoutingControlArn"] == cells.east
    health = registry.get("route53.health_check")
    assert health is not None
    ctx, params = make_ctx(health, pair.params(), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    assert health.status(ctx, params)["serving"] == "PRIMARY"

    arc_ctx, arc_params = make_ctx(module, cells.params(), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    drive(module, arc_ctx, arc_params)
    status = health.status(ctx, params)
    assert status["serving"] == "SECONDARY" and status["inverted"] is False


# --- the every-module plan's Route 53 and ARC estate ------------------------------------------------------------------

@pytest.mark.parametrize("mode", [Mode.DRILL, Mode.PLANNED])
def test_estate_through_every_phase(sandbox, mode: Mode) -> None:  # type: ignore[no-untyped-def]
    estate = route53_estate.build(unique("est"))
    execution = unique("exec")
    aws = None
    for phase in (Phase.INSTANTIATE, Phase.ACTIVATE, Phase.CLEANUP, Phase.REPLICATE):
        for resource in estate.resources:
            each = registry.get(resource["action"])
            assert each is not None
            if phase not in each.phases:
                continue
            ctx, params = make_ctx(each, resource["parameters"], mode=mode, phase=phase, execution_id=execution,
                                   aws=aws)
            aws = ctx.aws
            assert drive(each, ctx, params)[-1].done
        estate.check(phase, mode)
