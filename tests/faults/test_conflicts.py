"""Three drills of one plan started together: they contend for the same servers. One recovers them; the others end
within two minutes, each naming the run that holds its servers; none leaves anything behind."""

from __future__ import annotations

import asyncio
import time

import pytest

from contracts.lifecycle import RunStatus
from tests.faults.evidence import launch_jobs
from tests.faults.runs import assert_nothing_doubled_or_left, outcome
from tests.faults.stack import Stack

pytestmark = pytest.mark.faults


async def test_three_drills_of_one_plan_at_once(stack: Stack) -> None:
    queue = "faults-three-drills"
    plan, first = await stack.drill(queue, workers=2)
    client = await stack.client()
    handles = [first, *[await stack.start_drill(client, queue, plan) for _ in range(2)]]
    started = time.monotonic()
    ended: dict[str, float] = {}

    async def follow(handle):  # type: ignore[no-untyped-def]
        state = await outcome(handle, seconds=420)
        ended[handle.id] = time.monotonic() - started
        return state

    states = await asyncio.gather(*(follow(h) for h in handles))
    winners = [s for s in states if s.status is RunStatus.COMPLETED]
    assert len(winners) == 1, [(s.workflow_id, s.status, s.error) for s in states]
    winner = winners[0]
    for loser in (s for s in states if s is not winner):
        assert loser.status is RunStatus.FAILED, (loser.status, loser.error)
        assert winner.workflow_id in (loser.error or ""), loser.error
        assert ended[loser.workflow_id] < 120, f"{loser.workflow_id} ended after {ended[loser.workflow_id]:.0f} s"
        assert not launch_jobs(plan, loser.workflow_id)  # its servers were held: it launched none
    assert_nothing_doubled_or_left(plan, winner.workflow_id)
