"""The run's status as others see it: RunStatus kept in step with pause and gates, the DrPhase/DrStatus search
attributes by which the Temporal UI filters runs, and the current details its run page shows. A plain object DrLifecycleWorkflow owns, over the run's state."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.lifecycle import LifecycleState, RunStatus
    from contracts.search_attributes import DR_PHASE, DR_STATUS
    from workflows.run_details import lifecycle_details
    from workflows.state import close, failed_resources, result_of


class StatusBoard:
    def __init__(self, state: LifecycleState) -> None:
        self._state = state
        self._published: tuple[str, str] | None = None

    def refresh(self) -> None:
        self._state.status = self.current()

    def current(self) -> RunStatus:
        """What the status is as of now (refresh stores it): pending gates, pause, or running."""
        if self._state.status.finished:
            return self._state.status
        if self._state.pending_gate() is not None:
            return RunStatus.AWAITING_APPROVAL
        return RunStatus.PAUSED if self._state.paused else RunStatus.RUNNING

    def publish(self) -> None:
        """Upsert DrPhase/DrStatus when they changed: an upsert is a command in history, so only then."""
        phase = self._state.current_phase.value if self._state.current_phase else "PENDING"
        current = (phase, self._state.status.value)
        if current != self._published:
            workflow.upsert_search_attributes([DR_PHASE.value_set(current[0]), DR_STATUS.value_set(current[1])])
            self._published = current
        self.show()

    def show(self) -> None:
        """The run page's current details, from the state as it is now. Not a command: free to call often."""
        outcome = result_of(self._state).message if self._state.status.finished else ""
        workflow.set_current_details(lifecycle_details(self._state, outcome))

    def finish(self, status: RunStatus, message: str) -> None:
        if not self._state.status.finished:
            close(self._state, status, message, workflow.now())
            self.publish()

    def failure_summary(self) -> str:
        return ", ".join(failed_resources(self._state)) or "see status"
