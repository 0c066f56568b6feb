"""A worker upgrade under a drill waiting at an approval gate (docs/versioning.md).

The drill reaches its gate on a worker running today's code; that worker stops and one running the next release's
code (tests/upgrade_workflows.py: a patched change before the gate, a new step after it) takes over; the gate is
approved and the drill completes there. The control case: the same change without its `workflow.patched` guard makes
the new worker fail the run's workflow task with nondeterminism, and the run does not go on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from activities.core.aws import AwsClients
from contracts.lifecycle import RunStatus, StepStatus
from tests.lifecycle_helpers import control, finish, make_plan, resource, send, start_run, status_of, timer_summaries
from tests.lifecycle_helpers import wait_resource, wait_until
from tests.upgrade_workflows import AFTER_GATE_PATCH, AFTER_GATE_SUMMARY, GATED_LAYER, PREFLIGHT_PATCH
from tests.upgrade_workflows import PREFLIGHT_SUMMARY, NextRelease, Unguarded
from workers.main import ACTIVITY_THREADS, WORKFLOWS, build_worker
from workflows.lifecycle import DrLifecycleWorkflow

APPROVER = "manager@example.com"


def release_with(lifecycle: type) -> list[type]:
    """The worker's workflows with DrLifecycleWorkflow replaced by another release's class of the same type name."""
    return [lifecycle if w is DrLifecycleWorkflow else w for w in WORKFLOWS]


@asynccontextmanager
async def worker_running(client: Client, queue: str, workflows: Sequence[type]) -> AsyncIterator[None]:
    """A worker as the worker process builds it, on its own task queue, stopped (gracefully) on leaving."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(client, queue, AwsClients(), executor, workflows=workflows):
            yield


async def drill_at_its_gate(client: Client, queue: str) -> WorkflowHandle[Any, Any]:
    """A drill started on today's code, left waiting at its approval gate with that worker stopped."""
    plan = make_plan({"ACTIVATE": [
        {"name": "prepare", "resources": [wait_resource("p", 1)]},
        {"name": GATED_LAYER, "approvalRequired": True, "resources": [wait_resource("s", 1)]},
    ]}, name=f"upgrade-{uuid.uuid4().hex[:4]}")
    async with worker_running(client, queue, WORKFLOWS):
        handle = await start_run(client, queue, plan)
        state = await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL)
        gate = state.pending_gate()
        assert gate is not None and gate.id == f"ACTIVATE/{GATED_LAYER}"
    return handle


async def events_of(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    return [event async for event in handle.fetch_history_events()]


def patches_in(events: list[HistoryEvent]) -> dict[str, int]:
    """Each patch marker of the history -> its event id."""
    found = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if "patch-data" in details:
                found[json.loads(details["patch-data"].payloads[0].data)["id"]] = event.event_id
    return found


def first(events: list[HistoryEvent], event_type: EventType.ValueType) -> int:
    return next(e.event_id for e in events if e.event_type == event_type)


async def test_a_drill_at_its_gate_completes_on_the_next_release(temporal_env, sandbox):
    client = temporal_env.client
    queue = f"upgrade-{uuid.uuid4().hex[:6]}"
    handle = await drill_at_its_gate(client, queue)
    at_gate = await events_of(handle)
    async with worker_running(client, queue, release_with(NextRelease)):
        assert (await send(handle, "approve", control(actor=APPROVER, reason="go"))).accepted
        # Bounded: a run the new worker cannot replay never ends, and its failed task is in the message then.
        result = await asyncio.wait_for(finish(handle), timeout=60)
        state = await status_of(handle)  # a query needs a live worker
        # A run started on the new code takes the pre-flight change: the guard is what kept it out of the old run.
        fresh = await start_run(client, queue, make_plan({"ACTIVATE": [{"name": "only", "resources": [
            wait_resource("o", 1)]}]}, name=f"upgrade-new-{uuid.uuid4().hex[:4]}"))
        assert (await finish(fresh)).status is RunStatus.COMPLETED
    assert result.status is RunStatus.COMPLETED, result.message
    assert resource(state, "ACTIVATE", GATED_LAYER, "s").status is StepStatus.SUCCEEDED
    assert (state.gates[0].decision, state.gates[0].actor) == ("approved", APPROVER)

    events = await events_of(handle)
    # Replayed on the new worker without a failed workflow task: the part recorded on today's code matched it.
    assert not [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    # The pre-flight change did not alter the replayed run: no marker of its patch, no pre-flight timer.
    patches = patches_in(events)
    assert PREFLIGHT_PATCH not in patches and PREFLIGHT_PATCH not in patches_in(at_gate)
    summaries = await timer_summaries(handle)
    assert PREFLIGHT_SUMMARY not in summaries
    # The new step ran after the gate, on the new worker: its patch marker and timer follow the approval and come
    # before the gated layer's own timer.
    approved = first(events, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    assert approved > at_gate[-1].event_id
    assert patches[AFTER_GATE_PATCH] > approved, patches
    assert [t for t in summaries if t.startswith(("p:", "s:", "upgrade"))] == \
        ["p: wait 1 s", AFTER_GATE_SUMMARY, "s: wait 1 s"], summaries

    fresh_patches = patches_in(await events_of(fresh))
    assert PREFLIGHT_PATCH in fresh_patches and PREFLIGHT_SUMMARY in await timer_summaries(fresh)


async def test_the_same_change_unguarded_fails_the_run_with_nondeterminism(temporal_env, sandbox):
    client = temporal_env.client
    queue = f"upgrade-unguarded-{uuid.uuid4().hex[:6]}"
    handle = await drill_at_its_gate(client, queue)
    async with worker_running(client, queue, release_with(Unguarded)):
        try:
            # A signal: the server takes it without a worker; the new worker then replays the run to handle it.
            await handle.signal("approve", control(actor=APPROVER, reason="go"))
            failed = await task_failure(handle)
            description = await handle.describe()
        finally:
            await handle.terminate("upgrade test: the unguarded change broke the run, as intended")
    cause = failed.workflow_task_failed_event_attributes.cause
    message = failed.workflow_task_failed_event_attributes.failure.message
    assert cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR, (cause, message)
    assert "nondetermin" in message.lower(), message
    # Not silently passed: the run is stuck at its workflow task, not completed the new way or the old.
    assert description.status == WorkflowExecutionStatus.RUNNING


async def task_failure(handle: WorkflowHandle[Any, Any], timeout: float = 30) -> HistoryEvent:
    """The run's first failed workflow task (later attempts of the same task are not in the history)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        failures = [e for e in await events_of(handle) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
        if failures:
            return failures[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no workflow task of {handle.id} failed in {timeout} s")
