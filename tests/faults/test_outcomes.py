"""A server whose conversion hangs, in a wave that tolerates it and in one that does not: the wave's timeout is judged
by the same rules as a launch failure (impact, maxFailedPercent), and the drill cleans up after itself once DRS gives
up on the server (its job holds the other servers' instances until then); a job DRS never ends is waited for a
bounded time, then the instances it holds are named as left, never hidden."""

from __future__ import annotations

import time

import pytest

from contracts.lifecycle import RunStatus
from tests.faults.evidence import drill_instances, rds_drill_copies
from tests.faults.runs import outcome
from tests.faults.stack import Stack

pytestmark = pytest.mark.faults

# The waves given a one-minute timeout (the least a plan may set), so a stuck server is given up on quickly.
REPORTING = ("""                  dependsOn: [db]
                  maxFailedPercent: 50""", """                  dependsOn: [db]
                  maxFailedPercent: 50
                  timeoutSeconds: 60""")
DB = ("""                  protectionGroups: [db-tier]
                  timeoutSeconds: 3600""", """                  protectionGroups: [db-tier]
                  timeoutSeconds: 60""")


@pytest.mark.parametrize(("edit", "host", "ends"), [
    pytest.param(REPORTING, "orders-report-01", RunStatus.PARTIAL, id="optional-within-policy-partial"),
    pytest.param(DB, "orders-db-01", RunStatus.FAILED, id="critical-failed"),
])
async def test_a_stuck_server_is_judged_by_its_impact_and_the_drill_cleans_up(
        stack: Stack, edit: tuple[str, str], host: str, ends: RunStatus) -> None:
    started = time.monotonic()
    plan, handle = await stack.drill(f"faults-stuck-{host}", edit=edit,
                                     faults={"stuckServers": [f"{host}.corp.example.com"], "stuckSeconds": 80})
    state = await outcome(handle)
    assert state.status is ends, (state.status, state.error)
    assert host in (state.error or ""), state.error
    assert drill_instances(plan) == [] and rds_drill_copies(plan) == []
    assert time.monotonic() - started < 180


async def test_an_instance_held_by_the_stuck_job_is_named_as_left(stack: Stack) -> None:
    """Both reporting servers in one job: one launched, the other stuck for ever. DRS refuses to terminate the
    launched one while the job runs: the cleanup waits a while, terminates everything else, and the run ends FAILED
    naming the instance left and how to remove it later (not COMPLETED, not PARTIAL)."""
    plan, handle = await stack.drill("faults-stuck-forever", edit=REPORTING,
                                     faults={"stuckServers": ["orders-report-01.corp.example.com"]})
    state = await outcome(handle)
    assert state.status is RunStatus.FAILED, (state.status, state.error)
    left = drill_instances(plan)
    assert len(left) == 1 and left[0] in (state.error or ""), (left, state.error)
    assert "LEFT RUNNING" in (state.error or "") and f"drctl drill cleanup {handle.id}" in (state.error or "")
    assert rds_drill_copies(plan) == []
