"""What the updates and signals of DrLifecycleWorkflow do: approve/reject (phase, layer and DRS wave gates), pause,
resume, cancel, skip, switch to ungraceful, and the gates DRS children bring to the run.

A plain object the workflow owns; the handlers are the workflow's (workflows.lifecycle_messages), and each calls one
method here. `check_*` methods are the validators' (they raise Refused: refused before anything is recorded); the
others answer a ControlResult with the run's status after the change, or raise: PermissionDenied once the denial is
recorded in the audit trail (state changed by a handler stays changed when it then raises), Refused when another
message got there first. Both are non-retryable ApplicationErrors whose details hold the ControlResult.
"""

from __future__ import annotations

import asyncio
from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

from workflows.governance import Governance
from workflows.lifecycle_status import StatusBoard
from workflows.notifications import Notifier

with workflow.unsafe.imports_passed_through():
    from plans.model import Mode
    from contracts.identity import Principal
    from contracts.search_attributes import DR_MODE
    from workflows.rbac import Action
    from contracts.lifecycle import (
        PERMISSION_DENIED,
        REFUSED,
        ChildGate,
        ControlRequest,
        ControlResult,
        Gate,
        LayerState,
        LifecycleState,
        ResourceState,
        RunStatus,
        StepStatus,
        WaveDecision,
    )


class Control:
    def __init__(self, state: LifecycleState, governance: Governance, board: StatusBoard, notifier: Notifier,
                 tasks: dict[str, asyncio.Task[None]]) -> None:
        self._state = state
        self._governance = governance
        self._board = board
        self._notifier = notifier
        self._tasks = tasks  # the running steps, by key: a forced cancel stops them

    async def pause(self, request: ControlRequest) -> ControlResult:
        principal = await self._governance.authorize(request, Action.PAUSE_RESUME, "pause")
        if principal is None:
            self._deny(self._governance.last_denial)
        if self._state.paused:
            self._refuse("the run is already paused")
        self._state.paused = True
        self._board.refresh()
        answer = self._accepted(request, principal, "pause", "paused: running operations finish, nothing new starts")
        await self._notifier.paused(principal.subject, request.reason)
        return answer

    def check_pause(self) -> None:
        self.require_active()
        if self._state.paused:
            refuse("the run is already paused")

    async def resume(self, request: ControlRequest) -> ControlResult:
        principal = await self._governance.authorize(request, Action.PAUSE_RESUME, "resume")
        if principal is None:
            self._deny(self._governance.last_denial)
        if not self._state.paused:
            self._refuse("the run is not paused")
        self._state.paused = False
        self._board.refresh()
        return self._accepted(request, principal, "resume", "resumed")

    def check_resume(self) -> None:
        self.require_active()
        if not self._state.paused:
            refuse("the run is not paused")

    async def cancel(self, request: ControlRequest) -> ControlResult:
        principal = await self._governance.authorize(request, Action.CANCEL, "cancel")
        if principal is None:
            self._deny(self._governance.last_denial)
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
            await self._signal_child(gate, "reject_wave", WaveDecision(wave=gate.wave or "", actor=principal.subject,
                                                                       reason=gate.reason))
        self._board.refresh()
        return answer

    def check_cancel(self, request: ControlRequest) -> None:
        self.require_active()
        if self._state.cancel_requested and not request.force:
            refuse("cancel was already requested (use force to stop in-flight operations)")

    async def skip(self, request: ControlRequest) -> ControlResult:
        principal = await self._governance.authorize(request, Action.SKIP_STEP, "skip")
        if principal is None:
            self._deny(self._governance.last_denial)
        layer, resource = self._skippable(request.step or "")
        if layer is None:
            self._refuse(f"{request.step} has started or ended: it can no longer be skipped")
        note = f"skipped by {principal.subject}" + (f": {request.reason}" if request.reason else "")
        for step in [resource] if resource is not None else layer.resources:
            step.skipped_by, step.status, step.message = principal.subject, StepStatus.SKIPPED, note
        if all(r.skipped_by for r in layer.resources) and layer.status is StepStatus.PENDING:
            layer.skipped_by, layer.status = principal.subject, StepStatus.SKIPPED
        return self._accepted(request, principal, "skip", f"{request.step} will not run", detail=request.step or "")

    def check_skip(self, request: ControlRequest) -> None:
        self.require_active()
        if not request.step:
            refuse("name the step to skip: PHASE/layer or PHASE/layer/resource")
        if self._skippable(request.step)[0] is None:
            refuse(f"{request.step} is not a layer or resource of this run that has yet to start")

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

    async def switch_ungraceful(self, request: ControlRequest) -> ControlResult:
        principal = await self._governance.authorize(request, Action.SWITCH_UNGRACEFUL, "switch-ungraceful")
        if principal is None:
            self._deny(self._governance.last_denial)
        if self._state.mode is not Mode.PLANNED:
            self._refuse(f"the run is already {self._state.mode.value}")
        self._state.mode, self._state.switched_to_ungraceful_at = Mode.DISASTER, workflow.now()
        workflow.upsert_search_attributes([DR_MODE.value_set(Mode.DISASTER.value)])
        return self._accepted(request, principal, "switch-ungraceful",
                              "switched to ungraceful: resources started from now on act as in a disaster")

    def check_switch_ungraceful(self) -> None:
        self.require_active()
        if self._state.mode is not Mode.PLANNED:
            refuse(f"only a planned failover can switch to ungraceful (this run is {self._state.mode.value})")

    async def decide(self, request: ControlRequest, action: str, decision: str) -> ControlResult:
        """approve / reject: `decision` is "approved" or "rejected"."""
        principal = await self._governance.authorize(request, Action.APPROVE, action)
        if principal is None:
            self._deny(self._governance.last_denial)
        gate = self._requested_gate(request)
        if gate is None:  # decided by an update accepted in the same workflow task as this one
            self._refuse("no approval is pending")
        problem = self._governance.decision_problem(request, principal) \
            or self._governance.approval_problem(gate, principal, approving=decision == "approved")
        if problem:
            self._governance.deny(action, request, problem, principal)
            self._deny(problem)
        self._governance.decided(principal)  # from here on the decision counts: its token cannot make another
        if decision == "approved" and not self._governance.count_approval(gate, principal, request):
            missing = gate.required - len(gate.approvals)
            return self._accepted(request, principal, action,
                                  f"gate {gate.id}: approval {len(gate.approvals)} of {gate.required} recorded; "
                                  f"waiting for {missing} more")
        gate.decision, gate.actor, gate.reason, gate.decided_at = (decision, principal.subject, request.reason,
                                                                   workflow.now())
        if gate.child_workflow_id is None:
            # A phase/layer gate: the run's wait at it goes on, or finishes the run as REJECTED at that boundary.
            return self._accepted(request, principal, action, f"gate {gate.id} {decision}",
                                  status=RunStatus.REJECTED if decision == "rejected" else None)
        # A DRS wave's gate: the child starts the wave, or ends it FAILED (its dependants are skipped and the
        # resource fails the run the usual way). Recorded before telling the child, so no second decision races it.
        self._board.refresh()
        detail = f"wave {gate.wave} of {gate.child_workflow_id}"
        answer = self._accepted(request, principal, action, f"gate {gate.id} {decision}", detail=detail)
        signal = "approve_wave" if decision == "approved" else "reject_wave"
        error = await self._signal_child(gate, signal, WaveDecision(wave=gate.wave or "", actor=principal.subject,
                                                                    reason=request.reason))
        if error is not None:  # the decision stays recorded, nothing waits
            answer.message += f" (the DRS child could not be told: {error})"
        return answer

    def check_decision(self, request: ControlRequest, rejecting: bool) -> None:
        self.require_active()
        pending = [g.id for g in self._state.gates if g.decision is None]
        if not pending:
            refuse("no approval is pending")
        if self._requested_gate(request) is None:
            refuse(f"gate {request.gate!r} is not pending (pending: {', '.join(map(repr, pending))})")
        if rejecting and not request.reason.strip():
            refuse("a rejection needs a reason")

    async def _signal_child(self, gate: Gate, signal: str, decision: WaveDecision) -> FailureError | None:
        """Tell a DRS child its wave's gate was decided; the error when it has ended meanwhile (nothing waits)."""
        assert gate.child_workflow_id is not None
        try:
            await workflow.get_external_workflow_handle(gate.child_workflow_id).signal(signal, decision)
        except FailureError as err:
            workflow.logger.warning("gate %s: could not signal %s: %s", gate.id, gate.child_workflow_id, err)
            return err
        return None

    async def child_gate(self, signal: ChildGate) -> None:
        """A DRS child's wave waits for approval: it becomes a gate of this run. Repeats are ignored."""
        if self._state.status.finished or any(
                g.decision is None and g.id == signal.gate_id and g.child_workflow_id == signal.child_workflow_id
                for g in self._state.gates):
            return
        gate = Gate(id=signal.gate_id, requested_at=workflow.now(), child_workflow_id=signal.child_workflow_id,
                    wave=signal.wave, required=signal.required, roles=signal.roles)
        self._state.gates.append(gate)
        self._board.refresh()
        self._board.publish()
        await self._notifier.approval_needed(gate)

    def withdraw_child_gates(self, child_workflow_id: str) -> None:
        """The DRS child has ended: nothing waits for its undecided gates any more."""
        for gate in self._state.gates:
            if gate.decision is None and gate.child_workflow_id == child_workflow_id:
                gate.decision, gate.decided_at = "withdrawn", workflow.now()
        self._board.refresh()
        self._board.publish()

    def _requested_gate(self, request: ControlRequest) -> Gate | None:
        """The gate an approve/reject decides: the one named, else the first pending."""
        if request.gate is None:
            return self._state.pending_gate()
        return next((g for g in self._state.gates if g.decision is None and g.id == request.gate), None)

    def require_active(self) -> None:
        if self._state.status.finished:
            refuse(f"the run has ended ({self._state.status.value})")

    def _accepted(self, request: ControlRequest, principal: Principal, action: str, message: str,
                  detail: str = "", status: RunStatus | None = None) -> ControlResult:
        """The answer carries the status as it is after the change (approved: RUNNING, not AWAITING_APPROVAL),
        computed without refreshing the state here: the run's own refresh and search-attribute upsert stay where
        they were, so recorded histories replay unchanged."""
        self._governance.allow(action, principal, request, detail)
        self._board.publish()
        return ControlResult(accepted=True, status=status or self._board.current(), message=message)

    def _deny(self, message: str) -> NoReturn:
        """Fail the update (or end the signal) once the denial is recorded: the caller sees a failure, not a
        success whose answer happens to say no."""
        self._board.publish()
        answer = ControlResult(accepted=False, status=self._state.status, message=f"denied: {message}")
        raise ApplicationError(answer.message, answer.model_dump(mode="json"), type=PERMISSION_DENIED,
                               non_retryable=True)

    def _refuse(self, message: str) -> NoReturn:
        refuse(message, ControlResult(accepted=False, status=self._state.status, message=message))


def refuse(message: str, answer: ControlResult | None = None) -> NoReturn:
    """The run cannot do what was asked, whoever asks: a validator's refusal (nothing recorded) or a message that
    another one overtook. Non-retryable: the same message cannot succeed by being sent again."""
    raise ApplicationError(message, *([answer.model_dump(mode="json")] if answer else []), type=REFUSED,
                           non_retryable=True)
