"""The pure roll-up rules behind the status query (no server needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from plans.model import Mode
from tests.lifecycle_helpers import make_plan, wait_resource
from contracts.lifecycle import LifecycleInput, RunStatus, StepStatus
from workflows.state import close, new_state, result_of, rollup

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


def test_close_marks_what_never_ran_and_reports_partial_success():
    plan = make_plan({
        "ACTIVATE": [{"name": "tolerant", "continueOnError": True, "resources": [wait_resource("a"),
                                                                                  wait_resource("b")]}],
        "CLEANUP": [{"name": "later", "resources": [wait_resource("c")]}],
    })
    now = datetime(2026, 11, 26, tzinfo=UTC)
    state = new_state(LifecycleInput(plan=plan, mode=Mode.DRILL, initiator="t"), "dr-x", now)
    activate = state.phases[1]
    activate.status, activate.started_at = S.RUNNING, now
    layer = activate.layers[0]
    layer.status, layer.started_at = S.RUNNING, now
    layer.resources[0].status = S.SUCCEEDED
    layer.resources[1].status, layer.resources[1].error = S.FAILED, "boom"

    close(state, RunStatus.COMPLETED, "", now)

    assert layer.status is S.PARTIAL and activate.status is S.PARTIAL and activate.ended_at == now
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
