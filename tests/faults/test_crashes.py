"""Crashes of anything in a drill's path, on the three-tier plan: the Temporal server killed mid-wave, workers
killed one after another. Each drill must complete, start no DRS job twice and leave no drill instance."""

from __future__ import annotations

import asyncio
import time

import pytest

from contracts.lifecycle import RunStatus
from tests.faults.runs import assert_nothing_doubled_or_left, outcome, until_wave_in_flight
from tests.faults.stack import Stack

pytestmark = pytest.mark.faults


async def test_temporal_server_killed_mid_wave(stack: Stack) -> None:
    started = time.monotonic()
    plan, handle = await stack.drill("faults-server-kill")
    await until_wave_in_flight(handle, "app")
    stack.kill(stack.temporal)
    await asyncio.sleep(3)  # down for a while: the worker's polls and the activities' heartbeats fail meanwhile
    stack.restart_temporal()
    state = await outcome(handle)
    assert state.status is RunStatus.COMPLETED, state.error
    assert_nothing_doubled_or_left(plan, handle.id)
    assert time.monotonic() - started < 240


async def test_workers_killed_three_times(stack: Stack) -> None:
    queue = "faults-worker-kills"
    plan, handle = await stack.drill(queue, workers=2)
    # One kill per DRS wave, of whichever worker was started longest ago; a new one replaces it each time.
    alive = list(stack.workers[-2:])
    for wave in ("db", "app", "web"):
        await until_wave_in_flight(handle, wave)
        stack.kill(alive.pop(0))
        alive.append(stack.add_worker(queue))
    state = await outcome(handle)
    assert state.status is RunStatus.COMPLETED, state.error
    assert_nothing_doubled_or_left(plan, handle.id)
