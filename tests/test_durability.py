"""Crashes in the path: a worker killed with SIGKILL in the middle of a wave, then restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import sysconfig
import uuid
from pathlib import Path
from typing import Any

import boto3

from plans.model import Mode
from sandbox.drs.models import reset_world
from tests import reaper
from tests.lifecycle_helpers import start_run, status_of
from tests.test_drs_recovery import REGION, drs_plan, estate, jobs_of
from contracts.drs_recovery import DrsRecoveryState
from contracts.lifecycle import LifecycleResult, RunOptions, RunStatus

DRCTL = os.path.join(sysconfig.get_path("scripts"), "drctl")
QUEUE = "durability-test"


async def _worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    out = log.open("ab")
    process = await asyncio.create_subprocess_exec(DRCTL, "worker", env={**os.environ, **env}, stdout=out,
                                                   stderr=out, start_new_session=True)
    reaper.watch(process.pid)  # stopped even if this session is killed outright
    for _ in range(300):
        if "worker.started" in log.read_text():
            return process
        await asyncio.sleep(0.1)
    raise AssertionError(log.read_text())


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
        env = {"TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
               "TEMPORAL_TASK_QUEUE": QUEUE}
        log = tmp_path / "worker.log"
        first = await _worker(env, log)
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
        second = await _worker(env, log)
        try:
            result = await asyncio.wait_for(handle.result(), timeout=240)
            state = await status_of(handle)  # a query needs a live worker: ask before stopping it
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 30)
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
