"""The Step Functions callback of DrLifecycleWorkflow: heartbeats while the run is in progress, one final answer.

A plain object the workflow owns, over the run's state and input (same determinism rules). `run` calls `begin` first
and `end` once the run has its final status, on every path (completed, failed, rejected, cancelled).

History cost: each heartbeat is a timer plus a local activity, ~6 events; the loop stops when the run ends, when Step
Functions says the token is gone, or after MAX_HEARTBEATS. The final send is one ordinary activity: it is recorded
in history, so a worker crash retries that same activity and never sends a second, different answer.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.callback import (
        CALLBACK_SEND,
        CAUSE_MAX,
        MAX_HEARTBEATS,
        OUTPUT_MAX_BYTES,
        CallbackReply,
        CallbackRequest,
        CallbackState,
        CallbackStatus,
        failure_error,
        fit_json,
    )
    from contracts.lifecycle import LifecycleInput, LifecycleState, RunStatus, StepStatus
    from workflows.state import result_of

# Heartbeats are best effort and the next one comes soon: a short try, no long retry chain holding the loop.
HEARTBEAT_TIMEOUT = timedelta(seconds=20)
HEARTBEAT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2)
# The final answer is worth waiting for (~10 min of retries), but a caller that stays unreachable must not keep the
# run open for ever: then it is recorded UNDELIVERED.
FINAL_TIMEOUT = timedelta(seconds=30)
FINAL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                          maximum_interval=timedelta(minutes=1), maximum_attempts=14)


class StepFunctionsCallback:
    def __init__(self, state: LifecycleState, input: LifecycleInput) -> None:
        self._state, self._input = state, input
        self._heartbeat_task: asyncio.Task[None] | None = None

    def begin(self) -> None:
        options = self._input.options.callback
        if options is None:
            return
        self._state.callback = CallbackState(token=options.token_hint(), region=options.region,
                                             account=options.account)
        if options.account is not None and options.account not in self._input.plan.accounts:
            # Validated by drctl; a raw `temporal workflow start` may still get it wrong. Nothing can be sent.
            self._state.callback.status = CallbackStatus.UNDELIVERED
            self._state.callback.detail = f"account {options.account!r} is not an account of the plan"
            return
        if options.heartbeat_seconds:
            self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(options.heartbeat_seconds))

    async def _heartbeat_loop(self, seconds: int) -> None:
        state = self._state.callback
        assert state is not None
        while state.heartbeats < MAX_HEARTBEATS:
            try:
                await workflow.wait_condition(lambda: self._state.status.finished, timeout=timedelta(seconds=seconds),
                                              timeout_summary=f"next Step Functions heartbeat ({seconds} s)")
                return
            except asyncio.TimeoutError:
                pass
            try:
                reply = await workflow.execute_local_activity(
                    CALLBACK_SEND, self._callback_request("heartbeat"), result_type=CallbackReply,
                    start_to_close_timeout=HEARTBEAT_TIMEOUT, retry_policy=HEARTBEAT_RETRY,
                    summary="Step Functions: heartbeat to the task that started this run")
            except ActivityError as err:
                state.heartbeat_error = str(err.cause or err)
                continue
            if not reply.accepted:
                state.status = CallbackStatus.CALLER_GONE
                state.detail = f"heartbeat: {reply.code}: {reply.message}"
                return
            state.heartbeats += 1
            state.last_heartbeat_at = workflow.now()
            state.heartbeat_error = None
        state.heartbeat_error = f"stopped after {MAX_HEARTBEATS} heartbeats to keep the history bounded"

    async def end(self) -> None:
        """Answer the caller once, with the run's final status. Never raises: the run's own outcome stands."""
        state = self._state.callback
        if state is None:
            return
        if self._heartbeat_task is not None and not self._heartbeat_task.done():
            self._heartbeat_task.cancel()  # an in-flight heartbeat is moot once the answer goes
            try:
                await self._heartbeat_task
            except (asyncio.CancelledError, ActivityError):
                pass
        if state.status is not CallbackStatus.PENDING:
            return  # the caller is gone, or the options could not be used
        request = self._final_request()
        state.outcome = "success" if request.kind == "success" else "failure"
        state.error = request.error or None
        try:
            reply = await workflow.execute_activity(
                CALLBACK_SEND, request, result_type=CallbackReply, activity_id="callback/final",
                start_to_close_timeout=FINAL_TIMEOUT, retry_policy=FINAL_RETRY,
                summary=f"Step Functions: send the run's {state.outcome} to the task that started it")
        except ActivityError as err:
            state.status = CallbackStatus.UNDELIVERED
            state.detail = str(err.cause or err)
            workflow.logger.warning("step functions callback %s undelivered: %s", state.token, state.detail)
            return
        state.sent_at = workflow.now()
        if reply.accepted:
            state.status = CallbackStatus.DELIVERED
        elif reply.attempt > 1:
            # An earlier attempt may have got through before its worker died; Step Functions closes a token at its
            # first answer, so either way the caller has (or will never take) an answer.
            state.status = CallbackStatus.CLOSED
            state.detail = f"{reply.code}: {reply.message}"
        else:
            state.status = CallbackStatus.CALLER_GONE
            state.detail = f"{reply.code}: {reply.message}"

    def _final_request(self) -> CallbackRequest:
        result = result_of(self._state)
        summary: dict[str, Any] = {
            "workflowId": result.workflow_id,
            "plan": self._state.plan_name,
            "mode": self._state.mode.value,
            "status": result.status.value,
            "message": result.message,
            "startedAt": self._state.started_at.isoformat(),
            "endedAt": self._state.ended_at.isoformat() if self._state.ended_at else None,
            "phaseDurationsSeconds": result.phase_durations_seconds,
            "resources": self._resource_counts(),
            "failedResources": result.failed_resources,
            "partialResources": result.partial_resources,
        }
        # PARTIAL is a success too: the run did all it was asked within the plan's policy (`status` tells them apart).
        if result.status in (RunStatus.COMPLETED, RunStatus.PARTIAL):
            return self._callback_request("success", output=fit_json(summary, OUTPUT_MAX_BYTES))
        return self._callback_request("failure", error=failure_error(result.status.value),
                                      cause=fit_json(summary, CAUSE_MAX))

    def _resource_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for phase in self._state.phases:
            for layer in phase.layers:
                for resource in layer.resources:
                    counts[resource.status.value] = counts.get(resource.status.value, 0) + 1
        return {s.value: counts[s.value] for s in StepStatus if s.value in counts}

    def _callback_request(self, kind: str, **fields: str) -> CallbackRequest:
        options = self._input.options.callback
        assert options is not None
        account = self._input.plan.accounts[options.account] if options.account else None
        return CallbackRequest(kind=kind, options=options, account=account, **fields)
