"""Waits that are workflow timers, at their real configured length, on the time-skipping test server: approval gate
timeouts and control.wait (also with its length read from SSM when the resource starts)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import boto3
import pytest
from temporalio.testing import WorkflowEnvironment

from plans.model import Mode, Plan
from tests.aws_helpers import unique
from tests.identity_helpers import session_idp
from tests.lifecycle_helpers import make_plan, resource, start_run, status_of, timer_summaries, wait_resource
from tests.test_governance import INITIATOR, gated_plan, result_of
from contracts.lifecycle import LifecycleState, RunOptions, RunStatus, StepStatus


@pytest.mark.parametrize("mode, on_timeout, expected", [
    (Mode.DRILL, "abort", RunStatus.REJECTED),
    (Mode.DRILL, "continue", RunStatus.COMPLETED),
    (Mode.PLANNED, "continue", RunStatus.REJECTED),  # only a drill may go on unapproved
])
async def test_gate_timeouts_at_their_configured_length(skipping_worker, skipping_env, mode, on_timeout, expected):
    plan = gated_plan(f"timeout-{mode.value}-{on_timeout}", {"timeoutMinutes": 30, "onTimeout": on_timeout})
    began = time.monotonic()
    handle = await _start(skipping_worker, skipping_env, plan, mode=mode)
    result = await result_of(handle)
    assert result.status is expected, result.message
    assert time.monotonic() - began < 60  # 30 minutes of run time, skipped
    gate = (await status_of(handle)).gates[0]
    assert gate.decision == "timed-out" and "no decision within 30 min" in gate.reason
    assert gate.timeout_at is not None and gate.timeout_at - gate.requested_at == timedelta(minutes=30)
    assert gate.decided_at is not None and gate.decided_at >= gate.timeout_at
    assert "approval gate ACTIVATE/gated times out" in await timer_summaries(handle)


async def test_a_wait_takes_its_full_length_as_a_timer(skipping_worker, skipping_env):
    plan = make_plan({"ACTIVATE": [
        {"name": "dns", "resources": [{"name": "ttl", "action": "control.wait", "parameters": {"seconds": 900, "reason": "DNS TTL"}}]},
        {"name": "after", "resources": [wait_resource("warm-up", 120)]},
    ]}, name="long-wait")
    handle, state = await _finished(skipping_worker, skipping_env, plan)
    ttl, warm = resource(state, "ACTIVATE", "dns", "ttl"), resource(state, "ACTIVATE", "after", "warm-up")
    assert ttl.status is StepStatus.SUCCEEDED and ttl.message == "waited 900 s (DNS TTL)"
    assert ttl.handle["until"] == (ttl.started_at + timedelta(seconds=900)).isoformat()
    assert ttl.ended_at - ttl.started_at >= timedelta(seconds=900)
    assert warm.started_at >= ttl.ended_at and warm.ended_at - warm.started_at >= timedelta(seconds=120)
    # Each resource also runs under its layer's timeout: a timer the UI names too, not a bare "1 (1h)".
    assert await timer_summaries(handle) == [
        "ACTIVATE / dns / ttl: layer timeout (3600 s)", "ttl: wait 900 s (DNS TTL)",
        "ACTIVATE / after / warm-up: layer timeout (3600 s)", "warm-up: wait 120 s"]


async def test_a_wait_read_from_ssm_waits_the_value_read(skipping_worker, skipping_env):
    """`resolve:ssm:` is read by an activity when the resource starts: the timer is as long as the value read."""
    name = f"/{unique('ttl')}/seconds"
    boto3.client("ssm", region_name="us-west-2").put_parameter(Name=name, Value="600", Type="String")
    plan = make_plan({"ACTIVATE": [{"name": "dns", "resources": [
        {"name": "ttl", "action": "control.wait",
         "parameters": {"seconds": f"resolve:ssm:{name}", "reason": "TTL from SSM"}}]}]},
        name="ssm-wait")
    handle, state = await _finished(skipping_worker, skipping_env, plan)
    ttl = resource(state, "ACTIVATE", "dns", "ttl")
    assert ttl.status is StepStatus.SUCCEEDED and ttl.message == "waited 600 s (TTL from SSM)"
    assert ttl.ended_at - ttl.started_at >= timedelta(seconds=600)
    assert await timer_summaries(handle) == ["ACTIVATE / dns / ttl: layer timeout (3600 s)",
                                             "ttl: wait 600 s (TTL from SSM)"]


async def _start(running: Any, env: WorkflowEnvironment, plan: Plan, mode: Mode = Mode.DRILL) -> Any:
    """A run whose token is valid by the server's clock: each run's wait for its result lets the server move that
    clock on, also past the last timer (years, once nothing is left to fire), so the wall clock is no reference."""
    token = session_idp().token(INITIATOR, ["admin"], now=(await env.get_current_time()).timestamp())
    return await start_run(running.client, running.task_queue, plan, mode=mode, options=RunOptions(),
                           initiator=INITIATOR, token=token)


async def _finished(running: Any, env: WorkflowEnvironment, plan: Plan) -> tuple[Any, LifecycleState]:
    began = time.monotonic()
    handle = await _start(running, env, plan)
    result = await handle.result()
    assert result.status is RunStatus.COMPLETED, result.message
    assert time.monotonic() - began < 60  # minutes of waiting, skipped
    return handle, await status_of(handle)
