"""Crashes in the path: a worker killed with SIGKILL in the middle of a wave, then restarted; a worker killed in
the middle of a resource start while another one is up."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowHandle

from contracts.activities import RESOURCE_START
from plans.model import Mode, Phase
from sandbox.drs.models import reset_world
from tests.aws_helpers import sandbox_admin
from tests.cli_helpers import start_worker, stop_worker, worker_env
from tests.lifecycle_helpers import last_start, make_plan, start_run, status_of
from tests.test_drs_recovery import REGION, drs_plan, estate, jobs_of
from tests.test_hooks import GREETING_DOC, automation_document
from contracts.drs_recovery import DrsRecoveryState
from contracts.lifecycle import LifecycleResult, RunOptions, RunStatus, StepStatus

QUEUE = "durability-test"


async def test_a_worker_killed_mid_wave_restarts_without_duplicate_jobs(worker, temporal_env, sandbox, tmp_path):
    world = reset_world(time_scale=2, seed=9)  # slow jobs (about 5 s), so the kill lands while one is running
    try:
        app = estate(world, {"db": 3, "app": 4, "web": 5})
        plan = drs_plan(f"crash-{uuid.uuid4().hex[:4]}", app, waves=[
            {"name": "db", "protectionGroups": ["db"]},
            {"name": "app", "protectionGroups": ["app"], "dependsOn": ["db"]},
            {"name": "web", "protectionGroups": ["web"], "dependsOn": ["app"]},
        ], groups={"db": {"tags": {"Tier": "db"}}, "app": {"tags": {"Tier": "app"}},
                   "web": {"tags": {"Tier": "web"}}}, cleanup=False)
        env = worker_env(temporal_env, QUEUE)
        log = tmp_path / "worker.log"
        first = await start_worker(env, log)
        handle = await start_run(worker.client, QUEUE, plan, mode=Mode.DRILL, options=RunOptions(phases=["ACTIVATE"]))
        child = worker.client.get_workflow_handle(f"{handle.id}/ACTIVATE/servers/servers")

        async def in_flight() -> DrsRecoveryState:
            for _ in range(300):
                try:
                    state = await child.query("status", result_type=DrsRecoveryState)
                    if any(c.active and c.wave == "app" for c in state.chunks):
                        return state
                except Exception:  # the child may not have started yet
                    pass
                await asyncio.sleep(0.1)
            raise AssertionError("the app wave never had a job in flight")

        await in_flight()
        os.killpg(first.pid, signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        second = await start_worker(env, tmp_path / "second.log")
        try:
            result = await asyncio.wait_for(handle.result(), timeout=240)
            state = await status_of(handle)  # a query needs a live worker: ask before stopping it
        finally:
            await stop_worker(second)
        assert isinstance(result, LifecycleResult) and result.status is RunStatus.COMPLETED, result.message

        # As many jobs as an uninterrupted run (one per wave here), none started twice.
        jobs: list[dict[str, Any]] = [j for j in jobs_of(boto3.client("drs", region_name=REGION), handle.id)
                                      if j["type"] == "LAUNCH"]
        keys = [(j["tags"]["dr:wave"], j["tags"]["dr:chunk"]) for j in jobs]
        assert sorted(keys) == [("app", "0"), ("db", "0"), ("web", "0")], keys
        assert world.errors_returned.get("ConflictException", 0) == 0
        servers = state.phases[0].layers[0].resources[0]
        assert servers.outputs["launched"] == 12 and servers.outputs["jobs"] == 3
    finally:
        reset_world()


async def _holder_of(handle: WorkflowHandle[Any, Any], activity_type: str, timeout: float = 60) -> int:
    """The PID of the worker running `activity_type` of the run (a worker's identity is "PID@host")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pending in (await handle.describe()).raw_description.pending_activities:
            if pending.activity_type.name == activity_type and \
                    pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                return int(pending.last_worker_identity.split("@")[0])
        await asyncio.sleep(0.2)
    raise AssertionError(f"no worker started {activity_type} in {timeout} s")


async def test_a_worker_killed_in_a_resource_start_costs_a_heartbeat_timeout(worker, temporal_env, sandbox,
                                                                             tmp_path):
    """Two workers; the one running an INSTANTIATE resource's start (an SSM Automation whose start call the sandbox
    answers late) is killed: the start is retried on the other after about the heartbeat timeout (20 s), not after
    its 5-minute start-to-close, and starts one automation, not two. The retried call is answered late as well
    (25 s): the other worker's keep-alive heartbeats hold it past the heartbeat timeout."""
    document = automation_document(GREETING_DOC)
    plan = make_plan({"INSTANTIATE": [{"name": "prepare", "resources": [
        {"name": "runbook", "action": "hook.ssm_automation",
         "parameters": {"documentName": document, "parameters": {"Who": ["kill"]}}}]}]},
        name=f"kill-start-{uuid.uuid4().hex[:4]}")
    queue = f"kill-start-{uuid.uuid4().hex[:6]}"
    env = worker_env(temporal_env, queue)
    workers = [await start_worker(env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    try:
        for seconds in (60, 25):  # the killed worker's call, then the retry's
            sandbox_admin(sandbox.url, "delays", {"operation": "StartAutomationExecution", "seconds": seconds})
        handle = await start_run(worker.client, queue, plan, options=RunOptions(phases=["INSTANTIATE"]))
        holder = await _holder_of(handle, RESOURCE_START)
        while len(sandbox_admin(sandbox.url, "state")["delays"]) == 2:  # until its call reached the sandbox
            await asyncio.sleep(0.1)
        (killed,) = [p for p in workers if p.pid == holder]  # ours, and no other process
        os.killpg(killed.pid, signal.SIGKILL)
        killed_at = datetime.now(UTC)
        await killed.wait()
        result = await asyncio.wait_for(handle.result(), timeout=120)
        step = (await status_of(handle)).phase(Phase.INSTANTIATE).layers[0].resources[0]
    finally:
        for process in workers:
            await stop_worker(process)
    assert result.status is RunStatus.COMPLETED and step.status is StepStatus.SUCCEEDED, result.message
    attempt, started_at = await last_start(handle, RESOURCE_START)
    lost = (started_at - killed_at).total_seconds()
    print(f"worker killed in {RESOURCE_START}: attempt {attempt} started {lost:.1f} s after the kill; "
          f"run done {(datetime.now(UTC) - killed_at).total_seconds():.1f} s after")
    assert attempt == 2 and lost < 60  # and not the 5-minute start-to-close
    ssm = boto3.client("ssm", region_name="us-west-2")
    executions = ssm.describe_automation_executions(
        Filters=[{"Key": "DocumentNamePrefix", "Values": [document]}])["AutomationExecutionMetadataList"]
    assert [e["AutomationExecutionId"] for e in executions] == [step.outputs["automationExecutionId"]]
