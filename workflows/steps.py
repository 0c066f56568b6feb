"""One step of a run through the generic resource activities: start it, wait until its operation is done, and
record in the step's state how it went. A layer's resources (workflows.lifecycle) and hooks (workflows.hooks) are
steps alike; the timeouts and the retry policy of their activities are written here once.

Deterministic workflow code: time comes from `workflow.now()`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError

from workflows.timeouts import heartbeat

with workflow.unsafe.imports_passed_through():
    from contracts.activities import RESOURCE_START, RESOURCE_WAIT, Operation, ResourceCall, WaitRequest
    from contracts.lifecycle import StepState, StepStatus
    from workflows.run_details import step_summary

# A start's AWS calls with their retries; a lost worker is noticed after the heartbeat timeout (workflows.timeouts),
# and the start retried elsewhere (starts are idempotent).
START_TIMEOUT = timedelta(minutes=5)
# The wait's heartbeat timeout in runs recorded before workflows.timeouts.
HEARTBEAT_TIMEOUT = timedelta(minutes=2)
# Runs recorded before their timeouts' timers had a summary keep replaying on asyncio.wait_for (see `within`).
TIMER_SUMMARY_PATCH = "timeout-timer-summaries"

T = TypeVar("T")

# AWS throttles and has blips: a few retries with backoff ride them out; after the last, the step fails.
AWS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                        maximum_interval=timedelta(minutes=1), maximum_attempts=8)


async def start_and_wait(call: ResourceCall, state: StepState, activity_id: str, *, wait_timeout: timedelta,
                         start_timeout: timedelta = START_TIMEOUT) -> None:
    """Start the step's operation, then wait until it is done; raises what the activities raise."""
    summary = step_summary(call, activity_id)
    operation = await workflow.execute_activity(
        RESOURCE_START, call, result_type=Operation, activity_id=f"{activity_id}/start",
        start_to_close_timeout=start_timeout, heartbeat_timeout=heartbeat(), retry_policy=AWS_RETRY,
        summary=f"{summary}: start",
    )
    observe(state, operation)
    while not operation.done:
        operation = await workflow.execute_activity(
            RESOURCE_WAIT, WaitRequest(call=call, operation=operation), result_type=Operation,
            activity_id=f"{activity_id}/wait", start_to_close_timeout=wait_timeout,
            heartbeat_timeout=heartbeat(HEARTBEAT_TIMEOUT), retry_policy=AWS_RETRY,
            summary=f"{summary}: wait until done",
        )
        observe(state, operation)


def record_failure(state: StepState, err: ActivityError, cancelled: str) -> bool:
    """End the step after its activity failed: CANCELLED with the message `cancelled` when the activity was
    cancelled, else FAILED with the cause's text and type. Whether it failed (False: it was cancelled)."""
    cause = err.cause
    if isinstance(cause, CancelledError):
        end(state, StepStatus.CANCELLED, cancelled)
        return False
    state.error = str(cause) if cause else str(err)
    state.error_type = getattr(cause, "type", None) or type(cause).__name__
    end(state, StepStatus.FAILED)
    return True


def observe(state: StepState, operation: Operation) -> None:
    state.message, state.handle, state.outputs = operation.message, operation.handle, operation.outputs


def end(state: StepState, status: StepStatus, message: str | None = None) -> None:
    # Not in a `finally`: when an evicted workflow's coroutines are closed, there is no workflow clock to read.
    state.status, state.ended_at = status, workflow.now()
    if message is not None:
        state.message = message


async def within(task: asyncio.Task[T], timeout: timedelta, summary: str) -> T:
    """`asyncio.wait_for(step, timeout)` whose timer the Temporal UI shows with `summary` instead of a bare number:
    asyncio's own timer cannot carry one, `workflow.wait_condition` can. On timeout the step is cancelled and
    TimeoutError raised, as wait_for does; when the caller is cancelled, so is the step."""
    if not workflow.patched(TIMER_SUMMARY_PATCH):
        return await asyncio.wait_for(task, timeout.total_seconds())
    try:
        await workflow.wait_condition(task.done, timeout=timeout, timeout_summary=summary)
    except TimeoutError:
        task.cancel()
        await asyncio.wait([task])  # let it record its cancellation, as wait_for waits for it
        raise
    except asyncio.CancelledError:
        task.cancel()
        raise
    return task.result()
