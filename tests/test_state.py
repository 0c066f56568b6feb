"""The pure roll-up rules behind the status query (no server needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from plans.model import Mode, Plan
from tests.lifecycle_helpers import make_plan, wait_resource
from contracts.lifecycle import (
    HookState,
    LayerState,
    LifecycleInput,
    LifecycleState,
    PhaseState,
    RunStatus,
    StepStatus,
)
from workflows.state import close, new_state, partial_message, result_of, rollup, within_policy

S = StepStatus


@pytest.mark.parametrize(("children", "tolerate", "expected"), [
    ([], False, S.SUCCEEDED),
    ([S.SUCCEEDED, S.SUCCEEDED], False, S.SUCCEEDED),
    ([S.SUCCEEDED, S.RUNNING], False, S.RUNNING),
    ([S.SUCCEEDED, S.FAILED], False, S.FAILED),
    ([S.SUCCEEDED, S.FAILED], True, S.PARTIAL),  # continue-on-error: reported, never hidden
    ([S.SUCCEEDED, S.PARTIAL], False, S.PARTIAL),
    ([S.SUCCEEDED, S.CANCELLED], False, S.CANCELLED),
    ([S.SUCCEEDED, S.SKIPPED], False, S.CANCELLED),  # part ran, then the run stopped
    ([S.SKIPPED, S.SKIPPED], False, S.SKIPPED),
])
def test_rollup(children, tolerate, expected):
    assert rollup(children, tolerate_failures=tolerate) is expected


NOW = datetime(2026, 11, 26, tzinfo=UTC)


def running_layer(plan: Plan) -> tuple[LifecycleState, PhaseState, LayerState]:
    """The state of a drill of `plan` whose ACTIVATE phase and first layer in it are running."""
    state = new_state(LifecycleInput(plan=plan, mode=Mode.DRILL, initiator="t"), "dr-x", NOW)
    activate = state.phases[1]
    activate.status, activate.started_at = S.RUNNING, NOW
    layer = activate.layers[0]
    layer.status, layer.started_at = S.RUNNING, NOW
    return state, activate, layer


def test_close_marks_what_never_ran_and_reports_partial_success():
    plan = make_plan({
        "ACTIVATE": [{"name": "tolerant", "continueOnError": True, "resources": [wait_resource("a"),
                                                                                  wait_resource("b")]}],
        "CLEANUP": [{"name": "later", "resources": [wait_resource("c")]}],
    })
    state, activate, layer = running_layer(plan)
    layer.resources[0].status = S.SUCCEEDED
    layer.resources[1].status, layer.resources[1].error = S.FAILED, "boom"

    close(state, RunStatus.COMPLETED, "", NOW)

    assert layer.status is S.PARTIAL and activate.status is S.PARTIAL and activate.ended_at == NOW
    assert state.phases[2].layers[0].resources[0].status is S.SKIPPED
    assert state.phases[0].status is S.SKIPPED  # never started, though it had nothing to do
    result = result_of(state)
    assert result.failed_resources == ["ACTIVATE/tolerant/b: boom"]
    assert "completed with 1 failed resource" in result.message


def test_step_states_serialize_their_fields_in_the_order_status_always_showed():
    """ResourceState and HookState share StepState; the `status` query's JSON keeps each one's own field order."""
    from contracts.lifecycle import HookState, ResourceState

    resource = ResourceState(name="r", action="control.wait", account="1", region="eu-west-1")
    hook = HookState(name="h", when="pre", kind="lambda", target="f:1", account="1", region="eu-west-1",
                     timeout_seconds=60)
    progress = ["status", "started_at", "ended_at", "message", "error", "error_type", "outputs", "handle"]
    assert list(json.loads(resource.model_dump_json())) == ["name", "action", "account", "region", *progress,
                                                             "skipped_by"]
    assert list(json.loads(hook.model_dump_json())) == ["name", "when", "kind", "target", "account", "region",
                                                         "on_failure", "timeout_seconds", "runs", *progress]


def test_a_run_with_failures_within_policy_closes_partial_naming_the_first_few():
    plan = make_plan({"ACTIVATE": [{"name": "tolerant", "continueOnError": True,
                                    "resources": [wait_resource(n) for n in "abcde"]}]}, name="web")
    state, activate, layer = running_layer(plan)
    resources = layer.resources
    resources[0].status = S.SUCCEEDED
    resources[1].status, resources[1].error = S.PARTIAL, "wave web: 1 optional server failed (web-3: no capacity)"
    for r in resources[2:]:
        r.status, r.error = S.FAILED, "boom " + "x" * 300

    layer.post_hooks.append(HookState(name="smoke", when="post", kind="lambda", target="smoke:1", account="1",
                                      region="us-west-2", on_failure="continue", timeout_seconds=60,
                                      status=S.FAILED, error="FunctionError"))
    items = within_policy(state)
    assert [i.split(":")[0] for i in items] == [f"ACTIVATE/tolerant/{n}" for n in "bcde"] + [
        "ACTIVATE/tolerant/post-hook smoke"]
    message = partial_message(state, items)
    assert message.startswith("drill of web partial: ACTIVATE/tolerant/b: wave web: 1 optional server failed "
                              "(web-3: no capacity); ACTIVATE/tolerant/c: boom xx")
    assert message.endswith("…; and 2 more") and len(message) < 600  # three items shown, each clipped
    close(state, RunStatus.PARTIAL, message, NOW)
    assert layer.status is S.PARTIAL and activate.status is S.PARTIAL
    result = result_of(state)
    assert (result.status, result.message, state.error) == (RunStatus.PARTIAL, message, message)
    assert [f.split(":")[0] for f in result.failed_resources] == [f"ACTIVATE/tolerant/{n}" for n in "cde"] + [
        "ACTIVATE/tolerant/post-hook smoke"]
    assert result.partial_resources == [f"ACTIVATE/tolerant/b: {resources[1].error}"]
    assert RunStatus.PARTIAL.finished


def test_nothing_failed_nothing_within_policy():
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("a")]}]})
    state = new_state(LifecycleInput(plan=plan, mode=Mode.DRILL, initiator="t"), "dr-x", datetime.now(UTC))
    state.phases[1].layers[0].resources[0].status = S.SUCCEEDED
    assert within_policy(state) == []
