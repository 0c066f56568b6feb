"""DrLifecycleWorkflow on the real dev server: ordering, parallelism, pause/resume/cancel, gates, failures."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError

from plans.model import Mode
from tests.identity_helpers import token_for
from tests.lifecycle_helpers import (
    audit_of,
    control,
    finish,
    make_plan,
    resource,
    send,
    start_run,
    status_of,
    wait_resource,
    wait_until,
)
from contracts.lifecycle import LifecycleResult, RunOptions, RunStatus, StepStatus


async def test_phases_in_order_layers_in_order_resources_in_parallel(worker):
    plan = make_plan({
        "REPLICATE": [{"name": "last", "resources": [wait_resource("r1")]}],
        "INSTANTIATE": [{"name": "first", "resources": [wait_resource("i1")]}],
        "ACTIVATE": [
            {"name": "wide", "resources": [wait_resource("a1", 2), wait_resource("a2", 2), wait_resource("a3", 2)]},
            {"name": "after", "resources": [wait_resource("a4")]},
        ],
        "CLEANUP": [{"name": "tidy", "resources": [wait_resource("c1")]}],
    }, name="ordering")
    handle = await start_run(worker.client, worker.task_queue, plan)
    result = await finish(handle)
    state = await status_of(handle)

    assert result.status is RunStatus.COMPLETED and state.status is RunStatus.COMPLETED
    assert [p.phase.value for p in state.phases] == ["INSTANTIATE", "ACTIVATE", "CLEANUP", "REPLICATE"]
    for earlier, later in zip(state.phases, state.phases[1:]):
        assert earlier.ended_at <= later.started_at
    wide, after = state.phases[1].layers
    assert wide.ended_at <= after.started_at
    # The three 2-second waits overlapped: each started before any ended (the order, not how long the layer took).
    assert max(r.started_at for r in wide.resources) < min(r.ended_at for r in wide.resources)
    assert all(r.status is StepStatus.SUCCEEDED and r.started_at and r.ended_at for r in wide.resources)
    assert set(result.phase_durations_seconds) == {"INSTANTIATE", "ACTIVATE", "CLEANUP", "REPLICATE"}


async def test_parallelism_is_bounded(worker):
    plan = make_plan({"ACTIVATE": [{"name": "wide", "resources": [wait_resource(f"w{i}", 1) for i in range(4)]}]},
                     name="bounded", defaults={"maxParallelResources": 1})
    handle = await start_run(worker.client, worker.task_queue, plan)
    await finish(handle)
    resources = (await status_of(handle)).phases[1].layers[0].resources
    spans = sorted((r.started_at, r.ended_at) for r in resources)
    assert all(prev_end <= next_start for (_, prev_end), (next_start, _) in zip(spans, spans[1:]))


async def test_search_attributes_follow_the_run(worker):
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("x")]}]}, name="attrs")
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    await finish(handle)
    attrs = (await handle.describe()).typed_search_attributes
    values = {name: attrs.get(SearchAttributeKey.for_keyword(name))
              for name in ("DrPlan", "DrMode", "DrPhase", "DrStatus", "DrInitiator")}
    assert values == {"DrPlan": "attrs", "DrMode": "drill", "DrPhase": "REPLICATE", "DrStatus": "COMPLETED",
                      "DrInitiator": "tester@example.com"}
    found = [w.id async for w in worker.client.list_workflows(
        f"DrPlan = 'attrs' AND DrMode = 'drill' AND WorkflowId = '{handle.id}'")]
    assert found == [handle.id]


async def test_pause_holds_the_next_layer_until_resume(worker):
    plan = make_plan({"ACTIVATE": [
        {"name": "one", "resources": [wait_resource("first", 2)]},
        {"name": "two", "resources": [wait_resource("second", 1)]},
    ]}, name="pausing")
    handle = await start_run(worker.client, worker.task_queue, plan)
    await wait_until(handle, lambda s: resource(s, "ACTIVATE", "one", "first").status is StepStatus.RUNNING)
    paused = await send(handle, "pause", control(reason="checking the database"))
    assert paused.accepted and paused.status is RunStatus.PAUSED

    state = await wait_until(handle, lambda s: resource(s, "ACTIVATE", "one", "first").status is StepStatus.SUCCEEDED)
    await wait_until(handle, lambda s: s.status is RunStatus.PAUSED, timeout=3)
    state = await status_of(handle)
    assert resource(state, "ACTIVATE", "two", "second").status is StepStatus.PENDING  # held at the boundary

    with pytest.raises(WorkflowUpdateFailedError):
        await send(handle, "pause", control())  # already paused: the validator refuses
    await send(handle, "resume", control(reason="database fine"))
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED
    assert [(a.action, a.actor) for a in await audit_of(handle)] == [
        ("start-drill", "tester@example.com"), ("pause", "operator@example.com"), ("resume", "operator@example.com")]


async def test_cancel_lets_running_work_finish_and_records_what_never_ran(worker):
    plan = make_plan({
        "ACTIVATE": [{"name": "one", "resources": [wait_resource("running", 2)]},
                     {"name": "two", "resources": [wait_resource("never", 1)]}],
        "CLEANUP": [{"name": "tidy", "resources": [wait_resource("tidy", 1)]}],
    }, name="cancelling")
    handle = await start_run(worker.client, worker.task_queue, plan)
    await wait_until(handle, lambda s: resource(s, "ACTIVATE", "one", "running").status is StepStatus.RUNNING)
    answer = await send(handle, "cancel", control(reason="drill window closed"))
    assert answer.accepted

    result = await finish(handle)
    state = await status_of(handle)
    assert result.status is RunStatus.CANCELLED and state.status is RunStatus.CANCELLED
    assert resource(state, "ACTIVATE", "one", "running").status is StepStatus.SUCCEEDED
    assert resource(state, "ACTIVATE", "two", "never").status is StepStatus.SKIPPED
    # A drill cancelled once ACTIVATE started cleans up after itself (tests/test_drill_cleanup.py has the rest).
    assert resource(state, "CLEANUP", "tidy", "tidy").status is StepStatus.SUCCEEDED
    assert result.message.startswith("cancelled by operator; cleanup after cancel: tidy/tidy"), result.message
    with pytest.raises(RPCError, match="already completed"):
        await send(handle, "resume", control())  # the run has ended


async def test_forced_cancel_stops_in_flight_operations(worker):
    plan = make_plan({"ACTIVATE": [{"name": "slow", "resources": [wait_resource("long", 600)]}]}, name="forced")
    handle = await start_run(worker.client, worker.task_queue, plan)
    await wait_until(handle, lambda s: resource(s, "ACTIVATE", "slow", "long").status is StepStatus.RUNNING)
    await send(handle, "cancel", control(reason="abort", force=True))
    result = await finish(handle)
    state = await status_of(handle)
    assert result.status is RunStatus.CANCELLED
    long = resource(state, "ACTIVATE", "slow", "long")
    assert long.status is StepStatus.CANCELLED
    assert (long.ended_at - long.started_at).total_seconds() < 30


async def test_temporal_cancel_is_recorded(worker):
    plan = make_plan({"ACTIVATE": [{"name": "slow", "resources": [wait_resource("long", 600)]}]}, name="tcancel")
    handle = await start_run(worker.client, worker.task_queue, plan)
    await wait_until(handle, lambda s: resource(s, "ACTIVATE", "slow", "long").status is StepStatus.RUNNING)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    state = await status_of(handle)
    assert state.status is RunStatus.CANCELLED
    assert resource(state, "ACTIVATE", "slow", "long").status is StepStatus.CANCELLED


async def test_approval_gate_waits_for_approve(worker):
    plan = make_plan({"ACTIVATE": [
        {"name": "prepare", "resources": [wait_resource("p", 1)]},
        {"name": "switch", "approvalRequired": True, "resources": [wait_resource("s", 1)]},
    ]}, name="gated")
    handle = await start_run(worker.client, worker.task_queue, plan)
    with pytest.raises(WorkflowUpdateFailedError):
        await send(handle, "approve", control())  # nothing to approve yet
    state = await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL)
    assert state.pending_gate().id == "ACTIVATE/switch"
    assert resource(state, "ACTIVATE", "switch", "s").status is StepStatus.PENDING
    with pytest.raises(WorkflowUpdateFailedError):
        await send(handle, "approve", control(gate="ACTIVATE/other"))
    answer = await send(handle, "approve", control(actor="manager@example.com", reason="go"))
    assert answer.accepted
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED
    gate = (await status_of(handle)).gates[0]
    assert (gate.decision, gate.actor) == ("approved", "manager@example.com")


async def test_rejection_stops_the_run(worker):
    plan = make_plan({"ACTIVATE": [{"name": "switch", "resources": [wait_resource("s", 1)]}]},
                     name="rejected")
    plan = plan.model_copy(update={"phases": {**plan.phases, **{
        k: v.model_copy(update={"approval_required": True}) for k, v in plan.phases.items()}}})
    handle = await start_run(worker.client, worker.task_queue, plan)
    await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL)
    with pytest.raises(WorkflowUpdateFailedError):
        await send(handle, "reject", control())  # a rejection needs a reason
    await send(handle, "reject", control(reason="change freeze"))
    result = await finish(handle)
    state = await status_of(handle)
    assert result.status is RunStatus.REJECTED
    assert resource(state, "ACTIVATE", "switch", "s").status is StepStatus.SKIPPED
    assert "change freeze" in state.error


async def test_start_paused_and_phase_subset(worker):
    plan = make_plan({"INSTANTIATE": [{"name": "i", "resources": [wait_resource("i1")]}],
                      "ACTIVATE": [{"name": "a", "resources": [wait_resource("a1")]}]}, name="subset")
    handle = await start_run(worker.client, worker.task_queue, plan,
                             options=RunOptions(phases=["ACTIVATE"], start_paused=True))
    state = await wait_until(handle, lambda s: s.status is RunStatus.PAUSED)
    assert [p.phase.value for p in state.phases] == ["ACTIVATE"]
    await send(handle, "resume", control())
    assert (await finish(handle)).status is RunStatus.COMPLETED


async def test_raw_json_input_as_the_temporal_cli_sends_it(worker, tmp_path):
    """`temporal workflow start --input` sends plain JSON: the plan as `drctl plan show --json` prints it."""
    import json
    import subprocess
    import sys

    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("x")]}]},
                                   name="raw-json").model_dump_json(by_alias=True))
    shown = subprocess.run([sys.executable, "-m", "drctl.cli", "plan", "show", str(plan_file), "--json"],
                           capture_output=True, text=True, check=True)
    raw_input = {"plan": json.loads(shown.stdout), "mode": "drill", "initiator": "cli-user",
                 "token": token_for("cli-user", ["operator"])}
    handle = await worker.client.start_workflow("DrLifecycleWorkflow", raw_input, id="dr-raw-json-drill-test",
                                                task_queue=worker.task_queue, result_type=LifecycleResult)
    assert (await finish(handle)).status is RunStatus.COMPLETED
