"""A drill never leaves anything behind: when one fails, is cancelled, or is stopped at a gate (rejected, or its
approval timed out) once ACTIVATE started doing something, its CLEANUP layers run (in plan order, as a normal CLEANUP: a failed layer stops the ones after it unless it continues
on error) before the run ends with its original outcome and a message saying what the cleanup did.

Not cleaned up, and the message says why and what stays up:
- the operator (RunOptions.keep_on_failure) or the plan (defaults.keepDrillOnFailure) keeps the artefacts for
  diagnosis;
- the run's phases leave out CLEANUP: the operator asked to keep the drill up, and that is respected.
Not cleaned up, the message as before: nothing of ACTIVATE started (nothing to clean up); the plan has no CLEANUP
layers (it cleans up nothing, also after a drill that completes); the CLEANUP phase started already (it failed or
was cancelled, and its own state says what it did; or its own approval gate was rejected: that "no" is about the
cleanup itself); the run is a cleanup of another execution (RunOptions.cleanup_of); it is a real failover (planned,
disaster, failback: they never clean up on their own).

The cleanup passes no approval gate (its phase's or layers'): the run has ended its work, and keeping the artefacts
is what keep_on_failure is for. The cancel that ended the run does not stop it (cleaning up is what a cancelled
drill owes); a cancel sent during the cleanup of a failed drill does, and `cancel --force` stops running steps.
`drctl drill cleanup RUN` removes whatever is left, later.

A plain object DrLifecycleWorkflow owns: `end` is how a failed or cancelled run ends, and how a gate (Gates.stop_run)
ends a rejected one. Deterministic, no I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from temporalio import workflow

from workflows.lifecycle_gates import Gates
from workflows.lifecycle_status import StatusBoard

with workflow.unsafe.imports_passed_through():
    from contracts.lifecycle import (
        CLEANUP_OF_LOOKBACK,
        LayerState,
        LifecycleInput,
        LifecycleState,
        RunStatus,
        StepStatus,
    )
    from plans.model import Layer, Mode, Phase
    from workflows.state import phase_rollup

# Runs recorded before this ended at the failed phase, their drill artefacts left running.
AFTER_FAILURE_PATCH = "drill-cleans-up-after-failure"

RunLayer = Callable[[Phase, Layer, LayerState], Awaitable[None]]


def artefacts_of(input: LifecycleInput, state: LifecycleState) -> str:
    """The execution whose artefacts the run's resources act on (found by their tags and names): the run's own, or
    the one a cleanup run cleans up after (RunOptions.cleanup_of, `drctl drill cleanup`)."""
    return input.options.cleanup_of or state.workflow_id


def jobs_since(input: LifecycleInput, state: LifecycleState) -> datetime:
    """From when that execution's DRS jobs may exist."""
    if input.options.cleanup_of is None:
        return state.started_at
    return input.options.cleanup_of_started_at or state.started_at - CLEANUP_OF_LOOKBACK


class AfterFailure:
    def __init__(self, state: LifecycleState, input: LifecycleInput, gates: Gates, board: StatusBoard,
                 run_layer: RunLayer) -> None:
        self._state, self._input, self._gates, self._board = state, input, gates, board
        self._run_layer = run_layer
        gates.stop_run = self.end  # a rejected or timed-out gate ends the run here too

    async def end(self, status: RunStatus, message: str) -> None:
        """End a failed, cancelled or rejected run; a drill first cleans up after itself."""
        self._board.finish(status, await self.settle(status, message))

    async def settle(self, status: RunStatus, message: str) -> str:
        """The run's final message for `status`: `message`, and what cleaning up after it did or why it did not;
        runs the cleanup when it is due."""
        if not self._due(status) or not workflow.patched(AFTER_FAILURE_PATCH):
            return message
        if not self._input.plan.layers(Phase.CLEANUP):
            return message  # the plan cleans up nothing, also after a drill that completes
        after = {RunStatus.FAILED: "failure", RunStatus.CANCELLED: "cancel"}.get(status, "rejection")
        again = f"`drctl drill cleanup {self._state.workflow_id}` removes them"
        cleanup = next((p for p in self._state.phases if p.phase is Phase.CLEANUP), None)
        if cleanup is None:
            return (f"{message}; no cleanup after {after}: the run's phases leave out CLEANUP, as the operator "
                    f"chose: {self._created()} stay up ({again})")
        if cleanup.started_at is not None:
            return message  # it ran (and failed, or was cancelled): its own state says what it did
        keep, by = self._input.options.keep_on_failure, "the operator's keep_on_failure (--keep-on-failure)"
        if keep is None:
            keep, by = self._input.plan.defaults.keep_drill_on_failure, "the plan's defaults.keepDrillOnFailure"
        if keep:
            return (f"{message}; nothing was cleaned up after {after}: kept for diagnosis, as {by} asks: "
                    f"{self._created()} stay up ({again})")
        await self._run_cleanup()
        return f"{message}; {self._report(after, again)}"

    def _due(self, status: RunStatus) -> bool:
        if status not in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.REJECTED) \
                or self._input.mode is not Mode.DRILL \
                or self._input.options.cleanup_of is not None:
            return False
        activate = next((p for p in self._state.phases if p.phase is Phase.ACTIVATE), None)
        return activate is not None and any(layer.started_at is not None for layer in activate.layers)

    async def _run_cleanup(self) -> None:
        phase_state = self._state.phase(Phase.CLEANUP)
        self._state.current_phase = Phase.CLEANUP
        phase_state.status, phase_state.started_at = StepStatus.RUNNING, workflow.now()
        self._board.publish()
        self._gates.cleanup_despite_cancel = self._state.cancel_requested
        try:
            for layer, layer_state in zip(self._input.plan.layers(Phase.CLEANUP), phase_state.layers, strict=True):
                if not await self._gates.boundary():
                    break
                if layer_state.skipped_by:
                    continue
                await self._run_layer(Phase.CLEANUP, layer, layer_state)
                if layer_state.status is StepStatus.FAILED:
                    break
        finally:
            self._gates.cleanup_despite_cancel = False
        phase_state.ended_at = workflow.now()
        phase_state.status = phase_rollup(phase_state)

    def _report(self, after: str, again: str) -> str:
        phase_state = self._state.phase(Phase.CLEANUP)
        done, failed, left = [], [], []
        for layer in phase_state.layers:
            for r in layer.resources:
                where = f"{layer.name}/{r.name}"
                if r.status in (StepStatus.SUCCEEDED, StepStatus.PARTIAL):  # PARTIAL: within policy, and said
                    done.append(f"{where}: {r.message}" if r.message else where)
                    done[-1] += f" ({r.error})" if r.status is StepStatus.PARTIAL and r.error else ""
                elif r.status in (StepStatus.FAILED, StepStatus.CANCELLED):
                    failed.append(f"{where} {r.status.value.lower()}: {r.error or r.message}")
                elif not r.skipped_by:
                    left.append(where)
            failed += [f"{layer.name}/{h.when}-hook {h.name} {h.status.value.lower()}: {h.error or h.message}"
                       for h in [*layer.pre_hooks, *layer.post_hooks]
                       if h.status in (StepStatus.FAILED, StepStatus.CANCELLED)]
        if not failed and not left:
            return f"cleanup after {after}: " + ("; ".join(done) if done else "nothing to do (all steps skipped)")
        parts = [f"cleanup after {after} failed: {'; '.join(failed) or 'stopped'}"]
        if done:
            parts.append(f"cleaned up: {'; '.join(done)}")
        if left:
            parts.append(f"not cleaned up: {', '.join(left)}")
        return "; ".join(parts) + f" ({again})"

    def _created(self) -> str:
        """What ACTIVATE started, the drill artefacts that stay."""
        activate = self._state.phase(Phase.ACTIVATE)
        started = [f"{layer.name}/{r.name}" + (f" ({r.outputs['launched']} DRS instance(s) launched)"
                                               if "launched" in r.outputs else "")
                   for layer in activate.layers for r in layer.resources if r.started_at is not None]
        return "the artefacts of ACTIVATE " + (", ".join(started) if started else "(its layers' hooks)")
