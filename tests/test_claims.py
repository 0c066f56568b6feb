"""Claims: one real failover per plan at a time, and a DRS source server recovered by one run at a time, also when
two runs resolve it at the same moment (issue 12, item 6)."""

from __future__ import annotations

import asyncio
import uuid


from contracts.claims import PLANS_SCOPE, ClaimRequest, Holder, claims_workflow_id, drs_scope
from contracts.drs_recovery import ServerStatus
from contracts.lifecycle import RunOptions, RunStatus
from plans.model import Mode, Phase
from sandbox.drs.models import DrsWorld
from tests.conftest import HUB_ACCOUNT
from tests.lifecycle_helpers import control, finish, make_plan, send, start_run, status_of, wait_resource, wait_until
from tests.test_drs_recovery import REGION, child_state, drs_plan, estate
from workflows.claims import ClaimBook

MANAGER = control("manager@example.com", roles=("plan-manager",))  # approves drills
RECOVERY_MANAGER = control("rm@example.com", roles=("recovery-manager",))  # approves real failovers


def holder(run: str, mode: Mode = Mode.DRILL) -> Holder:
    return Holder(execution_id=run, mode=mode, plan_name="p")


def test_the_book_grants_holds_hands_over_and_lets_a_failover_go_first():
    book = ClaimBook({})
    drill_a, drill_b, failover = holder("a"), holder("b"), holder("f", Mode.DISASTER)
    first = book.claim(ClaimRequest(scope="s", keys=["s-1", "s-2"], holder=drill_a))
    assert first.granted == ["s-1", "s-2"] and not first.held
    again = book.claim(ClaimRequest(scope="s", keys=["s-1"], holder=drill_a))  # a retried activity
    assert again.granted == ["s-1"]
    second = book.claim(ClaimRequest(scope="s", keys=["s-2", "s-3"], holder=drill_b))
    assert second.granted == ["s-3"] and second.held == {"s-2": drill_a}
    handed = book.claim(ClaimRequest(scope="s", keys=["s-2"], holder=drill_b, evict=["a"]))  # a closed
    assert handed.granted == ["s-2"] and book.claims["s-2"] == drill_b and book.claims["s-1"] == drill_a
    taken = book.claim(ClaimRequest(scope="s", keys=["s-1", "s-3"], holder=failover))
    assert taken.granted == ["s-1", "s-3"] and taken.taken_from == {"s-1": drill_a, "s-3": drill_b}
    # A drill never takes from a real failover, nor one failover from another.
    assert book.claim(ClaimRequest(scope="s", keys=["s-1"], holder=drill_a)).held == {"s-1": failover}
    other = holder("g", Mode.PLANNED)
    assert book.claim(ClaimRequest(scope="s", keys=["s-1"], holder=other)).held == {"s-1": failover}


def gated_plan(name: str):
    return make_plan({"ACTIVATE": [{"name": "gated", "approvalRequired": True,
                                    "resources": [wait_resource("work", 1)]}]}, name=name)


async def test_one_real_failover_per_plan_at_a_time(worker):
    plan = gated_plan(f"claimed-{uuid.uuid4().hex[:6]}")
    first = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED)
    await wait_until(first, lambda s: s.pending_gate() is not None)
    # A second real failover of the plan, of any kind, is refused at once, naming the one under way.
    for mode in (Mode.PLANNED, Mode.DISASTER, Mode.FAILBACK):
        second = await start_run(worker.client, worker.task_queue, plan, mode=mode)
        result = await asyncio.wait_for(finish(second), 30)
        assert result.status is RunStatus.REJECTED, result.message
        assert result.message == (f"start refused: run {first.id} (planned of plan {plan.name}) is under way, and "
                                  "a plan has one real failover at a time"), result.message
        assert all(p.status.value == "SKIPPED" and p.started_at is None for p in (await status_of(second)).phases)
    # A drill of the same plan is not a failover: it goes on (its DRS servers are claimed wave by wave).
    drill = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    await wait_until(drill, lambda s: s.pending_gate() is not None)
    await send(drill, "approve", MANAGER)
    assert (await finish(drill)).status is RunStatus.COMPLETED
    # The claim lasts while its run is open: once the first has ended, the next failover runs.
    await send(first, "approve", RECOVERY_MANAGER)
    assert (await finish(first)).status is RunStatus.COMPLETED
    third = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DISASTER)
    await wait_until(third, lambda s: s.pending_gate() is not None)
    # A run killed outright releases nothing, and nothing has to: its claim is void once it is closed.
    await third.terminate(reason="operator gave up")
    fourth = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED)
    await wait_until(fourth, lambda s: s.pending_gate() is not None)
    await send(fourth, "approve", RECOVERY_MANAGER)
    assert (await finish(fourth)).status is RunStatus.COMPLETED
    entity = worker.client.get_workflow_handle(claims_workflow_id(worker.task_queue, PLANS_SCOPE))
    claims = await entity.query("claims", result_type=dict[str, Holder])
    assert claims[plan.name].execution_id == fourth.id
    description = await entity.describe()
    assert await description.static_summary() == f"Claims of {PLANS_SCOPE}: which run holds what"


async def test_two_drills_resolving_the_same_servers_at_once_never_share_one(worker, world: DrsWorld):
    app = estate(world, {"db": 3})
    # Slow launches keep the first drill's wave open while the second resolves.
    plan = drs_plan(f"claims-{app}", app, waves=[{"name": "db", "protectionGroups": ["db"]}],
                    groups={"db": {"tags": {"Tier": "db"}}}, cleanup=False)
    options = RunOptions(phases=["ACTIVATE"])
    runs = await asyncio.gather(*(start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL, options=options)
                                  for _ in range(2)))
    outcomes = await asyncio.gather(*(asyncio.wait_for(_end_of(run), 120) for run in runs))
    children = [await child_state(worker, run.id, "ACTIVATE") for run in runs]
    winners = [n for n, child in enumerate(children)
               if all(s.status is ServerStatus.LAUNCHED for s in child.servers.values())]
    assert len(winners) == 1, [(o, [(s.id, s.status, s.detail) for s in c.servers.values()])
                               for o, c in zip(outcomes, children)]
    winner = runs[winners[0]]
    lost = children[1 - winners[0]]
    assert set(lost.servers) == set(children[winners[0]].servers) and len(lost.servers) == 3
    for server in lost.servers.values():
        assert server.status is ServerStatus.NOT_RECOVERABLE and server.job_id is None
        assert server.detail == f"claimed by run {winner.id} (drill of plan {plan.name})", server.detail
    assert outcomes[1 - winners[0]] is RunStatus.FAILED and outcomes[winners[0]] is RunStatus.COMPLETED
    entity = worker.client.get_workflow_handle(
        claims_workflow_id(worker.task_queue, drs_scope(f"{HUB_ACCOUNT}/{REGION}")))
    claims = await entity.query("claims", result_type=dict[str, Holder])
    assert {claims[sid].execution_id for sid in lost.servers} == {winner.id}


async def test_a_failover_takes_the_servers_of_a_finished_drill_wave_and_says_so(worker, world: DrsWorld):
    app = estate(world, {"db": 2})
    plan = drs_plan(f"takeover-{app}", app, waves=[{"name": "db", "protectionGroups": ["db"]}],
                    groups={"db": {"tags": {"Tier": "db"}}}, cleanup=False)
    # The drill's ACTIVATE has launched its servers; it waits at a gate before anything else: still open.
    gated = plan.model_copy(deep=True)
    gated.phases[Phase.CLEANUP] = make_plan({"CLEANUP": [{"name": "hold", "approvalRequired": True,
                                                      "resources": [wait_resource("w")]}]}).phases[Phase.CLEANUP]
    drill = await start_run(worker.client, worker.task_queue, gated, mode=Mode.DRILL)
    await wait_until(drill, lambda s: s.pending_gate() is not None, timeout=120)
    failover = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DISASTER,
                               options=RunOptions(phases=["ACTIVATE"]))
    assert (await asyncio.wait_for(_end_of(failover), 120)) is RunStatus.COMPLETED
    servers = (await child_state(worker, failover.id, "ACTIVATE")).servers
    drill_servers = (await child_state(worker, drill.id, "ACTIVATE")).servers
    assert set(servers) == set(drill_servers) and len(servers) == 2
    for server in servers.values():
        assert server.status is ServerStatus.LAUNCHED
        assert server.taken_from == f"run {drill.id} (drill of plan {plan.name})", server
    await drill.terminate(reason="test over")


async def _end_of(handle) -> RunStatus:
    try:
        await handle.result()
    except Exception:
        pass
    return (await status_of(handle)).status




async def test_the_claims_entity_continues_as_new_with_its_claims(worker):
    """Its history stays small: after UPDATES_PER_RUN answers it continues as new, and no claim is lost, also one
    asked for while it turns over."""
    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy
    from temporalio.service import RPCError

    from contracts.claims import CLAIM_UPDATE, CLAIMS_WORKFLOW_TYPE, ClaimResult, ClaimsInput
    from workflows.claims import UPDATES_PER_RUN

    scope = f"test/{uuid.uuid4().hex[:8]}"
    workflow_id = claims_workflow_id(worker.task_queue, scope)

    async def ask(n: int) -> ClaimResult:
        request = ClaimRequest(scope=scope, keys=[f"k-{n}"], holder=holder(f"run-{n % 3}"))
        while True:  # as the claim activity's retry policy does: aborted at a turn-over, or too many at once
            start = WithStartWorkflowOperation(CLAIMS_WORKFLOW_TYPE, ClaimsInput(scope=scope), id=workflow_id,
                                               task_queue=worker.task_queue,
                                               id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
            try:
                return await worker.client.execute_update_with_start_workflow(
                    CLAIM_UPDATE, request, start_workflow_operation=start, result_type=ClaimResult)
            except RPCError:
                await asyncio.sleep(0.5)

    first_run = None
    # 8 at a time: within the server's limit of in-flight updates per workflow (10 on the dev server); beyond it
    # claims are refused for a moment and asked again (the claim activity's retry policy backs off for that).
    total = (UPDATES_PER_RUN // 8 + 3) * 8  # past the turn-over
    for batch in range(0, total, 8):
        results = await asyncio.gather(*(ask(n) for n in range(batch, batch + 8)))
        assert all(len(r.granted) == 1 for r in results)
        if first_run is None:
            first_run = (await worker.client.get_workflow_handle(workflow_id).describe()).run_id
    entity = worker.client.get_workflow_handle(workflow_id)
    assert (await entity.describe()).run_id != first_run
    claims = await entity.query("claims", result_type=dict[str, Holder])
    assert len(claims) == total and claims["k-7"].execution_id == "run-1"
    await entity.terminate(reason="test over")
