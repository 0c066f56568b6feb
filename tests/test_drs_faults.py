"""DRS faults through the lifecycle (issue 13): a wave's verdict weighs timed-out, failed and never-started servers
alike; a start that fails settles its servers at once and says why; servers DRS launched while it could not be read
are reported launched."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import boto3
import pytest

from plans.model import Mode
from sandbox.drs.util import iso
from tests.conftest import HUB_ACCOUNT
from tests.lifecycle_helpers import finish, resource, start_run, status_of, timer_summaries
from tests.test_drs_recovery import REGION, child_state, drs_plan, estate, jobs_of
from contracts.drs_recovery import DrsRecoveryState
from contracts.lifecycle import RunOptions, RunStatus, StepStatus

ACTIVATE_ONLY = RunOptions(phases=["ACTIVATE"])


def launch_jobs(execution_id: str) -> list[dict[str, Any]]:
    return [j for j in jobs_of(boto3.client("drs", region_name=REGION), execution_id) if j["type"] == "LAUNCH"]


def by_host(child: DrsRecoveryState) -> dict[str, Any]:
    return {s.hostname.split(".")[0]: s for s in child.servers.values() if s.hostname}


async def fails_within_seconds(worker: Any, name: str, app: str, reason: str) -> Any:
    """A drill of one critical wave of the app's db servers, which must fail for `reason` within seconds (not after
    minutes of retries, nor at the wave's timeout)."""
    plan = drs_plan(name, app, waves=[{"name": "db", "protectionGroups": ["db"]}],
                    groups={"db": {"tags": {"Tier": "db"}}}, cleanup=False)
    began = time.monotonic()
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL, options=ACTIVATE_ONLY)
    with pytest.raises(AssertionError, match=reason):
        await finish(handle)
    assert time.monotonic() - began < 30
    return handle


async def test_a_wave_timeout_weighs_stuck_servers_by_their_impact(worker, world):
    """Two waves at once, each with one server DRS never finishes launching: the optional one within
    maxFailedPercent leaves its wave PARTIAL, the critical one fails its wave, each named."""
    app = estate(world, {"web": 2, "db": 2})
    world.set_faults(stuck_servers={f"web-001.{app}.example.com", f"db-001.{app}.example.com"})
    plan = drs_plan("drs-stuck", app, waves=[
        {"name": "web", "protectionGroups": ["web"], "maxFailedPercent": 50, "timeoutSeconds": 60},
        {"name": "db", "protectionGroups": ["db"], "timeoutSeconds": 60},
    ], groups={"web": {"tags": {"Tier": "web"}, "impact": "optional"}, "db": {"tags": {"Tier": "db"}}},
        cleanup=False)
    began = time.monotonic()
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL, options=ACTIVATE_ONLY)
    with pytest.raises(AssertionError, match="critical servers failed: db-001"):
        await finish(handle)
    assert time.monotonic() - began < 100
    child = await child_state(worker, handle.id, "ACTIVATE")
    waves = {w.name: w for w in child.waves}
    assert waves["web"].status.value == "PARTIAL", waves["web"].message
    assert waves["web"].message.startswith("timed out: 1 optional server still launching after 6")
    assert f"(web-001.{app}.example.com); 1/2 launched" in waves["web"].message
    assert waves["db"].status.value == "FAILED", waves["db"].message
    assert waves["db"].message.startswith("timed out: 1 critical server still launching after 6")
    assert f"critical servers failed: db-001.{app}.example.com" in waves["db"].message
    servers = by_host(child)
    assert {h: s.status.value for h, s in servers.items()} == {
        "web-000": "LAUNCHED", "web-001": "TIMED_OUT", "db-000": "LAUNCHED", "db-001": "TIMED_OUT"}
    assert "still launching at the wave's timeout" in servers["db-001"].detail
    step = resource(await status_of(handle), "ACTIVATE", "servers", "servers")
    assert step.status is StepStatus.FAILED and "db-001" in step.error
    assert sorted(j["tags"]["dr:wave"] for j in launch_jobs(handle.id)) == ["db", "web"]  # one job per wave


async def test_a_job_that_loses_the_race_for_a_server_settles_at_once_naming_the_holder(worker, world):
    """Between our resolving a wave and starting its job, another execution's job takes one of its servers: DRS
    refuses our job (ConflictException); the wave ends in seconds, each server saying why, the holder named."""
    app = estate(world, {"db": 2})
    world.set_durations(pending=3600)  # the other execution's job stays active throughout
    world.set_faults(raced_servers={f"db-000.{app}.example.com": {"dr:execution": "dr-web-app-drill-other"}})
    handle = await fails_within_seconds(worker, "drs-race", app, "of run dr-web-app-drill-other")
    holder = jobs_of(boto3.client("drs", region_name=REGION), "dr-web-app-drill-other")
    assert len(holder) == 1
    child = await child_state(worker, handle.id, "ACTIVATE")
    servers = by_host(child)
    assert servers["db-000"].status.value == "FAILED"
    assert servers["db-000"].detail == (f"in DRS job {holder[0]['jobID']} of run dr-web-app-drill-other "
                                        "(started by another execution)")
    assert servers["db-001"].status.value == "FAILED"
    assert servers["db-001"].detail == f"not started: DRS refused its job because db-000.{app}.example.com " \
                                       f"{servers['db-000'].detail}"
    assert "dr-web-app-drill-other" in child.waves[0].message  # the wave's (and run's) message says who holds it
    step = resource(await status_of(handle), "ACTIVATE", "servers", "servers")
    assert "dr-web-app-drill-other" in step.error
    assert launch_jobs(handle.id) == []
    assert world.errors_returned["ConflictException"] == 1  # refused once: not retried for minutes


async def test_a_permanent_drs_error_settles_the_wave_at_once(worker, world):
    app = estate(world, {"db": 2})
    world.set_faults(denied_operations={"StartRecovery"})
    handle = await fails_within_seconds(worker, "drs-denied", app, "AccessDeniedException")
    servers = by_host(await child_state(worker, handle.id, "ACTIVATE"))
    assert {s.status.value for s in servers.values()} == {"FAILED"}
    assert all("AccessDeniedException" in s.detail and "drs:StartRecovery" in s.detail for s in servers.values())
    assert world.errors_returned["AccessDeniedException"] == 1  # one attempt: retrying cannot grant a permission
    assert launch_jobs(handle.id) == []


async def test_servers_launched_while_drs_could_not_be_read_are_reported_launched(worker, world):
    """DRS answers nothing for longer than the watch's retries while the job launches: the servers are not judged
    then; once DRS answers, the jobs are read again by their tags and the servers are LAUNCHED."""
    app = estate(world, {"app": 2})
    world.set_durations(launch=160)  # the job launches for about 4 s of the outage (time scale 40)
    plan = drs_plan("drs-outage", app, waves=[{"name": "app", "protectionGroups": ["app"]}],
                    groups={"app": {"tags": {"Tier": "app"}}}, cleanup=False)
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL, options=ACTIVATE_ONLY)
    backend = world.backend(HUB_ACCOUNT, REGION)
    await _until(lambda: any(j.type == "LAUNCH" for j in backend.jobs.values()), "the wave's job to start")
    world.set_faults(error_rate=1.0)  # DRS down, for everyone
    outage_began = world.now()
    child = worker.client.get_workflow_handle(f"{handle.id}/ACTIVATE/servers/servers")

    async def lost_track() -> bool:
        return any("could not be read" in t for t in await timer_summaries(child))
    await _until_async(lost_track, "the watch to run out of retries", timeout=90)
    world.set_faults(error_rate=0.0)
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED, result.message
    servers = by_host(await child_state(worker, handle.id, "ACTIVATE"))
    assert {s.status.value for s in servers.values()} == {"LAUNCHED"}
    assert all(s.recovery_instance_id and s.ec2_instance_id for s in servers.values())
    jobs = launch_jobs(handle.id)
    assert len(jobs) == 1  # read again, never started again
    assert jobs[0]["endDateTime"] > iso(outage_began)  # it launched while DRS could not be read
    assert world.errors_returned["InternalServerException"] > 0


async def test_servers_drs_cannot_tell_about_at_the_wave_timeout_end_unknown_not_failed(worker, world):
    """DRS answers nothing from just after the job starts until past the wave's timeout: the servers end TIMED_OUT,
    saying DRS could not be read, not FAILED; the job was started once."""
    app = estate(world, {"app": 2})
    world.set_durations(launch=160)
    plan = drs_plan("drs-dark", app, waves=[{"name": "app", "protectionGroups": ["app"], "timeoutSeconds": 60}],
                    groups={"app": {"tags": {"Tier": "app"}}}, cleanup=False)
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL, options=ACTIVATE_ONLY)
    backend = world.backend(HUB_ACCOUNT, REGION)
    await _until(lambda: any(j.type == "LAUNCH" for j in backend.jobs.values()), "the wave's job to start")
    world.set_faults(error_rate=1.0)
    try:
        with pytest.raises(AssertionError, match="DRS could not be read"):
            await finish(handle)
    finally:
        world.set_faults(error_rate=0.0)
    child = await child_state(worker, handle.id, "ACTIVATE")
    wave = child.waves[0]
    assert wave.status.value == "FAILED"
    assert wave.message.startswith("timed out: 2 critical servers unknown: DRS could not be read"), wave.message
    servers = by_host(child)
    assert {s.status.value for s in servers.values()} == {"TIMED_OUT"}
    assert all(s.detail.startswith("unknown at the wave's timeout: DRS could not be read: ") for s in servers.values())
    assert len(launch_jobs(handle.id)) == 1


async def _until(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _until_async(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)
