"""DrLifecycleWorkflow: one execution of a recovery plan in one mode.

Phases run in lifecycle order, layers in plan order, a layer's resources in parallel (bounded). Between any two
steps there is a boundary where pause, cancel and approval gates take effect. The workflow decides; activities touch
AWS. No I/O, clocks or randomness here: time comes from `workflow.now()`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, ChildWorkflowError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.contract import (
        RESOURCE_START,
        RESOURCE_WAIT,
        VALIDATE_PLAN,
        Operation,
        PlanIssue,
        ResourceCall,
        WaitRequest,
    )
    from plans.drs import DRS_ACTION
    from plans.model import Layer, Phase, Resource
    from workflows.drs_models import DRS_WORKFLOW_TYPE, DrsRecoveryResult, drs_input_for
    from workflows.models import (
        WORKFLOW_TYPE,
        AuditEntry,
        ChildGate,
        ChildGateDecided,
        ControlRequest,
        ControlResult,
        Gate,
        LayerState,
        LifecycleInput,
        LifecycleResult,
        LifecycleState,
        ResourceState,
        RunStatus,
        StepStatus,
        WaveDecision,
    )
    from workflows.state import close, failed_resources, new_state, result_of, rollup

DR_PLAN = SearchAttributeKey.for_keyword("DrPlan")
DR_MODE = SearchAttributeKey.for_keyword("DrMode")
DR_PHASE = SearchAttributeKey.for_keyword("DrPhase")
DR_STATUS = SearchAttributeKey.for_keyword("DrStatus")
DR_INITIATOR = SearchAttributeKey.for_keyword("DrInitiator")
SEARCH_ATTRIBUTES = (DR_PLAN, DR_MODE, DR_PHASE, DR_STATUS, DR_INITIATOR)


def start_search_attributes(run_input: LifecycleInput) -> TypedSearchAttributes:
    """Set by the starter too, so a run is findable in the UI before its first workflow task."""
    return TypedSearchAttributes([
        SearchAttributePair(DR_PLAN, run_input.plan.name),
        SearchAttributePair(DR_MODE, run_input.mode.value),
        SearchAttributePair(DR_INITIATOR, run_input.initiator),
        SearchAttributePair(DR_PHASE, "PENDING"),
        SearchAttributePair(DR_STATUS, RunStatus.RUNNING.value),
    ])

START_TIMEOUT = timedelta(minutes=5)
WAIT_HEARTBEAT_TIMEOUT = timedelta(minutes=2)
AWS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                        maximum_interval=timedelta(minutes=1), maximum_attempts=8)


@workflow.defn(name=WORKFLOW_TYPE)
class DrLifecycleWorkflow:
    @workflow.init
    def __init__(self, input: LifecycleInput) -> None:
        self._input = input
        self._state = new_state(input, workflow.info().workflow_id, workflow.now())
        self._refresh_status()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._published: tuple[str, str] | None = None

    # ---- run ---------------------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: LifecycleInput) -> LifecycleResult:
        workflow.upsert_search_attributes([
            DR_PLAN.value_set(input.plan.name),
            DR_MODE.value_set(input.mode.value),
            DR_INITIATOR.value_set(input.initiator),
        ])
        self._publish()
        try:
            issues = await workflow.execute_activity(
                VALIDATE_PLAN, input.plan, result_type=list[PlanIssue],
                start_to_close_timeout=timedelta(minutes=1), retry_policy=AWS_RETRY,
            )
            if issues:
                details = "; ".join(f"{i.where()}: {i.message}" for i in issues)
                self._finish(RunStatus.FAILED, f"plan rejected by the worker: {details}")
            else:
                await self._run_phases()
        except asyncio.CancelledError:
            # Cancelled through Temporal itself (`temporal workflow cancel`): record it, then let Temporal know.
            self._state.cancel_requested = True
            self._finish(RunStatus.CANCELLED, "cancelled through Temporal")
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        result = result_of(self._state)
        if self._state.status is RunStatus.FAILED:
            raise ApplicationError(result.message, result.model_dump(mode="json"), type="DrRunFailed",
                                   non_retryable=True)
        return result

    async def _run_phases(self) -> None:
        for phase_state in self._state.phases:
            phase = phase_state.phase
            if not await self._boundary():
                break
            self._state.current_phase = phase
            phase_state.status = StepStatus.RUNNING
            phase_state.started_at = workflow.now()
            self._publish()
            phase_plan = self._input.plan.phases.get(phase)
            if phase_plan and phase_plan.approval_required and not await self._gate(phase.value):
                phase_state.status = StepStatus.SKIPPED
                break
            for layer, layer_state in zip(self._input.plan.layers(phase), phase_state.layers, strict=True):
                if not await self._boundary():
                    break
                if layer.approval_required and not await self._gate(f"{phase.value}/{layer.name}"):
                    break
                await self._run_layer(phase, layer, layer_state)
                if layer_state.status is StepStatus.FAILED:
                    break
            phase_state.ended_at = workflow.now()
            phase_state.status = rollup([layer.status for layer in phase_state.layers])
            if phase_state.status is StepStatus.FAILED:
                self._finish(RunStatus.FAILED, f"phase {phase.value} failed: {self._failure_summary()}")
                return
            if self._state.status.finished:
                return
        if self._state.cancel_requested:
            self._finish(RunStatus.CANCELLED, "cancelled by operator")
        elif not self._state.status.finished:
            self._finish(RunStatus.COMPLETED, "")

    async def _run_layer(self, phase: Phase, layer: Layer, layer_state: LayerState) -> None:
        layer_state.status = StepStatus.RUNNING
        layer_state.started_at = workflow.now()
        limit = self._input.options.max_parallel_resources or self._input.plan.defaults.max_parallel_resources
        slots = asyncio.Semaphore(limit)

        async def one(resource: Resource, resource_state: ResourceState) -> None:
            async with slots:
                if layer_state.status is StepStatus.FAILED or not await self._boundary():
                    return
                key = f"{phase.value}/{layer.name}/{resource.name}"
                task = asyncio.create_task(self._run_resource(phase, layer, resource, resource_state))
                self._tasks[key] = task
                try:
                    await asyncio.wait_for(task, timeout=layer.timeout_seconds)
                except asyncio.TimeoutError:
                    resource_state.status = StepStatus.FAILED
                    resource_state.error = f"did not finish within the layer timeout ({layer.timeout_seconds} s)"
                    resource_state.error_type = "LayerTimeout"
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # the whole run is being cancelled through Temporal
                    # Only this resource was stopped (forced cancel): its state already says so.
                finally:
                    self._tasks.pop(key, None)
                if resource_state.status is StepStatus.FAILED and not layer.continue_on_error:
                    # Siblings already running finish (their AWS operations are under way); none start.
                    layer_state.status = StepStatus.FAILED

        await asyncio.gather(*(one(r, s) for r, s in zip(layer.resources, layer_state.resources, strict=True)))
        layer_state.ended_at = workflow.now()
        layer_state.status = rollup([r.status for r in layer_state.resources],
                                    tolerate_failures=layer.continue_on_error)

    async def _run_resource(self, phase: Phase, layer: Layer, resource: Resource, state: ResourceState) -> None:
        plan = self._input.plan
        account_key = plan.account_key_for(resource)
        call = ResourceCall(
            execution_id=self._state.workflow_id, plan_name=plan.name, mode=self._input.mode, phase=phase,
            layer=layer.name, resource=resource, account_key=account_key, account=plan.accounts[account_key],
            region=plan.region_for(resource), regions=plan.regions,
        )
        activity_id = f"{phase.value}/{layer.name}/{resource.name}"
        state.status = StepStatus.RUNNING
        state.started_at = workflow.now()
        if resource.action == DRS_ACTION:
            await self._run_drs(phase, resource, state, f"{self._state.workflow_id}/{activity_id}")
            return
        try:
            operation = await workflow.execute_activity(
                RESOURCE_START, call, result_type=Operation, activity_id=f"{activity_id}/start",
                start_to_close_timeout=START_TIMEOUT, retry_policy=AWS_RETRY,
            )
            self._observe(state, operation)
            while not operation.done:
                operation = await workflow.execute_activity(
                    RESOURCE_WAIT, WaitRequest(call=call, operation=operation), result_type=Operation,
                    activity_id=f"{activity_id}/wait", start_to_close_timeout=layer.timeout,
                    heartbeat_timeout=WAIT_HEARTBEAT_TIMEOUT, retry_policy=AWS_RETRY,
                )
                self._observe(state, operation)
            self._end(state, StepStatus.SUCCEEDED)
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, CancelledError):
                self._end(state, StepStatus.CANCELLED, "cancelled; the AWS operation it started may still be running")
                return
            state.error = str(cause) if cause else str(err)
            state.error_type = getattr(cause, "type", None) or type(cause).__name__
            self._end(state, StepStatus.FAILED)
            workflow.logger.warning("resource %s failed: %s", activity_id, state.error)
        except (asyncio.CancelledError, CancelledError):
            self._end(state, StepStatus.CANCELLED, "cancelled; the AWS operation it started may still be running")
            raise

    async def _run_drs(self, phase: Phase, resource: Resource, state: ResourceState, child_id: str) -> None:
        """DRS recovery is a child workflow: waves, jobs and per-server state would overflow this history."""
        try:
            child_input = drs_input_for(self._input.plan, resource, phase, self._input.mode,
                                        self._state.workflow_id, self._state.started_at)
        except (ValueError, KeyError) as exc:  # the worker's plan check reports the details; never fail the task
            state.error, state.error_type = f"invalid drs.recovery parameters: {exc}", "InvalidParameters"
            self._end(state, StepStatus.FAILED)
            return
        state.outputs = {"childWorkflowId": child_id}
        try:
            result = await workflow.execute_child_workflow(
                DRS_WORKFLOW_TYPE, child_input, id=child_id, result_type=DrsRecoveryResult)
        except ChildWorkflowError as err:
            self._withdraw_child_gates(child_id)
            state.error, state.error_type = str(err.cause or err), "DrsRecoveryFailed"
            self._end(state, StepStatus.FAILED)
            return
        self._withdraw_child_gates(child_id)
        state.outputs.update(launched=result.launched, failed=result.failed, jobs=result.jobs,
                             waves={k: v.value for k, v in result.waves.items()})
        if result.status.succeeded:
            self._end(state, StepStatus.SUCCEEDED, result.message)
        else:
            state.error, state.error_type = result.message, "DrsRecoveryFailed"
            self._end(state, StepStatus.FAILED, result.message)

    @staticmethod
    def _end(state: ResourceState, status: StepStatus, message: str | None = None) -> None:
        # Not in a `finally`: when an evicted workflow's coroutines are closed, there is no workflow clock to read.
        state.status = status
        state.ended_at = workflow.now()
        if message is not None:
            state.message = message

    @staticmethod
    def _observe(state: ResourceState, operation: Operation) -> None:
        state.message = operation.message
        state.handle = operation.handle
        state.outputs = operation.outputs

    # ---- boundaries and gates ----------------------------------------------------------------------------------

    async def _boundary(self) -> bool:
        """Wait here while paused; answer whether the run may go on."""
        await workflow.wait_condition(lambda: not self._state.paused or self._state.cancel_requested)
        return not self._state.cancel_requested and not self._state.status.finished

    async def _gate(self, gate_id: str) -> bool:
        gate = Gate(id=gate_id, requested_at=workflow.now())
        self._state.gates.append(gate)
        self._refresh_status()
        self._publish()
        await workflow.wait_condition(lambda: gate.decision is not None or self._state.cancel_requested)
        if gate.decision == "rejected":
            self._finish(RunStatus.REJECTED, f"gate {gate_id} rejected by {gate.actor}: {gate.reason}")
            return False
        self._refresh_status()
        self._publish()
        return await self._boundary()

    # ---- messages ----------------------------------------------------------------------------------------------

    @workflow.query(name="status")
    def status(self) -> LifecycleState:
        return self._state

    @workflow.update(name="approve")
    async def approve(self, request: ControlRequest) -> ControlResult:
        return await self._decide(request, "approve", "approved")

    @approve.validator
    def _check_approve(self, request: ControlRequest) -> None:
        self._require_gate(request)

    @workflow.update(name="reject")
    async def reject(self, request: ControlRequest) -> ControlResult:
        return await self._decide(request, "reject", "rejected")

    @reject.validator
    def _check_reject(self, request: ControlRequest) -> None:
        self._require_gate(request)
        if not request.reason.strip():
            raise ValueError("a rejection needs a reason")

    @workflow.update(name="pause")
    def pause(self, request: ControlRequest) -> ControlResult:
        self._state.paused = True
        self._refresh_status()
        return self._accepted(request, "pause", "paused: running operations finish, nothing new starts")

    @pause.validator
    def _check_pause(self, request: ControlRequest) -> None:
        self._require_active()
        if self._state.paused:
            raise ValueError("the run is already paused")

    @workflow.update(name="resume")
    def resume(self, request: ControlRequest) -> ControlResult:
        self._state.paused = False
        self._refresh_status()
        return self._accepted(request, "resume", "resumed")

    @resume.validator
    def _check_resume(self, request: ControlRequest) -> None:
        self._require_active()
        if not self._state.paused:
            raise ValueError("the run is not paused")

    @workflow.update(name="cancel")
    async def cancel(self, request: ControlRequest) -> ControlResult:
        self._state.cancel_requested = True
        if request.force:
            for task in self._tasks.values():
                task.cancel()
        note = "in-flight operations are being stopped" if request.force else "in-flight operations finish first"
        answer = self._accepted(request, "cancel", f"cancelling: nothing new starts; {note}")
        # A DRS wave waiting for approval would wait for ever: a cancel answers it with a rejection.
        for gate in [g for g in self._state.gates if g.decision is None and g.child_workflow_id]:
            gate.decision, gate.actor, gate.decided_at = "rejected", request.actor, workflow.now()
            gate.reason = f"run cancelled: {request.reason}".rstrip(": ")
            try:
                await workflow.get_external_workflow_handle(gate.child_workflow_id).signal(
                    "reject_wave", WaveDecision(wave=gate.wave or "", actor=request.actor, reason=gate.reason))
            except FailureError as err:  # the child ended meanwhile: nothing waits on it
                workflow.logger.warning("gate %s: could not signal %s: %s", gate.id, gate.child_workflow_id, err)
        self._refresh_status()
        return answer

    @cancel.validator
    def _check_cancel(self, request: ControlRequest) -> None:
        self._require_active()
        if self._state.cancel_requested and not request.force:
            raise ValueError("cancel was already requested (use force to stop in-flight operations)")

    async def _decide(self, request: ControlRequest, action: str, decision: str) -> ControlResult:
        gate = self._requested_gate(request)
        if gate is None:  # decided by an update accepted in the same workflow task as this one
            raise ApplicationError("no approval is pending", type="GateNotPending")
        gate.decision, gate.actor, gate.reason, gate.decided_at = decision, request.actor, request.reason, workflow.now()
        if gate.child_workflow_id is None:
            # A phase/layer gate: `_gate` goes on (or finishes the run as REJECTED).
            return self._accepted(request, action, f"gate {gate.id} {decision}")
        # A DRS wave's gate: the child starts the wave, or ends it FAILED (its dependants are skipped and the
        # resource fails the run the usual way). Recorded before telling the child, so no second decision races it.
        self._refresh_status()
        detail = f"wave {gate.wave} of {gate.child_workflow_id}"
        answer = self._accepted(request, action, f"gate {gate.id} {decision}", detail=detail)
        signal = "approve_wave" if decision == "approved" else "reject_wave"
        try:
            await workflow.get_external_workflow_handle(gate.child_workflow_id).signal(
                signal, WaveDecision(wave=gate.wave or "", actor=request.actor, reason=request.reason))
        except FailureError as err:  # the child has ended meanwhile: the decision stays recorded, nothing waits
            workflow.logger.warning("gate %s: could not signal %s: %s", gate.id, gate.child_workflow_id, err)
            answer.message += f" (the DRS child could not be told: {err})"
        return answer

    @workflow.signal(name="child_gate")
    def child_gate(self, signal: ChildGate) -> None:
        """A DRS child's wave waits for approval: it becomes a gate of this run. Repeats are ignored."""
        if self._state.status.finished or any(
                g.decision is None and g.id == signal.gate_id and g.child_workflow_id == signal.child_workflow_id
                for g in self._state.gates):
            return
        self._state.gates.append(Gate(id=signal.gate_id, requested_at=workflow.now(),
                                      child_workflow_id=signal.child_workflow_id, wave=signal.wave))
        self._refresh_status()
        self._publish()

    @workflow.signal(name="child_gate_decided")
    def child_gate_decided(self, signal: ChildGateDecided) -> None:
        """An operator decided a wave at the DRS child itself: the gate here is decided too (once)."""
        gate = self._child_gate(signal.child_workflow_id, signal.wave)
        if gate is None:
            return
        gate.decision, gate.actor, gate.reason, gate.decided_at = (signal.decision, signal.actor, signal.reason,
                                                                   workflow.now())
        action = "approve" if signal.decision == "approved" else "reject"
        self._state.audit.append(AuditEntry(
            at=workflow.now(), actor=signal.actor, action=action, accepted=True, reason=signal.reason,
            detail=f"gate {gate.id} {signal.decision} at the DRS child {signal.child_workflow_id}"))
        self._refresh_status()
        self._publish()

    def _child_gate(self, child_workflow_id: str, wave: str | None = None) -> Gate | None:
        return next((g for g in self._state.gates if g.decision is None and g.child_workflow_id == child_workflow_id
                     and wave in (None, g.wave)), None)

    def _withdraw_child_gates(self, child_workflow_id: str) -> None:
        """The DRS child has ended: nothing waits for its undecided gates any more."""
        while (gate := self._child_gate(child_workflow_id)) is not None:
            gate.decision, gate.decided_at = "withdrawn", workflow.now()
        self._refresh_status()
        self._publish()

    def _requested_gate(self, request: ControlRequest) -> Gate | None:
        """The gate an approve/reject decides: the one named, else the first pending."""
        if request.gate is None:
            return self._state.pending_gate()
        return next((g for g in self._state.gates if g.decision is None and g.id == request.gate), None)

    def _require_active(self) -> None:
        if self._state.status.finished:
            raise ValueError(f"the run has ended ({self._state.status.value})")

    def _require_gate(self, request: ControlRequest) -> None:
        self._require_active()
        pending = [g.id for g in self._state.gates if g.decision is None]
        if not pending:
            raise ValueError("no approval is pending")
        if self._requested_gate(request) is None:
            raise ValueError(f"gate {request.gate!r} is not pending (pending: {', '.join(map(repr, pending))})")

    def _accepted(self, request: ControlRequest, action: str, message: str, detail: str = "") -> ControlResult:
        self._state.audit.append(AuditEntry(at=workflow.now(), actor=request.actor, action=action, accepted=True,
                                            reason=request.reason, detail=detail))
        self._publish()
        return ControlResult(accepted=True, status=self._state.status, message=message)

    # ---- state helpers -----------------------------------------------------------------------------------------

    def _refresh_status(self) -> None:
        if self._state.status.finished:
            return
        if self._state.pending_gate() is not None:
            self._state.status = RunStatus.AWAITING_APPROVAL
        elif self._state.paused:
            self._state.status = RunStatus.PAUSED
        else:
            self._state.status = RunStatus.RUNNING

    def _publish(self) -> None:
        """Upsert DrPhase/DrStatus when they changed, so the Temporal UI can filter runs by where they are."""
        phase = self._state.current_phase.value if self._state.current_phase else "PENDING"
        current = (phase, self._state.status.value)
        if current != self._published:
            workflow.upsert_search_attributes([DR_PHASE.value_set(current[0]), DR_STATUS.value_set(current[1])])
            self._published = current

    def _finish(self, status: RunStatus, message: str) -> None:
        if not self._state.status.finished:
            close(self._state, status, message, workflow.now())
            self._publish()

    def _failure_summary(self) -> str:
        return ", ".join(failed_resources(self._state)) or "see status"
