"""DrLifecycleWorkflow: one execution of a recovery plan in one mode.

Phases run in lifecycle order, layers in plan order, a layer's resources in parallel (bounded). Between any two
steps there is a boundary where pause, cancel and approval gates take effect. The workflow decides; activities touch
AWS. No I/O, clocks or randomness here: time comes from `workflow.now()`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, ChildWorkflowError

from workflows.hooks import LayerHooksMixin
from workflows.lifecycle_callback import LifecycleCallbackMixin
from workflows.lifecycle_control import LifecycleControlMixin
from workflows.lifecycle_wait import WaitTimerMixin
from workflows.notifications import NotificationsMixin
from workflows.steps import AWS_RETRY, START_TIMEOUT, end, record_failure, start_and_wait

with workflow.unsafe.imports_passed_through():
    from contracts.activities import (
        RESOURCE_RESOLVE,
        VALIDATE_PLAN,
        PlanIssue,
        ResourceCall,
    )
    from plans.drs import DRS_ACTION
    from plans.approvals import ApprovalPolicy
    from plans.model import Layer, Mode, Phase, Resource
    from plans.references import has_references
    from contracts.drs_recovery import DRS_WORKFLOW_TYPE, DrsRecoveryResult, drs_input_for
    from contracts.identity import LOAD_TRUST, TrustConfig
    from contracts.search_attributes import DR_INITIATOR, DR_MODE, DR_PHASE, DR_PLAN, DR_STATUS
    from workflows.rbac import START_ACTION
    from contracts.lifecycle import (
        WORKFLOW_TYPE,
        ControlRequest,
        Gate,
        LayerState,
        LifecycleInput,
        LifecycleResult,
        ResourceState,
        RunStatus,
        StepStatus,
    )
    from workflows.state import close, failed_resources, layer_rollup, new_state, phase_rollup, result_of



@workflow.defn(name=WORKFLOW_TYPE)
class DrLifecycleWorkflow(LifecycleControlMixin, LifecycleCallbackMixin, LayerHooksMixin, NotificationsMixin,
                          WaitTimerMixin):
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
        self._callback_begin()
        try:
            if await self._admit_initiator(input):
                await self._validate_and_run(input)
        except asyncio.CancelledError:
            # Cancelled through Temporal itself (`temporal workflow cancel`): record it, then let Temporal know.
            self._state.cancel_requested = True
            self._finish(RunStatus.CANCELLED, "cancelled through Temporal")
            await self._callback_end()
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._notify_outcome()
        await self._callback_end()
        result = result_of(self._state)
        if self._state.status is RunStatus.FAILED:
            raise ApplicationError(result.message, result.model_dump(mode="json"), type="DrRunFailed",
                                   non_retryable=True)
        return result

    async def _validate_and_run(self, input: LifecycleInput) -> None:
        issues = await workflow.execute_activity(
            VALIDATE_PLAN, input.plan, result_type=list[PlanIssue],
            start_to_close_timeout=timedelta(minutes=1), retry_policy=AWS_RETRY,
        )
        if issues:
            details = "; ".join(f"{i.where()}: {i.message}" for i in issues)
            self._finish(RunStatus.FAILED, f"plan rejected by the worker: {details}")
        else:
            await self._run_phases()

    async def _admit_initiator(self, input: LifecycleInput) -> bool:
        """The worker's trust configuration, then the initiator's token: nothing runs for a caller who may not
        start this mode. A denied start ends REJECTED, with the attempt in the audit trail."""
        self._state.trust = await workflow.execute_activity(
            LOAD_TRUST, result_type=TrustConfig, start_to_close_timeout=timedelta(minutes=1), retry_policy=AWS_RETRY)
        request = ControlRequest(actor=input.initiator, token=input.token)
        what = START_ACTION[input.mode].value
        principal = await self._authorize(request, START_ACTION[input.mode], what)
        if principal is None:
            self._finish(RunStatus.REJECTED, f"start denied: {self._last_denial}")
            return False
        self._state.initiator, self._state.initiator_roles = principal.subject, principal.roles
        workflow.upsert_search_attributes([DR_INITIATOR.value_set(principal.subject)])
        self._allowed_entry(what, principal, request, detail=f"plan {input.plan.name}")
        return True

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
            policy = phase_plan.approval_policy if phase_plan else None
            if policy and not await self._gate(phase.value, policy):
                phase_state.status = StepStatus.SKIPPED
                break
            for layer, layer_state in zip(self._input.plan.layers(phase), phase_state.layers, strict=True):
                if not await self._boundary():
                    break
                if layer_state.skipped_by:
                    continue
                if layer.approval_policy and not await self._gate(f"{phase.value}/{layer.name}",
                                                                  layer.approval_policy):
                    break
                await self._run_layer(phase, layer, layer_state)
                if layer_state.status is StepStatus.FAILED:
                    break
            phase_state.ended_at = workflow.now()
            phase_state.status = phase_rollup(phase_state)
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
        if layer.pre_hooks and not await self._run_layer_hooks(phase, layer, layer_state, "pre"):
            layer_state.status, layer_state.ended_at = layer_rollup(layer_state), workflow.now()
            return  # failed or cancelled: its resources never start (SKIPPED when the run closes)
        limit = self._input.options.max_parallel_resources or self._input.plan.defaults.max_parallel_resources
        slots = asyncio.Semaphore(limit)

        async def one(resource: Resource, resource_state: ResourceState) -> None:
            async with slots:
                if layer_state.status is StepStatus.FAILED or not await self._boundary() or resource_state.skipped_by:
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
        layer_state.status = layer_rollup(layer_state)
        if layer.post_hooks and layer_state.status in (StepStatus.SUCCEEDED, StepStatus.PARTIAL) \
                and await self._boundary():
            await self._run_layer_hooks(phase, layer, layer_state, "post")
            layer_state.ended_at = workflow.now()
            layer_state.status = layer_rollup(layer_state)

    async def _run_resource(self, phase: Phase, layer: Layer, resource: Resource, state: ResourceState) -> None:
        plan = self._input.plan
        account_key = plan.account_key_for(resource)
        call = ResourceCall(
            execution_id=self._state.workflow_id, plan_name=plan.name, mode=self._state.mode, phase=phase,
            layer=layer.name, resource=resource, account_key=account_key, account=plan.accounts[account_key],
            region=plan.region_for(resource), regions=plan.regions,
        )
        activity_id = f"{phase.value}/{layer.name}/{resource.name}"
        state.status = StepStatus.RUNNING
        state.started_at = workflow.now()
        if has_references(resource.parameters):
            resolved = await self._resolve_references(call, state, activity_id)
            if resolved is None:
                return
            resource, call = resolved, call.model_copy(update={"resource": resolved})
        if resource.action == DRS_ACTION:
            await self._run_drs(phase, resource, state, f"{self._state.workflow_id}/{activity_id}")
            return
        if self._waits_on_a_timer(resource):
            await self._wait_timer(resource, state)
            return
        try:
            await start_and_wait(call, state, activity_id, wait_timeout=layer.timeout)
            end(state, StepStatus.SUCCEEDED)
        except ActivityError as err:
            if record_failure(state, err, "cancelled; the AWS operation it started may still be running"):
                workflow.logger.warning("resource %s failed: %s", activity_id, state.error)
        except (asyncio.CancelledError, CancelledError):
            end(state, StepStatus.CANCELLED, "cancelled; the AWS operation it started may still be running")
            raise

    async def _resolve_references(self, call: ResourceCall, state: ResourceState, activity_id: str) -> Resource | None:
        """The resource with its `!Import` / `resolve:ssm:` values, read at start time (they may change between
        runs); None when they cannot be (the state says why). The values stay out of the status: only the
        activity's history holds them."""
        try:
            return await workflow.execute_activity(
                RESOURCE_RESOLVE, call, result_type=Resource, activity_id=f"{activity_id}/resolve",
                start_to_close_timeout=START_TIMEOUT, retry_policy=AWS_RETRY,
            )
        except ActivityError as err:
            if record_failure(state, err, "cancelled while resolving its references"):
                workflow.logger.warning("resource %s: references not resolved: %s", activity_id, state.error)
            return None
        except (asyncio.CancelledError, CancelledError):
            end(state, StepStatus.CANCELLED, "cancelled while resolving its references")
            raise

    async def _run_drs(self, phase: Phase, resource: Resource, state: ResourceState, child_id: str) -> None:
        """DRS recovery is a child workflow: waves, jobs and per-server state would overflow this history."""
        try:
            child_input = drs_input_for(self._input.plan, resource, phase, self._state.mode,
                                        self._state.workflow_id, self._state.started_at)
        except (ValueError, KeyError) as exc:  # the worker's plan check reports the details; never fail the task
            state.error, state.error_type = f"invalid drs.recovery parameters: {exc}", "InvalidParameters"
            end(state, StepStatus.FAILED)
            return
        state.outputs = {"childWorkflowId": child_id}
        try:
            result = await workflow.execute_child_workflow(
                DRS_WORKFLOW_TYPE, child_input, id=child_id, result_type=DrsRecoveryResult)
        except ChildWorkflowError as err:
            self._withdraw_child_gates(child_id)
            state.error, state.error_type = str(err.cause or err), "DrsRecoveryFailed"
            end(state, StepStatus.FAILED)
            return
        self._withdraw_child_gates(child_id)
        state.outputs.update(launched=result.launched, failed=result.failed, jobs=result.jobs,
                             waves={k: v.value for k, v in result.waves.items()})
        if result.status.succeeded:
            end(state, StepStatus.SUCCEEDED, result.message)
        else:
            state.error, state.error_type = result.message, "DrsRecoveryFailed"
            end(state, StepStatus.FAILED, result.message)

    # ---- boundaries and gates ----------------------------------------------------------------------------------

    async def _boundary(self) -> bool:
        """Wait here while paused; answer whether the run may go on."""
        await workflow.wait_condition(lambda: not self._state.paused or self._state.cancel_requested)
        return not self._state.cancel_requested and not self._state.status.finished

    async def _gate(self, gate_id: str, policy: ApprovalPolicy) -> bool:
        now = workflow.now()
        timeout = timedelta(minutes=policy.timeout_minutes) if policy.timeout_minutes else None
        gate = Gate(id=gate_id, requested_at=now, required=policy.approvals, roles=[r.value for r in policy.roles],
                    timeout_at=now + timeout if timeout else None, on_timeout=policy.on_timeout)
        self._state.gates.append(gate)
        self._refresh_status()
        self._publish()
        await self._notify_approval_needed(gate)
        try:
            await workflow.wait_condition(lambda: gate.decision is not None or self._state.cancel_requested,
                                          timeout=timeout, timeout_summary=f"approval gate {gate_id} times out")
        except asyncio.TimeoutError:
            return self._gate_timed_out(gate, policy.timeout_minutes or 0)
        if gate.decision == "rejected":
            self._finish(RunStatus.REJECTED, f"gate {gate_id} rejected by {gate.actor}: {gate.reason}")
            return False
        self._refresh_status()
        self._publish()
        return await self._boundary()

    def _gate_timed_out(self, gate: Gate, minutes: float) -> bool:
        gate.decision, gate.decided_at = "timed-out", workflow.now()
        waited = f"no decision within {minutes:.3g} min"  # as configured: the timer fires a little after it is due
        # Going on without the approvals is a drill's privilege: a real failover never proceeds unapproved.
        if gate.on_timeout == "continue" and self._input.mode is Mode.DRILL:
            gate.reason = f"{waited}; the plan lets a drill continue"
            self._refresh_status()
            self._publish()
            return True
        gate.reason = f"{waited}; the run is aborted"
        self._finish(RunStatus.REJECTED, f"gate {gate.id} timed out: {gate.reason}")
        return False

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
