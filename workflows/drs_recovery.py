"""DrsRecoveryWorkflow: one `drs.recovery` resource of one phase, as a child of DrLifecycleWorkflow.

ACTIVATE runs the waves as a DAG (workflows.drs_waves); INSTANTIATE checks what a recovery would take and applies
the plan's launch settings, CLEANUP (drill) terminates exactly this execution's drill instances, REPLICATE (real
recoveries) starts reverse replication (workflows.drs_phases). The message handlers are here; the waves' gates are
decided at the lifecycle run, which signals its decisions.
"""

from __future__ import annotations

from temporalio import workflow

from workflows.drs_phases import DrsPhases
from workflows.drs_waves import Waves

with workflow.unsafe.imports_passed_through():
    from plans.model import Phase
    from contracts.drs_recovery import (
        DRS_WORKFLOW_TYPE,
        DrsRecoveryInput,
        DrsRecoveryResult,
        DrsRecoveryState,
        WaveRecord,
    )
    from contracts.lifecycle import ControlRequest, ControlResult, WaveDecision


@workflow.defn(name=DRS_WORKFLOW_TYPE)
class DrsRecoveryWorkflow:
    @workflow.init
    def __init__(self, input: DrsRecoveryInput) -> None:
        self._state = DrsRecoveryState(
            workflow_id=workflow.info().workflow_id, resource=input.resource, phase=input.phase, mode=input.mode,
            started_at=workflow.now(),
            waves=[WaveRecord(name=w.name, depends_on=list(w.depends_on)) for w in input.params.waves],
        )
        self._waves = Waves(input, self._state)
        self._phases = DrsPhases(self._waves)

    @workflow.run
    async def run(self, input: DrsRecoveryInput) -> DrsRecoveryResult:
        self._waves.show()
        if input.phase is Phase.ACTIVATE:
            await self._waves.activate()
        elif input.phase is Phase.INSTANTIATE:
            await self._phases.preflight()
        elif input.phase is Phase.CLEANUP:
            await self._phases.cleanup()
        else:
            await self._phases.replicate()
        await workflow.wait_condition(workflow.all_handlers_finished)
        # What failed within policy goes up with the result, so the lifecycle run's PARTIAL outcome can name it.
        return self._waves.result().model_copy(update={"within_policy": self._state.within_policy()})

    @workflow.query(name="status")
    def status(self) -> DrsRecoveryState:
        return self._state

    @workflow.update(name="approve")
    async def approve(self, request: ControlRequest) -> ControlResult:
        raise AssertionError("unreachable: the validator refuses every approval here")

    @approve.validator
    def _check_approve(self, request: ControlRequest) -> None:
        # One place decides who may approve: the lifecycle run, which verifies tokens, roles and four-eyes. Kept
        # as an update so an operator who finds this child in the UI is told where to go.
        parent = workflow.info().parent
        raise ValueError(f"approve DRS waves at the run that started this recovery: `drctl drill approve "
                         f"{parent.workflow_id if parent else '<run id>'} --gate ...`")

    @workflow.signal(name="approve_wave")
    def approve_wave(self, decision: WaveDecision) -> None:
        """The lifecycle's gate for this wave was approved. Idempotent; ignored once the wave has moved on."""
        self._waves.approve(decision)

    @workflow.signal(name="reject_wave")
    def reject_wave(self, decision: WaveDecision) -> None:
        """The lifecycle's gate for this wave was rejected: the wave fails, its dependants are skipped. Ignored
        once the wave was approved or has moved on."""
        self._waves.reject(decision)
