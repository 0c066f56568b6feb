"""DRS misbehaving under a three-tier drill: every call failing for a while, throttles and errors at random."""

from __future__ import annotations

import asyncio
import time

import pytest

from contracts.lifecycle import RunStatus
from tests.faults.runs import assert_nothing_doubled_or_left, outcome, until_wave_in_flight
from tests.faults.stack import Stack

pytestmark = pytest.mark.faults


async def test_drs_failing_every_call_for_20_seconds(stack: Stack) -> None:
    """An outage shorter than the activities' retries is ridden out: the drill completes as if nothing happened."""
    plan, handle = await stack.drill("faults-drs-outage")
    await until_wave_in_flight(handle, "app")
    stack.admin("faults", {"errorRate": 1.0})
    await asyncio.sleep(20)
    stack.admin("faults", {"errorRate": 0.0})
    state = await outcome(handle)
    assert state.status is RunStatus.COMPLETED, state.error
    assert_nothing_doubled_or_left(plan, handle.id)


async def test_throttle_and_error_storm(stack: Stack) -> None:
    """30 % of DRS calls throttled and 10 % failing for the whole drill: retries absorb it, nothing is doubled."""
    started = time.monotonic()
    try:
        plan, handle = await stack.drill("faults-drs-storm", faults={"throttleRate": 0.3, "errorRate": 0.1})
        state = await outcome(handle, seconds=420)
    finally:
        stack.admin("faults", {"throttleRate": 0.0, "errorRate": 0.0})
    assert state.status is RunStatus.COMPLETED, state.error
    assert_nothing_doubled_or_left(plan, handle.id)
    assert time.monotonic() - started < 400
