"""DrLifecycleWorkflow: one execution of a recovery plan in one mode.

Phases run in lifecycle order, layers in plan order, a layer's resources in parallel (bounded). Between any two
steps there is a boundary where pause, cancel and approval gates take effect. The workflow decides; activities touch
AWS. No I/O, clocks or randomness here: time comes from `workflow.now()`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, ChildWorkflowError, FailureError

from workflows.claims import claim_plan
from workflows.governance import Governance
from workflows.hooks import run_layer_hooks
from workflows.lifecycle_callback import StepFunctionsCallback
from workflows.lifecycle_cleanup import AfterFailure, artefacts_of, jobs_since
from workflows.lifecycle_control import Control
from workflows.lifecycle_gates import Gates
from workflows.lifecycle_messages import NO_INPUT, Messages, decode, signal_handler, update_handler, validator
from workflows.lifecycle_status import StatusBoard
from workflows.lifecycle_wait import wait_timer, waits_on_a_timer
from workflows.notifications import Notifier
from workflows.steps import AWS_RETRY, START_TIMEOUT, end, record_failure, start_and_wait, within
from workflows.run_details import step_summary
from workflows.timeouts import heartbeat, sized

with workflow.unsafe.imports_passed_through():
    from contracts.activities import RESOURCE_RESOLVE, VALIDATE_PLAN, PlanIssue, ResourceCall
    from plans.drs import DRS_ACTION
    from plans.model import Layer, Phase, Resource
    from plans.references import has_references
    from contracts.drs_recovery import DRS_WORKFLOW_TYPE, DrsRecoveryResult, WaveStatus, drs_input_for
    from contracts.run_metadata import run_memo
    from contracts.identity import LOAD_TRUST, TrustConfig
    from contracts.search_attributes import DR_INITIATOR, DR_MODE, DR_PLAN, DR_STATUS
    from workflows.rbac import START_ACTION
    from contracts.lifecycle import (
        INVALID_INPUT,
        WORKFLOW_TYPE,
        AuditEntry,
        ChildGate,
        ControlRequest,
        LayerState,
        LifecycleInput,
        LifecycleResult,
        LifecycleState,
        ResourceState,
        RunStatus,
        StepStatus,
    )
    from workflows.state import layer_rollup, new_state, partial_message, phase_rollup, result_of, within_policy


# The run's memo (plan, its hash, mode), shown by the Temporal UI and `temporal workflow describe`.
RUN_MEMO_PATCH = "run-memo"
# A run in which something failed within policy ends PARTIAL (and a DRS recovery whose waves ended PARTIAL is a PARTIAL
# resource) where it used to end COMPLETED.
RUN_PARTIAL_PATCH = "run-partial"


@workflow.defn(name=WORKFLOW_TYPE)
class DrLifecycleWorkflow:
    """Runs the phases, layers and resources, and owns the message handlers. What the messages do (Messages, then
    Control), who may do what (Governance), gates, notifications and the Step Functions callback are plain objects
    over the run's one state model, made here with what each needs."""

    @workflow.init
    def __init__(self, raw: RawValue = NO_INPUT) -> None:
        # The input is decoded here, not by the SDK: input that does not fit fails the run at once (see run), where
        # the SDK's own decoding failure would retry the workflow task for ever.
        try:
            input = decode(raw, LifecycleInput, "the run's input")
        except ApplicationError as err:
            self._messages = Messages(err.message)
            return
        self._messages = Messages(None)
        self._input = input
        self._state = new_state(input, workflow.info().workflow_id, workflow.now())
        self._board = StatusBoard(self._state)
        self._board.refresh()
        self._tasks: dict[str, asyncio.Task[None]] = {}  # running steps, by key: a forced cancel stops them
        self._governance = Governance(self._state, input.mode, workflow.now, workflow.logger)
        self._notifier = Notifier(self._state, input.plan, workflow.execute_activity, workflow.now)
        self._gates = Gates(self._state, input.mode, self._board, self._notifier)
        self._control = Control(self._state, self._governance, self._board, self._notifier, self._tasks)
        self._callback = StepFunctionsCallback(self._state, input)
        self._ending = AfterFailure(self._state, input, self._gates, self._board, self._run_layer)
        self._messages.bind(self._state, self._governance, self._control)

    # ---- run ---------------------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, raw: RawValue = NO_INPUT) -> LifecycleResult:
        if self._messages.input_error is not None:
            workflow.upsert_search_attributes([DR_STATUS.value_set(RunStatus.FAILED.value)])
            raise ApplicationError(self._messages.input_error, type=INVALID_INPUT, non_retryable=True)
        input = self._input
        workflow.upsert_search_attributes([
            DR_PLAN.value_set(input.plan.name),
            DR_MODE.value_set(input.mode.value),
            DR_INITIATOR.value_set(input.initiator),
        ])
        if workflow.patched(RUN_MEMO_PATCH):  # runs recorded before the memo existed replay without it
            workflow.upsert_memo(run_memo(input))
        self._board.publish()
        self._callback.begin()
        try:
            if await self._admit_initiator(input):
                await self._validate_and_run(input)
        except asyncio.CancelledError:
            # Cancelled through Temporal itself (`temporal workflow cancel`): record it, then let Temporal know.
            self._state.cancel_requested = True
            await self._ending.end(RunStatus.CANCELLED, "cancelled through Temporal")
            await self._callback.end()
            raise
        except FailureError as err:
            # An activity the run cannot do without failed for good (the worker's identity configuration, its plan
            # check): the run ends FAILED with DrStatus saying so, not stuck at RUNNING. Runs recorded before this
            # failed the workflow directly, and replay the same way.
            if isinstance(err.__cause__, CancelledError) or not workflow.patched("failure-closes-status"):
                raise
            self._board.finish(RunStatus.FAILED, f"the run could not go on: {err.__cause__ or err}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._notifier.outcome()
        await self._callback.end()
        result = result_of(self._state)
        if self._state.status is RunStatus.FAILED:
            raise ApplicationError(result.message, result.model_dump(mode="json"), type="DrRunFailed",
                                   non_retryable=True)
        return result

    async def _validate_and_run(self, input: LifecycleInput) -> None:
        issues = await workflow.execute_activity(
            VALIDATE_PLAN, input.plan, result_type=list[PlanIssue],
            start_to_close_timeout=sized(timedelta(seconds=30), timedelta(minutes=1)), heartbeat_timeout=heartbeat(),
            retry_policy=AWS_RETRY,
            summary=f"check plan {input.plan.name} against the worker's modules and accounts",
        )
        if issues:
            details = "; ".join(f"{i.where()}: {i.message}" for i in issues)
            self._board.finish(RunStatus.FAILED, f"plan rejected by the worker: {details}")
        elif refusal := await claim_plan(self._state.workflow_id, input.mode, input.plan.name):
            self._board.finish(RunStatus.REJECTED, refusal)
        else:
            await self._run_phases()

    async def _admit_initiator(self, input: LifecycleInput) -> bool:
        """The worker's trust configuration, then the initiator's token: nothing runs for a caller who may not
        start this mode. A denied start ends REJECTED, with the attempt in the audit trail."""
        self._state.trust = await workflow.execute_activity(
            LOAD_TRUST, result_type=TrustConfig,
            start_to_close_timeout=sized(timedelta(seconds=30), timedelta(minutes=1)), heartbeat_timeout=heartbeat(),
            retry_policy=AWS_RETRY,
            summary="load the worker's identity trust configuration, to check who started the run")
        request = ControlRequest(actor=input.initiator, token=input.token)
        what = START_ACTION[input.mode].value
        principal = await self._governance.authorize(request, START_ACTION[input.mode], what)
        if principal is None:
            self._board.finish(RunStatus.REJECTED, f"start denied: {self._governance.last_denial}")
            return False
        self._state.initiator, self._state.initiator_roles = principal.subject, principal.roles
        workflow.upsert_search_attributes([DR_INITIATOR.value_set(principal.subject)])
        self._governance.allow(what, principal, request, detail=f"plan {input.plan.name}")
        return True

    async def _run_phases(self) -> None:
        for phase_state in self._state.phases:
            phase = phase_state.phase
            if not await self._gates.boundary():
                break
            self._state.current_phase = phase
            phase_state.status = StepStatus.RUNNING
            phase_state.started_at = workflow.now()
            self._board.publish()
            phase_plan = self._input.plan.phases.get(phase)
            policy = phase_plan.approval_policy if phase_plan else None
            if policy and not await self._gates.passed(phase.value, policy):
                phase_state.status = StepStatus.SKIPPED
                break
            for layer, layer_state in zip(self._input.plan.layers(phase), phase_state.layers, strict=True):
                if not await self._gates.boundary():
                    break
                if layer_state.skipped_by:
                    continue
                if layer.approval_policy and not await self._gates.passed(f"{phase.value}/{layer.name}",
                                                                          layer.approval_policy):
                    break
                await self._run_layer(phase, layer, layer_state)
                if layer_state.status is StepStatus.FAILED:
                    break
            phase_state.ended_at = workflow.now()
            phase_state.status = phase_rollup(phase_state)
            if phase_state.status is StepStatus.FAILED:
                await self._ending.end(RunStatus.FAILED, f"phase {phase.value} failed: {self._board.failure_summary()}")
                return
            if self._state.status.finished:
                return
        if self._state.cancel_requested:
            await self._ending.end(RunStatus.CANCELLED, "cancelled by operator")
        elif not self._state.status.finished:
            # Something failed within the plan's policy: PARTIAL, naming it. Runs recorded before ended COMPLETED.
            if (tolerated := within_policy(self._state)) and workflow.patched(RUN_PARTIAL_PATCH):
                self._board.finish(RunStatus.PARTIAL, partial_message(self._state, tolerated))
            else:
                self._board.finish(RunStatus.COMPLETED, "")

    async def _run_layer(self, phase: Phase, layer: Layer, layer_state: LayerState) -> None:
        layer_state.status = StepStatus.RUNNING
        layer_state.started_at = workflow.now()
        self._board.show()
        if layer.pre_hooks and not await run_layer_hooks(self._input.plan, self._state, phase, layer, layer_state,
                                                         "pre", self._tasks):
            layer_state.status, layer_state.ended_at = layer_rollup(layer_state), workflow.now()
            return  # failed or cancelled: its resources never start (SKIPPED when the run closes)
        limit = self._input.options.max_parallel_resources or self._input.plan.defaults.max_parallel_resources
        slots = asyncio.Semaphore(limit)

        async def one(resource: Resource, resource_state: ResourceState) -> None:
            async with slots:
                if layer_state.status is StepStatus.FAILED or not await self._gates.boundary() \
                        or resource_state.skipped_by:
                    return
                key = f"{phase.value}/{layer.name}/{resource.name}"
                task = asyncio.create_task(self._run_resource(phase, layer, resource, resource_state))
                self._tasks[key] = task
                try:
                    await within(task, layer.timeout, f"{phase.value} / {layer.name} / {resource.name}: "
                                                      f"layer timeout ({layer.timeout_seconds} s)")
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
                and await self._gates.boundary():
            await run_layer_hooks(self._input.plan, self._state, phase, layer, layer_state, "post", self._tasks)
            layer_state.ended_at = workflow.now()
            layer_state.status = layer_rollup(layer_state)

    async def _run_resource(self, phase: Phase, layer: Layer, resource: Resource, state: ResourceState) -> None:
        plan = self._input.plan
        account_key = plan.account_key_for(resource)
        call = ResourceCall(
            execution_id=artefacts_of(self._input, self._state), plan_name=plan.name, mode=self._state.mode,
            phase=phase, layer=layer.name, resource=resource, account_key=account_key,
            account=plan.accounts[account_key], region=plan.region_for(resource), regions=plan.regions,
        )
        activity_id = f"{phase.value}/{layer.name}/{resource.name}"
        state.status = StepStatus.RUNNING
        state.started_at = workflow.now()
        self._board.show()
        try:
            await self._run_step(phase, layer, resource, state, call, activity_id)
        except GeneratorExit:  # the worker evicts the run and closes its coroutines: no workflow left to show in
            raise
        except BaseException:
            self._board.show()
            raise
        self._board.show()

    async def _run_step(self, phase: Phase, layer: Layer, resource: Resource, state: ResourceState,
                        call: ResourceCall, activity_id: str) -> None:
        if has_references(resource.parameters):
            resolved = await self._resolve_references(call, state, activity_id)
            if resolved is None:
                return
            resource, call = resolved, call.model_copy(update={"resource": resolved})
        if resource.action == DRS_ACTION:
            await self._run_drs(phase, resource, state, f"{self._state.workflow_id}/{activity_id}")
            return
        if self._waits_on_a_timer(resource):
            await wait_timer(resource, state)
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
                start_to_close_timeout=sized(timedelta(minutes=2), START_TIMEOUT), heartbeat_timeout=heartbeat(),
                retry_policy=AWS_RETRY,
                summary=f"{step_summary(call, activity_id)}: resolve its !Import / resolve:ssm: references",
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
                                        artefacts_of(self._input, self._state), jobs_since(self._input, self._state))
        except (ValueError, KeyError) as exc:  # the worker's plan check reports the details; never fail the task
            state.error, state.error_type = f"invalid drs.recovery parameters: {exc}", "InvalidParameters"
            end(state, StepStatus.FAILED)
            return
        state.outputs = {"childWorkflowId": child_id}
        try:
            result = await workflow.execute_child_workflow(
                DRS_WORKFLOW_TYPE, child_input, id=child_id, result_type=DrsRecoveryResult,
                static_summary=f"DRS {phase.value} of {resource.name} for {self._state.mode.value} of "
                               f"{self._state.plan_name}: {len(child_input.params.waves)} wave(s)",
                static_details=f"Part of run `{self._state.workflow_id}`; its waves, servers and DRS jobs are here.")
        except ChildWorkflowError as err:
            self._control.withdraw_child_gates(child_id)
            # A cancel (forced, or through Temporal) stopped it: CANCELLED, so the run ends CANCELLED, not FAILED.
            if isinstance(err.cause, CancelledError) and workflow.patched("drs-child-cancel-is-cancel"):
                return end(state, StepStatus.CANCELLED, "cancelled; the DRS jobs it started may still be running")
            state.error, state.error_type = str(err.cause or err), "DrsRecoveryFailed"
            return end(state, StepStatus.FAILED)
        self._control.withdraw_child_gates(child_id)
        state.outputs.update(launched=result.launched, failed=result.failed, jobs=result.jobs,
                             waves={k: v.value for k, v in result.waves.items()})
        if result.status is WaveStatus.PARTIAL and workflow.patched(RUN_PARTIAL_PATCH):
            # Optional servers (or a wave hook with onFailure continue) failed within policy: said, never hidden.
            state.error = "; ".join(result.within_policy) or result.message
            state.error_type = "FailedWithinPolicy"
            end(state, StepStatus.PARTIAL, result.message)
        elif result.status.succeeded:
            end(state, StepStatus.SUCCEEDED, result.message)
        else:
            state.error, state.error_type = result.message, "DrsRecoveryFailed"
            end(state, StepStatus.FAILED, result.message)

    def _waits_on_a_timer(self, resource: Resource) -> bool:
        # A method of the workflow, so that a test can run it as it was before the patch (tests/test_architecture).
        return waits_on_a_timer(resource)

    # ---- messages: the handlers are here, what they do is Messages' (workflows/lifecycle_messages.py) -----------

    @workflow.query(name="status")
    def status(self) -> LifecycleState:
        """Everything but the audit trail, which needs view-audit (query `audit`)."""
        return self._messages.status()

    @workflow.query(name="audit")
    def audit(self, token: str | None = None) -> list[AuditEntry]:
        """The audit trail, for callers whose token carries view-audit (queries leave no history: denials raise)."""
        return self._messages.audit(token)

    # Updates: the sender gets the status after the change, or a failure (PermissionDenied, Refused, InvalidInput).
    # Signals: the same names and payloads, no answer; what the update would fail with is recorded instead.
    approve = workflow.update(name="approve")(update_handler("approve"))
    approve.validator(validator("approve"))
    reject = workflow.update(name="reject")(update_handler("reject"))
    reject.validator(validator("reject"))
    pause = workflow.update(name="pause")(update_handler("pause"))
    pause.validator(validator("pause"))
    resume = workflow.update(name="resume")(update_handler("resume"))
    resume.validator(validator("resume"))
    cancel = workflow.update(name="cancel")(update_handler("cancel"))
    cancel.validator(validator("cancel"))
    # skip: a layer or a resource that has not started never runs, and its absence fails nothing.
    skip = workflow.update(name="skip")(update_handler("skip"))
    skip.validator(validator("skip"))
    # switch_ungraceful: a planned failover whose primary stopped answering goes on as a disaster recovery (every
    # resource started from now on fails over ungracefully; what is done stays done).
    switch_ungraceful = workflow.update(name="switch_ungraceful")(update_handler("switch_ungraceful"))
    switch_ungraceful.validator(validator("switch_ungraceful"))

    approve_signal = workflow.signal(name="approve")(signal_handler("approve"))
    reject_signal = workflow.signal(name="reject")(signal_handler("reject"))
    pause_signal = workflow.signal(name="pause")(signal_handler("pause"))
    resume_signal = workflow.signal(name="resume")(signal_handler("resume"))
    cancel_signal = workflow.signal(name="cancel")(signal_handler("cancel"))
    skip_signal = workflow.signal(name="skip")(signal_handler("skip"))
    switch_ungraceful_signal = workflow.signal(name="switch_ungraceful")(signal_handler("switch_ungraceful"))

    @workflow.signal(name="child_gate")
    async def child_gate(self, signal: ChildGate) -> None:
        """A DRS child's wave waits for approval: it becomes a gate of this run. Repeats are ignored."""
        await self._messages.child_gate(signal)
