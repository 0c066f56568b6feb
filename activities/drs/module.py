"""`drs.recovery`: recover DRS source servers in waves. The registry entry; the work is DrsRecoveryWorkflow's.

A DRS recovery has waves, jobs and per-server state that would overflow the lifecycle's history, so the lifecycle
runs it as a child workflow (workflows/drs_recovery.py) driving the activities in activities/drs/activities.py.
This entry gives plan validation its parameter model and phases.
"""

from __future__ import annotations

from typing import Any

from activities.core.context import ResourceContext
from activities.core.aws import fatal
from contracts.activities import Operation
from activities.core.registry import ServiceModule, register
from plans.drs import DRS_ACTION, DrsRecoveryParameters
from plans.model import PHASE_ORDER


@register
class DrsRecovery(ServiceModule):
    action = DRS_ACTION
    summary = "Recover DRS source servers of protection groups in waves (a DAG), quota-aware; drill cleanup; failback"
    Parameters = DrsRecoveryParameters  # type: ignore[assignment]
    phases = frozenset(PHASE_ORDER)

    def start(self, ctx: ResourceContext, params: Any) -> Operation:
        # Reaching this means a worker without DrsRecoveryWorkflow ran the plan: say so instead of doing half a job.
        raise fatal(f"{DRS_ACTION} runs as the DrsRecoveryWorkflow child workflow, not as a resource activity",
                    "WrongExecutionPath")
