"""The DRS activities as the worker runs them (temporalio's ActivityEnvironment: heartbeats and cancellation are
real), against the sandbox's DRS emulator in two accounts through real boto3 clients."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from activities.core.aws import AwsClients
from activities.drs.activities import DrsActivities
from activities.drs.common import drs_time, utcnow
from contracts.drs import (
    ChunkKey,
    CleanupRequest,
    DrsTarget,
    GroupRequest,
    JobState,
    RereadRequest,
    RereadResult,
    ResolveRequest,
    ReverseRequest,
    StartJobRequest,
    WatchJobsRequest,
)
from activities.drs import drill_instances_of, recovery_instances_of
from plans.drs import ServerSelection
from plans.model import Account
from sandbox.drs.models import DrsWorld, reset_world
from tests.aws_helpers import app_account
from tests.conftest import APP_ACCOUNT, HUB_ACCOUNT, account_session

REGION = "us-west-2"
HUB = DrsTarget(account_key="hub", account=Account(id=HUB_ACCOUNT), region=REGION)
APP = DrsTarget(account_key="app", account=app_account(), region=REGION)


@pytest.fixture
def world(sandbox: Any) -> Iterator[DrsWorld]:
    yield reset_world(time_scale=50, seed=34)
    reset_world()


@pytest.fixture
def acts(sandbox: Any) -> DrsActivities:
    return DrsActivities(AwsClients())


def run(fn: Any, request: Any, env: ActivityEnvironment | None = None) -> tuple[Any, list[Any]]:
    """Run an activity method as the worker would; returns its result and the heartbeats it sent."""
    env = env or ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    return env.run(fn, request), beats


def add(world: DrsWorld, hostname: str, account: str = HUB_ACCOUNT, **kwargs: Any) -> str:
    return world.add_source_server(account, REGION, hostname, **kwargs)


def group(name: str, target: DrsTarget = HUB, **selection: Any) -> GroupRequest:
    flags = {k: selection.pop(k) for k in ("impact", "allow_unhealthy") if k in selection}
    return GroupRequest(group=name, target=target, selection=ServerSelection(**selection), **flags)


def since() -> Any:
    return utcnow() - timedelta(minutes=1)


def start(acts: DrsActivities, execution: str, ids: list[str], is_drill: bool = True, chunk: int = 0,
          target: DrsTarget = HUB, **extra: Any) -> str:
    request = StartJobRequest(target=target, execution_id=execution, wave="w", chunk=chunk, server_ids=ids,
                              is_drill=is_drill, since=since(), **extra)
    return run(acts.start_job, request)[0].job_id


def watch_until_settled(acts: DrsActivities, job_ids: list[str], target: DrsTarget = HUB,
                        timeout: float = 20) -> list[JobState]:
    """Call watch_jobs the way the workflow does: feed back the signatures seen, until every job is settled."""
    known: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        request = WatchJobsRequest(target=target, job_ids=job_ids, known=known, max_wait_seconds=5, poll_seconds=0.05)
        jobs = run(acts.watch_jobs, request)[0].jobs
        if all(j.settled for j in jobs) or time.monotonic() > deadline:
            return jobs
        known = {j.job_id: j.signature() for j in jobs}


# ---- quotas and resolve ----------------------------------------------------------------------------------------


def test_quotas_fall_back_to_defaults_and_count_active_jobs(world, acts):
    world.set_durations(pending=3600)
    start(acts, "exec-q", [add(world, "q0"), add(world, "q1")])
    add(world, "q-app", APP_ACCOUNT)  # DRS is initialized in that account-region, but nothing runs there
    limits, _ = run(acts.quotas, HUB)
    assert (limits.concurrent_jobs, limits.servers_per_job, limits.servers_in_active_jobs) == (20, 100, 500)
    assert (limits.active_jobs_in_use, limits.servers_in_use) == (1, 2)
    assert run(acts.quotas, APP)[0].active_jobs_in_use == 0  # another account's jobs are not counted


def test_resolve_groups_by_tags_across_two_accounts(world, acts):
    web = [add(world, f"web{i}", tags={"tier": "web"}) for i in range(2)]
    db = add(world, "db0", tags={"tier": "db"})
    app = add(world, "app0", APP_ACCOUNT, tags={"tier": "app"})
    add(world, "app-other", APP_ACCOUNT, tags={"tier": "batch"})
    request = ResolveRequest(groups=[
        group("web", tags={"tier": "web"}, impact="optional"),
        group("db", source_server_ids=[db]),
        group("app", APP, tags={"tier": "app"}),
    ])
    result, beats = run(acts.resolve, request)
    by_id = {s.id: s for s in result.servers}
    assert sorted(by_id) == sorted([*web, db, app])
    assert [by_id[s].group for s in web] == ["web", "web"] and by_id[web[0]].impact == "optional"
    assert (by_id[db].group, by_id[db].impact, by_id[db].target_key) == ("db", "critical", f"{HUB_ACCOUNT}/{REGION}")
    assert (by_id[app].hostname, by_id[app].target_key) == ("app0", f"{APP_ACCOUNT}/{REGION}")
    assert all(s.problem is None and s.snapshot_id is None and s.replication_state == "CONTINUOUS"
               for s in result.servers)
    assert len(beats) == 2  # one per target
    # The app server really lives in the other account: the hub's DRS does not know it.
    listed = account_session(APP_ACCOUNT).client("drs", region_name=REGION).describe_source_servers()["items"]
    assert app in {s["sourceServerID"] for s in listed}


def test_a_server_selected_by_two_groups_is_a_non_retryable_error_naming_both(world, acts):
    shared = add(world, "shared", tags={"tier": "web", "team": "x"})
    add(world, "alone", tags={"tier": "web"})
    request = ResolveRequest(groups=[group("web", tags={"tier": "web"}), group("team-x", tags={"team": "x"})])
    with pytest.raises(ApplicationError) as caught:
        run(acts.resolve, request)
    assert caught.value.type == "ServerInTwoGroups" and caught.value.non_retryable
    assert shared in str(caught.value) and "shared" in str(caught.value)
    assert "web, team-x" in str(caught.value)


def test_unhealthy_servers_carry_a_problem_unless_the_group_allows_them(world, acts):
    stalled = add(world, "stalled", tags={"g": "strict"}, replication_state="STALLED", lag_seconds=600)
    backlog = add(world, "backlog", tags={"g": "lenient"}, replication_state="BACKLOG", lag_seconds=60)
    fine = add(world, "fine", tags={"g": "strict"})
    request = ResolveRequest(groups=[group("strict", tags={"g": "strict"}),
                                     group("lenient", tags={"g": "lenient"}, allow_unhealthy=True)])
    by_id = {s.id: s for s in run(acts.resolve, request)[0].servers}
    # A stalled server's lag grows while the test runs (as in DRS): 10 minutes, and a few seconds on a loaded machine.
    assert re.fullmatch(r"replication STALLED \(lag 10m(\d{1,2}s)?\)", by_id[stalled].problem or ""), \
        by_id[stalled].problem
    lag = by_id[stalled].lag_seconds
    assert by_id[stalled].replication_state == "STALLED" and lag is not None and 600 <= lag < 660
    assert by_id[backlog].problem is None and by_id[fine].problem is None


def test_point_in_time_picks_each_servers_latest_snapshot_at_or_before_it(world, acts):
    ids = [add(world, f"pit{i}", tags={"pit": "yes"}) for i in range(2)]
    syncing = add(world, "pit-new", tags={"pit": "yes"}, replication_state="INITIAL_SYNC")
    moment = utcnow() - timedelta(hours=2, minutes=30)
    request = ResolveRequest(groups=[group("pit", tags={"pit": "yes"}, allow_unhealthy=True)], point_in_time=moment)
    by_id = {s.id: s for s in run(acts.resolve, request)[0].servers}
    client = boto3.client("drs", region_name=REGION)
    for sid in ids:
        snapshots = [s for p in client.get_paginator("describe_recovery_snapshots").paginate(sourceServerID=sid)
                     for s in p["items"]]
        before = [s for s in snapshots if s["timestamp"] <= drs_time(moment)]
        assert before and len(before) < len(snapshots)
        assert by_id[sid].snapshot_id == max(before, key=lambda s: s["timestamp"])["snapshotID"]
        assert by_id[sid].problem is None
    # A server still in its first sync has no snapshot from back then.
    assert by_id[syncing].snapshot_id is None
    assert by_id[syncing].problem == f"no snapshot before {drs_time(moment)}"

    # The chosen snapshot is what the job launches from.
    job = start(acts, "exec-pit", ids, snapshot_ids={s: by_id[s].snapshot_id for s in ids} | {syncing: "pit-x"})
    (state,) = watch_until_settled(acts, [job])
    assert {s.launch_status for s in state.servers.values()} == {"LAUNCHED"}


# ---- jobs ------------------------------------------------------------------------------------------------------


def test_start_job_is_idempotent(world, acts):
    ids = [add(world, f"idem{i}") for i in range(2)]
    first, second = start(acts, "exec-idem", ids), start(acts, "exec-idem", ids)
    assert first == second
    assert start(acts, "exec-idem", [add(world, "idem-next")], chunk=1) != first


def test_watch_returns_on_change_and_ends_settled_with_launched_servers(world, acts):
    # Slow enough to see the job move through its states on a loaded machine (at 5, its STARTED state of ~1.6 s was
    # once missed between two polls with every core busy).
    world.configure(time_scale=2, seed=34)
    ids = [add(world, f"watch{i}") for i in range(2)]
    job = start(acts, "exec-watch", ids)
    # Nothing known yet: the first poll is a change.
    first, beats = run(acts.watch_jobs, WatchJobsRequest(target=HUB, job_ids=[job], poll_seconds=0.05))
    (state,) = first.jobs
    assert len(beats) == 1 and not state.settled and state.last_events == {}
    seen = [state.signature()]
    while not state.settled:
        request = WatchJobsRequest(target=HUB, job_ids=[job], known={job: seen[-1]}, max_wait_seconds=10,
                                   poll_seconds=0.05)
        (state,) = run(acts.watch_jobs, request)[0].jobs
        assert state.signature() != seen[-1]  # it returned because something changed
        seen.append(state.signature())
    assert state.status == "COMPLETED" and len(seen) >= 3
    assert {s.launch_status for s in state.servers.values()} == {"LAUNCHED"}
    assert all(s.recovery_instance_id for s in state.servers.values())
    assert sorted(state.last_events) == sorted(ids)

    # No change: it returns after max_wait_seconds, having polled (and heartbeated) meanwhile.
    began = time.monotonic()
    request = WatchJobsRequest(target=HUB, job_ids=[job], known={job: seen[-1]}, max_wait_seconds=0.5,
                               poll_seconds=0.05)
    result, beats = run(acts.watch_jobs, request)
    assert 0.5 <= time.monotonic() - began < 5 and len(beats) > 2
    assert result.jobs[0].signature() == seen[-1] and result.jobs[0].last_events == {}


def test_watch_reports_failed_servers_with_their_last_event(world, acts):
    ids = [add(world, "ok0"), add(world, "broken")]
    world.set_faults(launch_failures={"broken"})
    (state,) = watch_until_settled(acts, [start(acts, "exec-fail", ids)])
    assert state.servers[ids[0]].launch_status == "LAUNCHED" and state.servers[ids[1]].launch_status == "FAILED"
    assert state.last_events[ids[1]].startswith("LAUNCH_FAILED: ")


def test_reread_finds_jobs_by_their_tags_and_what_a_deleted_job_launched(world, acts):
    ids = [add(world, f"reread{i}") for i in range(3)]
    world.set_faults(stuck_servers={"reread2"})
    done, stuck = start(acts, "exec-reread", ids[:2]), start(acts, "exec-reread", ids[2:], chunk=1)
    watch_until_settled(acts, [done])
    other = start(acts, "exec-other", [add(world, "reread-other")], chunk=2)  # another execution's: never read

    def reread(*chunks: ChunkKey) -> RereadResult:
        return run(acts.reread_jobs, RereadRequest(target=HUB, execution_id="exec-reread", since=since(),
                                                    chunks=list(chunks)))[0]
    # The workflow lost the job ids: the tags find both jobs, each with its servers as DRS reports them.
    result = reread(ChunkKey(wave="w", chunk=0, server_ids=ids[:2]), ChunkKey(wave="w", chunk=1, server_ids=ids[2:]),
                    ChunkKey(wave="w", chunk=2, server_ids=["s-00000000000000000"]))
    jobs = {c.chunk: c.job for c in result.jobs}
    # Chunk 2's tags match the other execution's job but for its dr:execution: not ours, not read.
    assert sorted(jobs) == [0, 1] and (jobs[0].job_id, jobs[1].job_id) == (done, stuck) and other
    assert {s.launch_status for s in jobs[0].servers.values()} == {"LAUNCHED"} and jobs[0].settled
    assert jobs[1].servers[ids[2]].launch_status == "IN_PROGRESS" and not jobs[1].settled
    assert all(jobs[0].instances[s].ec2_instance_id for s in ids[:2])
    assert sorted(result.instances) == sorted(ids[:2]) and {i.job_id for i in result.instances.values()} == {done}

    # Someone deleted the finished job: its recovery instances still say what it launched.
    boto3.client("drs", region_name=REGION).delete_job(jobID=done)
    result = reread(ChunkKey(wave="w", chunk=0, server_ids=ids[:2], job_id=done))
    assert result.jobs == [] and sorted(result.instances) == sorted(ids[:2])
    assert all(i.recovery_instance_id and i.ec2_instance_id and i.job_id == done for i in result.instances.values())


def test_watch_honours_cancellation(world, acts):
    world.set_durations(pending=3600)
    job = start(acts, "exec-cancel", [add(world, "cancel0")])
    (state,) = run(acts.watch_jobs, WatchJobsRequest(target=HUB, job_ids=[job]))[0].jobs
    env = ActivityEnvironment()
    threading.Timer(0.3, env.cancel).start()
    began = time.monotonic()
    with pytest.raises(CancelledError):
        run(acts.watch_jobs, WatchJobsRequest(target=HUB, job_ids=[job], known={job: state.signature()},
                                              max_wait_seconds=60, poll_seconds=0.05), env)
    assert time.monotonic() - began < 5


# ---- cleanup and reverse ---------------------------------------------------------------------------------------


def _launch(acts: DrsActivities, world: DrsWorld, execution: str, hosts: list[str], is_drill: bool = True,
            chunk: int = 0, **kwargs: Any) -> list[str]:
    job = start(acts, execution, [add(world, h, **kwargs) for h in hosts], is_drill=is_drill, chunk=chunk)
    (state,) = watch_until_settled(acts, [job])
    return [s.recovery_instance_id for s in state.servers.values() if s.recovery_instance_id]


def test_cleanup_drill_terminates_only_this_executions_drill_instances(world, acts):
    ours = _launch(acts, world, "exec-mine", ["mine0", "mine1"])
    theirs = _launch(acts, world, "exec-theirs", ["theirs0"])
    real = _launch(acts, world, "exec-mine", ["mine-real"], is_drill=False, chunk=1)
    assert (len(ours), len(theirs), len(real)) == (2, 1, 1)
    request = CleanupRequest(target=HUB, execution_id="exec-mine", since=since())
    result, _ = run(acts.cleanup_drill, request)
    assert sorted(result.recovery_instance_ids) == sorted(ours) and len(result.terminate_job_ids) == 1
    (terminate,) = watch_until_settled(acts, result.terminate_job_ids)
    assert {s.launch_status for s in terminate.servers.values()} == {"TERMINATED"}

    client = boto3.client("drs", region_name=REGION)
    assert drill_instances_of(client, "exec-mine") == []
    assert drill_instances_of(client, "exec-theirs") == theirs
    assert recovery_instances_of(client, "exec-mine", is_drill=False) == real
    again, _ = run(acts.cleanup_drill, request)  # a retry after the fact has nothing left to do
    assert (again.recovery_instance_ids, again.terminate_job_ids) == ([], [])


def test_reverse_covers_this_executions_real_recovery_only(world, acts):
    cloud = _launch(acts, world, "exec-rev", ["rev-cloud"], is_drill=False, source_region="us-east-1")
    onprem = _launch(acts, world, "exec-rev", ["rev-onprem"], is_drill=False, chunk=1, ec2_origin=False)
    drill = _launch(acts, world, "exec-rev", ["rev-drill"], chunk=2)
    other = _launch(acts, world, "exec-other", ["rev-other"], is_drill=False)
    client = boto3.client("drs", region_name=REGION)
    assert sorted(recovery_instances_of(client, "exec-rev")) == sorted(cloud + onprem + drill)

    request = ReverseRequest(target=HUB, execution_id="exec-rev", since=since())
    result, _ = run(acts.reverse, request)
    assert list(result.reversed) == cloud and result.needs_failback_client == onprem and result.errors == {}
    arn = result.reversed[cloud[0]]
    assert arn.startswith(f"arn:aws:drs:us-east-1:{HUB_ACCOUNT}:source-server/s-")
    assert not set(result.reversed) & set(drill + other)
    assert run(acts.reverse, request)[0].reversed == {cloud[0]: arn}  # a retry reverses nothing twice
    assert [s["arn"] for s in boto3.client("drs", region_name="us-east-1").describe_source_servers()["items"]] == [arn]
