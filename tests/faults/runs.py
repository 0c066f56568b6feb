"""Following runs through crashes: waits that ride out a Temporal server that is down for a while."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from contracts.drs_recovery import DrsRecoveryState
from contracts.lifecycle import LifecycleState

T = TypeVar("T")


async def patiently(call: Callable[[], Awaitable[T]], seconds: float = 120) -> T:
    """`call()` again while the server is unreachable (restarting), up to `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except RPCError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def outcome(handle: WorkflowHandle[Any, Any], seconds: float = 300) -> LifecycleState:
    """The run's final state once it has closed (completed or failed alike), read by the `status` query."""
    async def closed() -> None:
        try:
            await handle.result()
        except WorkflowFailureError:
            pass

    await asyncio.wait_for(patiently(closed, seconds), seconds)
    return await patiently(lambda: handle.query("status", result_type=LifecycleState))


async def drs_state(handle: WorkflowHandle[Any, Any], phase: str = "ACTIVATE") -> DrsRecoveryState | None:
    """The DRS child's state in `phase` of the three-tier plan (layer and resource `servers`), None before it runs."""
    child = handle._client.get_workflow_handle(f"{handle.id}/{phase}/servers/servers")
    try:
        return await child.query("status", result_type=DrsRecoveryState)
    except Exception:  # not started yet, or the server is restarting
        return None


async def until_wave_in_flight(handle: WorkflowHandle[Any, Any], wave: str, seconds: float = 180) -> None:
    """Until a DRS job of `wave` is running (started, not settled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = await drs_state(handle)
        if state and any(c.active and c.wave == wave for c in state.chunks):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"wave {wave} never had a job in flight within {seconds:.0f} s")


def jobs_per_chunk(jobs: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """(wave, chunk) -> how many LAUNCH jobs DRS holds for it: 1 everywhere, or a job was started twice."""
    return Counter((j["tags"]["dr:wave"], j["tags"]["dr:chunk"]) for j in jobs)


def assert_nothing_doubled_or_left(plan: Any, execution_id: str) -> None:
    """One DRS job per wave chunk (a second one would be a second recovery of the same servers), and no drill
    recovery instance or RDS drill copy left in the plan's accounts."""
    from tests.faults.evidence import drill_instances, launch_jobs, rds_drill_copies

    counts = jobs_per_chunk(launch_jobs(plan, execution_id))
    assert counts and set(counts.values()) == {1}, counts
    assert drill_instances(plan) == [], "drill instances left"
    assert rds_drill_copies(plan) == [], "RDS drill copies left"
