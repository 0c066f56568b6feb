"""The claim activity: asks a scope's claims entity (DrClaimsWorkflow) for keys, starting it if it does not run
yet (update-with-start, so two first claims at the same moment still meet one entity), and voids the claims of
holders that have closed. See contracts/claims.py for what is claimed and why.

An async activity on the worker's event loop: it speaks to Temporal through the worker's own client, not to AWS.
"""

from __future__ import annotations

from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from contracts.claims import (
    CLAIM,
    CLAIM_UPDATE,
    CLAIMS_WORKFLOW_TYPE,
    ClaimRequest,
    ClaimResult,
    ClaimsInput,
    claims_workflow_id,
)

log = structlog.get_logger("dr.claims")


class ClaimActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    def all(self) -> list[Any]:
        return [self.claim]

    @activity.defn(name=CLAIM)
    async def claim(self, request: ClaimRequest) -> ClaimResult:
        """Claims request.keys for request.holder; keys held by a run that is still open stay that run's. Asking
        again for what one already holds is granted again: a retried activity claims nothing twice."""
        result = await self._ask(request.model_copy(update={"evict": []}))
        closed = [h for h in sorted({h.execution_id for h in result.held.values()}) if not await self._is_open(h)]
        if closed:
            log.info("claims.evict_closed_holders", scope=request.scope, holders=closed)
            retried = await self._ask(request.model_copy(update={"evict": closed}))
            retried.taken_from = {**result.taken_from, **retried.taken_from}
            result = retried
        log.info("claims.answered", scope=request.scope, holder=request.holder.execution_id,
                 granted=len(result.granted), held=len(result.held), taken_from_drills=len(result.taken_from))
        return result

    async def _ask(self, request: ClaimRequest) -> ClaimResult:
        queue = activity.info().task_queue  # the entity runs on the workers that run the claiming runs
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            CLAIMS_WORKFLOW_TYPE, ClaimsInput(scope=request.scope), id=claims_workflow_id(queue, request.scope),
            task_queue=queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"Claims of {request.scope}: which run holds what",
            static_details="Started by the first run that claimed something here; it answers each claim in turn "
                           "and continues as new with its claims. A claim lasts while its run is open.")
        return await self._client.execute_update_with_start_workflow(
            CLAIM_UPDATE, request, start_workflow_operation=start, result_type=ClaimResult)

    async def _is_open(self, execution_id: str) -> bool:
        try:
            description = await self._client.get_workflow_handle(execution_id).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:  # gone past the namespace's retention
                return False
            raise
        return description.status is WorkflowExecutionStatus.RUNNING  # the latest run of that id
