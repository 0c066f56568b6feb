"""A drill killed with its worker: the worker dies mid-wave, the run is terminated (nobody is left to clean up) and
its DRS jobs go on launching. `drctl drill cleanup <id>`, as an operator runs it later, removes every leftover."""

from __future__ import annotations

import asyncio
import os

import pytest

from contracts.lifecycle import RunStatus
from tests.cli_helpers import DRCTL
from tests.faults.evidence import drill_instances, launch_jobs, rds_drill_copies
from tests.faults.runs import outcome, until_wave_in_flight
from tests.faults.stack import INITIATOR, Stack

pytestmark = pytest.mark.faults


async def test_drctl_drill_cleanup_removes_a_killed_drills_leftovers(stack: Stack) -> None:
    queue = "faults-leftovers"
    plan, handle = await stack.drill(queue)
    await until_wave_in_flight(handle, "app")
    stack.kill(stack.workers[-1])
    await handle.terminate(reason="worker host lost in the drill")
    for _ in range(120):  # the app job launches on without anyone watching
        if all(j["status"] == "COMPLETED" for j in launch_jobs(plan, handle.id)):
            break
        await asyncio.sleep(0.5)
    planted = drill_instances(plan)
    assert len(planted) >= 4 and rds_drill_copies(plan), (planted, rds_drill_copies(plan))

    stack.add_worker(queue)
    env = {**os.environ, **stack.aws_env(), "TEMPORAL_ADDRESS": stack.address, "TEMPORAL_TASK_QUEUE": queue,
           "DRCTL_TOKEN": stack.idp.token(INITIATOR, ["operator"], ttl_seconds=3600)}
    process = await asyncio.create_subprocess_exec(DRCTL, "drill", "cleanup", handle.id, "--wait", env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, (out.decode(), err.decode())
    cleanup = await outcome((await stack.client()).get_workflow_handle(out.decode().splitlines()[0]))
    assert cleanup.status is RunStatus.COMPLETED, cleanup.error
    assert all(rid in out.decode() for rid in planted), out.decode()  # the report names what it removed
    assert drill_instances(plan) == [] and rds_drill_copies(plan) == []
