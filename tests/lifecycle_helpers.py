"""Building plans and driving runs in workflow tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from plans.model import Mode, Plan
from tests.identity_helpers import session_converter, token_for
from contracts.lifecycle import PERMISSION_DENIED, REFUSED, WORKFLOW_TYPE, AuditEntry, ControlRequest, ControlResult, LifecycleInput, LifecycleResult, LifecycleState, RunOptions


def wait_resource(name: str, seconds: int = 1, **extra: Any) -> dict[str, Any]:
    return {"name": name, "action": "control.wait", "parameters": {"seconds": seconds}, **extra}


def make_plan(phases: dict[str, list[dict[str, Any]]], name: str = "test-plan", **extra: Any) -> Plan:
    """phases: PHASE -> list of layers as plan dicts (camelCase)."""
    return Plan.model_validate({
        "name": name,
        "accounts": {"hub": {"id": "123456789012"}},
        "regions": {"primary": "us-east-1", "recovery": "us-west-2"},
        "phases": {phase: {"layers": layers} for phase, layers in phases.items()},
        **extra,
    })


INITIATOR = "tester@example.com"


async def start_run(client: Client, task_queue: str, plan: Plan, mode: Mode = Mode.DRILL,
                    options: RunOptions | None = None, initiator: str = INITIATOR,
                    roles: tuple[str, ...] = ("admin",), token: str | None = None,
                    ) -> WorkflowHandle[Any, LifecycleResult]:
    run_input = LifecycleInput(plan=plan, mode=mode, initiator=initiator, options=options or RunOptions(),
                               token=token if token is not None else token_for(initiator, roles))
    return await client.start_workflow(
        WORKFLOW_TYPE, run_input, id=f"dr-{plan.name}-{mode.value}-{uuid.uuid4().hex[:10]}",
        task_queue=task_queue, result_type=LifecycleResult,
    )


async def finish(handle: WorkflowHandle[Any, LifecycleResult]) -> LifecycleResult:
    """The run's result; when the run failed, the assertion carries what failed, not just "workflow failed"."""
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        state = await status_of(handle)
        raise AssertionError(f"run {handle.id} failed: {state.error}; cause: {exc.cause}") from exc


async def status_of(handle: WorkflowHandle[Any, Any]) -> LifecycleState:
    return await handle.query("status", result_type=LifecycleState)


async def wait_until(handle: WorkflowHandle[Any, Any], predicate: Callable[[LifecycleState], bool],
                     timeout: float = 30.0) -> LifecycleState:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = await status_of(handle)
        if predicate(state):
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s; last status {state.status}")
        await asyncio.sleep(0.2)


async def send(handle: WorkflowHandle[Any, Any], update: str, request: ControlRequest) -> ControlResult:
    """The update's answer. A denial or a refusal by the handler fails the update (PermissionDenied, Refused) with
    the answer in its details: returned here as the answer (accepted=False), so tests read both alike. A validator's
    refusal has no details and is raised. An approve/reject names the run it decides, as drctl's do, unless the
    request names one already (or an empty one: tests of the denial)."""
    if update in ("approve", "reject") and request.run is None:
        request = request.model_copy(update={"run": handle.id})
    try:
        return await handle.execute_update(update, request, result_type=ControlResult)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type in (PERMISSION_DENIED, REFUSED) and cause.details:
            return ControlResult.model_validate(cause.details[0])
        raise


def control(actor: str = "operator@example.com", roles: tuple[str, ...] = ("admin",), **fields: Any) -> ControlRequest:
    """A control message from `actor`, with a token for `actor` holding `roles` unless a token is given."""
    fields.setdefault("token", token_for(actor, roles))
    return ControlRequest(actor=actor, **fields)


async def audit_of(handle: WorkflowHandle[Any, Any]) -> list[AuditEntry]:
    return await handle.query("audit", token_for("auditor@example.com", ("auditor",)), result_type=list[AuditEntry])


def resource(state: LifecycleState, phase: str, layer: str, name: str) -> Any:
    phase_state = next(p for p in state.phases if p.phase.value == phase)
    layer_state = next(x for x in phase_state.layers if x.name == layer)
    return next(r for r in layer_state.resources if r.name == name)


async def timer_summaries(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The summary of every timer the run started, as the Temporal UI shows them."""
    return [await summary_text(event.user_metadata.summary) async for event in handle.fetch_history_events()
            if event.HasField("timer_started_event_attributes") and event.user_metadata.HasField("summary")]


async def summary_text(summary: Payload) -> str:
    """A summary as stored (sealed by the session's key ring, like every payload) opened to its text."""
    [text] = await session_converter().decode([summary], [str])
    return str(text)


async def last_start(handle: WorkflowHandle[Any, Any], activity_type: str) -> tuple[int, datetime]:
    """(attempt, start time) of the attempt that ended the run's first `activity_type`, from its history."""
    scheduled: set[int] = set()
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and \
                event.activity_task_scheduled_event_attributes.activity_type.name == activity_type:
            scheduled.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED and \
                event.activity_task_started_event_attributes.scheduled_event_id in scheduled:
            return event.activity_task_started_event_attributes.attempt, event.event_time.ToDatetime(UTC)
    raise AssertionError(f"{activity_type} never started")
