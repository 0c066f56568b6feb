"""DrClaimsWorkflow: the claims of one scope (the plans, or one account+region's DRS source servers), decided one
request at a time; and `claim`, how a run asks for them. See contracts/claims.py for what is claimed and why.

The entity lives as long as claims are asked for: it is started by the first claim (update-with-start, by the claim
activity) and continues as new with its claims when its history grows.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.timeouts import heartbeat

with workflow.unsafe.imports_passed_through():
    from contracts.claims import (
        CLAIM,
        CLAIM_UPDATE,
        CLAIMS_WORKFLOW_TYPE,
        ClaimRequest,
        ClaimResult,
        PLANS_SCOPE,
        ClaimsInput,
        Holder,
        drs_scope,
    )
    from contracts.drs import ResolvedServer
    from contracts.drs_recovery import DrsRecoveryInput
    from plans.model import Mode

# Runs (and DRS children) recorded before claims existed replay without them.
PLAN_CLAIM_PATCH = "plan-claim"
SERVER_CLAIMS_PATCH = "server-claims"

# Temporal refuses an update beyond a workflow's in-flight limit (RESOURCE_EXHAUSTED) and aborts one that meets a
# continue-as-new: both pass in moments, and a claim asked again is granted again. So: soon and often, for minutes.
CLAIM_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), backoff_coefficient=1.5,
                          maximum_interval=timedelta(seconds=5))

# Requests answered before continuing as new: a few thousand events, far from Temporal's limits, small to replay.
UPDATES_PER_RUN = 500


class ClaimBook:
    """Who holds which key of the scope. Deterministic: the workflow applies requests in the order it accepts them."""

    def __init__(self, claims: dict[str, Holder]) -> None:
        self.claims = dict(claims)

    def claim(self, request: ClaimRequest) -> ClaimResult:
        result = ClaimResult()
        evicted = set(request.evict)
        for key in request.keys:
            holder = self.claims.get(key)
            if holder is None or holder.execution_id in (request.holder.execution_id, *evicted):
                self.claims[key] = request.holder
                result.granted.append(key)
            elif request.holder.mode.changes_production and not holder.mode.changes_production:
                self.claims[key] = request.holder  # a real failover goes before a drill
                result.granted.append(key)
                result.taken_from[key] = holder
            else:
                result.held[key] = holder
        return result

    def holders(self) -> Counter[str]:
        return Counter(holder.execution_id for holder in self.claims.values())


@workflow.defn(name=CLAIMS_WORKFLOW_TYPE)
class DrClaimsWorkflow:
    @workflow.init
    def __init__(self, input: ClaimsInput) -> None:
        self._scope = input.scope
        self._book = ClaimBook(input.claims)
        self._answered = 0

    @workflow.run
    async def run(self, input: ClaimsInput) -> None:
        self._show()
        await workflow.wait_condition(
            lambda: self._answered >= UPDATES_PER_RUN or workflow.info().is_continue_as_new_suggested())
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(ClaimsInput(scope=self._scope, claims=self._book.claims))

    @workflow.update(name=CLAIM_UPDATE)
    def claim(self, request: ClaimRequest) -> ClaimResult:
        result = self._book.claim(request)
        self._answered += 1
        self._show()
        return result

    @workflow.query(name="claims")
    def claims(self) -> dict[str, Holder]:
        return self._book.claims

    def _show(self) -> None:
        # The run page of the entity says what it is and who holds what (holders may have closed since).
        lines = [f"- `{h}`: {n} key(s)" for h, n in sorted(self._book.holders().items())[:50]]
        workflow.set_current_details(
            f"Claims of **{self._scope}**: which run holds what, so that two runs never act on the same thing at once. "
            f"A claim lasts while its run is open.\n\n" + ("\n".join(lines) or "nothing claimed"))


async def claim(request: ClaimRequest, what: str) -> ClaimResult:
    """Claims `request.keys` for the run through the claim activity (it reaches the scope's entity); `what` is the
    activity's summary."""
    return await workflow.execute_activity(
        CLAIM, request, result_type=ClaimResult, start_to_close_timeout=timedelta(minutes=1),
        heartbeat_timeout=heartbeat(), schedule_to_close_timeout=timedelta(minutes=10), retry_policy=CLAIM_RETRY,
        summary=what)


async def claim_plan(execution_id: str, mode: Mode, plan_name: str) -> str | None:
    """For a run that changes production: the plan, so that no other real failover of it runs at the same time.
    None when the run may go on; else why not. Drills claim no plan (their servers are claimed wave by wave)."""
    if not mode.changes_production or not workflow.patched(PLAN_CLAIM_PATCH):
        return None
    holder = Holder(execution_id=execution_id, mode=mode, plan_name=plan_name)
    result = await claim(ClaimRequest(scope=PLANS_SCOPE, keys=[plan_name], holder=holder),
                         f"claim plan {plan_name} for this {mode.value} run: one real failover per plan at a time")
    other = result.held.get(plan_name)
    if other is None:
        return None
    return f"start refused: {other.describe()} is under way, and a plan has one real failover at a time"


async def claim_servers(input: DrsRecoveryInput, wave: str, servers: list[ResolvedServer]) -> dict[str, str]:
    """Claims a wave's recoverable servers for the run, per account+region. A server another open run holds gets
    the problem that says so (it is not recovered here); what a real failover took over from a drill comes back:
    server id -> the drill."""
    if not workflow.patched(SERVER_CLAIMS_PATCH):
        return {}
    holder = Holder(execution_id=input.execution_id, mode=input.mode, plan_name=input.plan_name)
    per_target: dict[str, list[ResolvedServer]] = {}
    for server in servers:
        if not server.problem:
            per_target.setdefault(server.target_key, []).append(server)
    keys = sorted(per_target)  # one order on every worker
    results = await asyncio.gather(*(
        claim(ClaimRequest(scope=drs_scope(key), keys=[s.id for s in per_target[key]], holder=holder),
              f"wave {wave}: claim {len(per_target[key])} source server(s) in {key} for this run")
        for key in keys))
    taken: dict[str, str] = {}
    for key, result in zip(keys, results, strict=True):
        for server in per_target[key]:
            if server.id in result.held:
                server.problem = f"claimed by {result.held[server.id].describe()}"
        taken.update((sid, drill.describe()) for sid, drill in sorted(result.taken_from.items()))
    if taken:
        workflow.logger.warning("wave %s: %d server(s) taken over from drills: %s", wave, len(taken), taken)
    return taken
