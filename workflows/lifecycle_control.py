"""The messages of DrLifecycleWorkflow: the `status` query, the approve/reject/pause/resume/cancel updates with their
validators, and the signals by which DRS children bring their wave gates to this run.

A mixin of the workflow class (same state, same determinism rules), kept apart so the run logic reads alone.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

from workflows.governance import GovernanceMixin


with workflow.unsafe.imports_passed_through():
    from plans.model import Mode
    from contracts.identity import Principal, verify_token
    from contracts.search_attributes import DR_MODE
    from workflows.rbac import Action, allowed, roles_allowed
    from contracts.lifecycle import (
        AuditEntry,
        ChildGate,
        ControlRequest,
        ControlResult,
        Gate,
        LayerState,
        LifecycleState,
        ResourceState,
        StepStatus,
        WaveDecision,
    )


class LifecycleControlMixin(GovernanceMixin):
    @workflow.query(name="status")
    def status(self) -> LifecycleState:
        """Everything but the audit trail, which needs view-audit (query `audit`)."""
        return self._state.model_copy(update={"audit": []})

    @workflow.query(name="audit")
    def audit(self, token: str) -> list[AuditEntry]:
        """The audit trail, for callers whose token carries view-audit (queries leave no history: denials raise)."""
        if self._state.trust is None:
            raise ApplicationError("the run has not loaded its identity configuration yet")
        principal = verify_token(token, self._state.trust, workflow.now())
        if not allowed(principal.roles, Action.VIEW_AUDIT, self._input.mode):
            raise ApplicationError(f"roles {principal.roles} may not view the audit trail "
                                   f"(allowed: {', '.join(roles_allowed(Action.VIEW_AUDIT, self._input.mode))})")
        return self._state.audit

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
    async def pause(self, request: ControlRequest) -> ControlResult:
        principal = await self._authorize(request, Action.PAUSE_RESUME, "pause")
        if principal is None:
            return self._denied_result(self._last_denial)
        if self._state.paused:
            return ControlResult(accepted=False, status=self._state.status, message="the run is already paused")
        self._state.paused = True
        self._refresh_status()
        answer = self._accepted(request, principal, "pause", "paused: running operations finish, nothing new starts")
        await self._notify_paused(principal.subject, request.reason)
        return answer

    @pause.validator
    def _check_pause(self, request: ControlRequest) -> None:
        self._require_active()
        if self._state.paused:
            raise ValueError("the run is already paused")

    @workflow.update(name="resume")
    async def resume(self, request: ControlRequest) -> ControlResult:
        principal = await self._authorize(request, Action.PAUSE_RESUME, "resume")
        if principal is None:
            return self._denied_result(self._last_denial)
        if not self._state.paused:
            return ControlResult(accepted=False, status=self._state.status, message="the run is not paused")
        self._state.paused = False
        self._refresh_status()
        return self._accepted(request, principal, "resume", "resumed")

    @resume.validator
    def _check_resume(self, request: ControlRequest) -> None:
        self._require_active()
        if not self._state.paused:
            raise ValueError("the run is not paused")

    @workflow.update(name="cancel")
    async def cancel(self, request: ControlRequest) -> ControlResult:
        principal = await self._authorize(request, Action.CANCEL, "cancel")
        if principal is None:
            return self._denied_result(self._last_denial)
        self._state.cancel_requested = True
        if request.force:
            for task in self._tasks.values():
                task.cancel()
        note = "in-flight operations are being stopped" if request.force else "in-flight operations finish first"
        answer = self._accepted(request, principal, "cancel", f"cancelling: nothing new starts; {note}")
        # A DRS wave waiting for approval would wait for ever: a cancel answers it with a rejection.
        for gate in [g for g in self._state.gates if g.decision is None and g.child_workflow_id]:
            gate.decision, gate.actor, gate.decided_at = "rejected", principal.subject, workflow.now()
            gate.reason = f"run cancelled: {request.reason}".rstrip(": ")
            try:
                await workflow.get_external_workflow_handle(gate.child_workflow_id).signal(
                    "reject_wave", WaveDecision(wave=gate.wave or "", actor=principal.subject, reason=gate.reason))
            except FailureError as err:  # the child ended meanwhile: nothing waits on it
                workflow.logger.warning("gate %s: could not signal %s: %s", gate.id, gate.child_workflow_id, err)
        self._refresh_status()
        return answer

    @cancel.validator
    def _check_cancel(self, request: ControlRequest) -> None:
        self._require_active()
        if self._state.cancel_requested and not request.force:
            raise ValueError("cancel was already requested (use force to stop in-flight operations)")

    @workflow.update(name="skip")
    async def skip(self, request: ControlRequest) -> ControlResult:
        """Skip a layer or a resource that has not started: it never runs, and its absence fails nothing."""
        principal = await self._authorize(request, Action.SKIP_STEP, "skip")
        if principal is None:
            return self._denied_result(self._last_denial)
        layer, resource = self._skippable(request.step or "")
        if layer is None:
            return ControlResult(accepted=False, status=self._state.status,
                                 message=f"{request.step} has started or ended: it can no longer be skipped")
        note = f"skipped by {principal.subject}" + (f": {request.reason}" if request.reason else "")
        for step in [resource] if resource is not None else layer.resources:
            step.skipped_by, step.status, step.message = principal.subject, StepStatus.SKIPPED, note
        if all(r.skipped_by for r in layer.resources) and layer.status is StepStatus.PENDING:
            layer.skipped_by, layer.status = principal.subject, StepStatus.SKIPPED
        return self._accepted(request, principal, "skip", f"{request.step} will not run", detail=request.step or "")

    @skip.validator
    def _check_skip(self, request: ControlRequest) -> None:
        self._require_active()
        if not request.step:
            raise ValueError("name the step to skip: PHASE/layer or PHASE/layer/resource")
        if self._skippable(request.step)[0] is None:
            raise ValueError(f"{request.step} is not a layer or resource of this run that has yet to start")

    def _skippable(self, step: str) -> tuple[LayerState | None, ResourceState | None]:
        """The pending layer (and resource) `step` names, or (None, None)."""
        parts = step.split("/")
        if len(parts) not in (2, 3):
            return None, None
        phase = next((p for p in self._state.phases if p.phase.value == parts[0]), None)
        layer = next((x for x in phase.layers if x.name == parts[1]), None) if phase else None
        if layer is None or layer.skipped_by:
            return None, None
        if len(parts) == 2:
            return (layer, None) if layer.status is StepStatus.PENDING else (None, None)
        # A resource of a running layer may still be waiting for a free slot (maxParallelResources).
        if layer.status not in (StepStatus.PENDING, StepStatus.RUNNING):
            return None, None
        resource = next((r for r in layer.resources if r.name == parts[2]), None)
        if resource is None or resource.status is not StepStatus.PENDING:
            return None, None
        return layer, resource

    @workflow.update(name="switch_ungraceful")
    async def switch_ungraceful(self, request: ControlRequest) -> ControlResult:
        """A planned failover that cannot finish gracefully (the primary stopped answering) goes on as a disaster
        recovery: every resource started from now on fails over ungracefully; what is done stays done."""
        principal = await self._authorize(request, Action.SWITCH_UNGRACEFUL, "switch-ungraceful")
        if principal is None:
            return self._denied_result(self._last_denial)
        if self._state.mode is not Mode.PLANNED:
            return ControlResult(accepted=False, status=self._state.status,
                                 message=f"the run is already {self._state.mode.value}")
        self._state.mode, self._state.switched_to_ungraceful_at = Mode.DISASTER, workflow.now()
        workflow.upsert_search_attributes([DR_MODE.value_set(Mode.DISASTER.value)])
        return self._accepted(request, principal, "switch-ungraceful",
                              "switched to ungraceful: resources started from now on act as in a disaster")

    @switch_ungraceful.validator
    def _check_switch_ungraceful(self, request: ControlRequest) -> None:
        self._require_active()
        if self._state.mode is not Mode.PLANNED:
            raise ValueError(f"only a planned failover can switch to ungraceful (this run is {self._state.mode.value})")

    async def _decide(self, request: ControlRequest, action: str, decision: str) -> ControlResult:
        principal = await self._authorize(request, Action.APPROVE, action)
        if principal is None:
            return self._denied_result(self._last_denial)
        gate = self._requested_gate(request)
        if gate is None:  # decided by an update accepted in the same workflow task as this one
            return ControlResult(accepted=False, status=self._state.status, message="no approval is pending")
        problem = self._approval_problem(gate, principal, approving=decision == "approved")
        if problem:
            self._deny(action, request, problem, principal)
            return self._denied_result(problem)
        if decision == "approved" and not self._count_approval(gate, principal, request):
            missing = gate.required - len(gate.approvals)
            return self._accepted(request, principal, action,
                                  f"gate {gate.id}: approval {len(gate.approvals)} of {gate.required} recorded; "
                                  f"waiting for {missing} more")
        gate.decision, gate.actor, gate.reason, gate.decided_at = (decision, principal.subject, request.reason,
                                                                   workflow.now())
        if gate.child_workflow_id is None:
            # A phase/layer gate: `_gate` goes on (or finishes the run as REJECTED).
            return self._accepted(request, principal, action, f"gate {gate.id} {decision}")
        # A DRS wave's gate: the child starts the wave, or ends it FAILED (its dependants are skipped and the
        # resource fails the run the usual way). Recorded before telling the child, so no second decision races it.
        self._refresh_status()
        detail = f"wave {gate.wave} of {gate.child_workflow_id}"
        answer = self._accepted(request, principal, action, f"gate {gate.id} {decision}", detail=detail)
        signal = "approve_wave" if decision == "approved" else "reject_wave"
        try:
            await workflow.get_external_workflow_handle(gate.child_workflow_id).signal(
                signal, WaveDecision(wave=gate.wave or "", actor=principal.subject, reason=request.reason))
        except FailureError as err:  # the child has ended meanwhile: the decision stays recorded, nothing waits
            workflow.logger.warning("gate %s: could not signal %s: %s", gate.id, gate.child_workflow_id, err)
            answer.message += f" (the DRS child could not be told: {err})"
        return answer

    @workflow.signal(name="child_gate")
    async def child_gate(self, signal: ChildGate) -> None:
        """A DRS child's wave waits for approval: it becomes a gate of this run. Repeats are ignored."""
        if self._state.status.finished or any(
                g.decision is None and g.id == signal.gate_id and g.child_workflow_id == signal.child_workflow_id
                for g in self._state.gates):
            return
        gate = Gate(id=signal.gate_id, requested_at=workflow.now(), child_workflow_id=signal.child_workflow_id,
                    wave=signal.wave, required=signal.required, roles=signal.roles)
        self._state.gates.append(gate)
        self._refresh_status()
        self._publish()
        await self._notify_approval_needed(gate)

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

    def _accepted(self, request: ControlRequest, principal: Principal, action: str, message: str,
                  detail: str = "") -> ControlResult:
        self._allowed_entry(action, principal, request, detail)
        self._publish()
        return ControlResult(accepted=True, status=self._state.status, message=message)
