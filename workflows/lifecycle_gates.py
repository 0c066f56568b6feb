"""The boundaries between a run's steps, where pause, cancel and the plan's approval gates take effect. A plain
object DrLifecycleWorkflow owns; the updates that decide a gate are the workflow's (workflows.lifecycle_control)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow

from workflows.lifecycle_status import StatusBoard
from workflows.notifications import Notifier

with workflow.unsafe.imports_passed_through():
    from contracts.lifecycle import Gate, LifecycleState, RunStatus
    from plans.approvals import ApprovalPolicy
    from plans.model import Mode


class Gates:
    def __init__(self, state: LifecycleState, mode: Mode, board: StatusBoard, notifier: Notifier) -> None:
        self._state = state
        self._mode = mode  # the mode the run started in: only a drill may go on past a gate that timed out
        self._board = board
        self._notifier = notifier
        # True while a cancelled drill cleans up after itself (workflows.lifecycle_cleanup): the cancel that ended
        # it does not stop its cleanup.
        self.cleanup_despite_cancel = False
        # How a gate ends the run it stops: set by workflows.lifecycle_cleanup (a drill first cleans up).
        self.stop_run: Callable[[RunStatus, str], Awaitable[None]] | None = None

    async def boundary(self) -> bool:
        """Wait here while paused; answer whether the run may go on."""
        await workflow.wait_condition(lambda: not self._state.paused or self._state.cancel_requested)
        if self.cleanup_despite_cancel:
            return True
        return not self._state.cancel_requested and not self._state.status.finished

    async def passed(self, gate_id: str, policy: ApprovalPolicy) -> bool:
        """Open a gate and wait for its decision (or its timeout); whether the run may go on past it."""
        now = workflow.now()
        timeout = timedelta(minutes=policy.timeout_minutes) if policy.timeout_minutes else None
        gate = Gate(id=gate_id, requested_at=now, required=policy.approvals, roles=[r.value for r in policy.roles],
                    timeout_at=now + timeout if timeout else None, on_timeout=policy.on_timeout)
        self._state.gates.append(gate)
        self._board.refresh()
        self._board.publish()
        await self._notifier.approval_needed(gate)
        try:
            await workflow.wait_condition(lambda: gate.decision is not None or self._state.cancel_requested,
                                          timeout=timeout, timeout_summary=f"approval gate {gate_id} times out")
        except asyncio.TimeoutError:
            if self._timed_out(gate, policy.timeout_minutes or 0):
                return True
            await self._stop(f"gate {gate.id} timed out: {gate.reason}")
            return False
        if gate.decision == "rejected":
            await self._stop(f"gate {gate_id} rejected by {gate.actor}: {gate.reason}")
            return False
        self._board.refresh()
        self._board.publish()
        return await self.boundary()

    def _timed_out(self, gate: Gate, minutes: float) -> bool:
        gate.decision, gate.decided_at = "timed-out", workflow.now()
        waited = f"no decision within {minutes:.3g} min"  # as configured: the timer fires a little after it is due
        # Going on without the approvals is a drill's privilege: a real failover never proceeds unapproved.
        if gate.on_timeout == "continue" and self._mode is Mode.DRILL:
            gate.reason = f"{waited}; the plan lets a drill continue"
            self._board.refresh()
            self._board.publish()
            return True
        gate.reason = f"{waited}; the run is aborted"
        return False

    async def _stop(self, message: str) -> None:
        if self.stop_run is None:
            self._board.finish(RunStatus.REJECTED, message)
        else:
            await self.stop_run(RunStatus.REJECTED, message)
