"""The DRS building blocks against the sandbox's DRS emulator, through real boto3 clients: selection, idempotent
jobs, errors Temporal must retry (or not), per-server judgement, drill cleanup scoped to one execution, failback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from temporalio.exceptions import ApplicationError

from activities.drs.common import utcnow
from activities.drs import (
    JobKey,
    JobProgress,
    Quotas,
    ServerInfo,
    active_usage,
    chunks,
    describe_jobs,
    drill_instances_of,
    drs_quotas,
    find_job,
    job_done,
    last_log_events,
    parse_duration,
    recoverability,
    recovery_details,
    resolve_selection,
    reverse_replication,
    start_or_find_job,
    terminate_recovery_instances,
)
from sandbox.drs.models import DrsWorld, reset_world
from tests.conftest import HUB_ACCOUNT

REGION = "us-west-2"
NO_RETRIES = Config(retries={"total_max_attempts": 1})


@pytest.fixture
def world(sandbox: Any) -> Iterator[DrsWorld]:
    # A fast clock keeps each job under a second; every test starts from an empty, seeded world.
    yield reset_world(time_scale=50, seed=21)
    reset_world()


def drs(region: str = REGION, config: Config | None = None) -> Any:
    return boto3.client("drs", region_name=region, config=config)


def add(world: DrsWorld, hostname: str, **kwargs: Any) -> str:
    return world.add_source_server(HUB_ACCOUNT, REGION, hostname, **kwargs)


def settle(client: Any, job_ids: list[str], timeout: float = 15) -> list[JobProgress]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = describe_jobs(client, job_ids)
        if all(j.settled for j in jobs) or time.monotonic() > deadline:
            return jobs
        time.sleep(0.05)


def tagged_jobs(client: Any, key: JobKey) -> list[dict[str, Any]]:
    jobs = [j for p in client.get_paginator("describe_jobs").paginate() for j in p["items"]]
    return [j for j in jobs if key.matches(j)]


def since() -> Any:
    return utcnow() - timedelta(minutes=1)


# ---- selection -------------------------------------------------------------------------------------------------


def test_tags_select_all_keys_with_several_values_unioned_with_ids_and_hostnames(world):
    web = add(world, "sel-web", tags={"app": "shop", "tier": "web"})
    app = add(world, "sel-app", tags={"app": "shop", "tier": "app"})
    db = add(world, "sel-db", tags={"app": "shop", "tier": "db"})
    add(world, "sel-blog", tags={"app": "blog", "tier": "web"})
    lone = add(world, "sel-lone", tags={"tier": "web"})  # lacks the app key: every key must match
    named = add(world, "sel-named", tags={"app": "other"})
    stalled = add(world, "sel-stalled", tags={"app": "shop", "tier": "app"}, replication_state="STALLED",
                  lag_seconds=5400, source_region="eu-west-1")
    world.create_source_server(HUB_ACCOUNT, REGION, "sel-back", {"app": "shop", "tier": "web"}, "CONTINUOUS", 0,
                               "us-east-1", None, "t3.small", True, direction="FAILBACK")
    client = drs()

    chosen = resolve_selection(client, tags={"app": "shop", "tier": ["web", "app"]}, source_server_ids=[db],
                               hostnames=["sel-named"])
    assert [s.source_server_id for s in chosen] == [web, app, db, named, stalled]
    assert lone not in {s.source_server_id for s in chosen}

    info = next(s for s in chosen if s.source_server_id == stalled)
    assert (info.hostname, info.replication_state) == ("sel-stalled", "STALLED")
    # A stalled server's lag keeps growing from 5400 s while the test runs, as in DRS: on a loaded machine the
    # read may come seconds later, so the lag is asserted from its start, not to the second.
    assert info.lag_seconds is not None and 5400 <= info.lag_seconds < 5400 + 60
    assert (info.origin_region, info.origin_account, info.replication_direction) == ("eu-west-1", HUB_ACCOUNT,
                                                                                      "FAILOVER")
    assert info.arn and info.tags == {"app": "shop", "tier": "app"}
    assert recoverability(info) == "replication STALLED (lag 1h30m)"
    assert recoverability(chosen[0]) is None

    with_failback = resolve_selection(client, tags={"app": "shop", "tier": "web"}, include_failback=True)
    assert [s.hostname for s in with_failback] == ["sel-web", "sel-back"]
    assert ServerInfo.model_validate_json(info.model_dump_json()) == info  # crosses activity boundaries


def test_named_servers_that_do_not_exist_are_each_named(world):
    present = add(world, "miss-present")
    with pytest.raises(ApplicationError) as caught:
        resolve_selection(drs(), source_server_ids=[present, "s-00000000000000001"],
                          hostnames=["miss-present", "miss-nowhere"])
    assert caught.value.non_retryable and caught.value.type == "SourceServersNotFound"
    assert "s-00000000000000001" in str(caught.value) and "miss-nowhere" in str(caught.value)
    assert present not in str(caught.value)


def test_durations_and_replication_states():
    assert parse_duration("PT1H2M3S") == 3723
    assert parse_duration("P1DT30S") == 86430
    assert parse_duration("PT0.5S") == 0
    assert parse_duration(None) is None and parse_duration("soon") is None
    backlog = ServerInfo(source_server_id="s-1", replication_state="BACKLOG", lag_seconds=300)
    assert recoverability(backlog) == (
        "replication BACKLOG (lag 5m): recoverable only with care, not allowed by the plan")
    assert recoverability(backlog, allow_with_care=True) is None
    assert recoverability(ServerInfo(source_server_id="s-2", replication_state="DISCONNECTED")) == (
        "replication DISCONNECTED")
    assert chunks([f"s{i}" for i in range(5)], 2) == [["s0", "s1"], ["s2", "s3"], ["s4"]]


# ---- jobs ------------------------------------------------------------------------------------------------------


def test_a_retried_start_finds_its_job_instead_of_starting_another(world):
    ids = [add(world, f"idem{i}") for i in range(3)]
    client = drs()
    key = JobKey(execution_id="exec-idem", wave="db", chunk=0)
    first = start_or_find_job(client, key, ids, is_drill=True, since=since())
    second = start_or_find_job(client, key, ids, is_drill=True, since=since())
    assert first["jobID"] == second["jobID"]
    assert first["tags"] == {"dr:execution": "exec-idem", "dr:wave": "db", "dr:chunk": "0"}
    assert [j["jobID"] for j in tagged_jobs(client, key)] == [first["jobID"]]

    # An attempt that died after StartRecovery returned: the next one finds that job too.
    other = JobKey(execution_id="exec-idem", wave="db", chunk=1)
    extra = add(world, "idem-extra")
    started = client.start_recovery(sourceServers=[{"sourceServerID": extra}], isDrill=True, tags=other.tags())["job"]
    assert start_or_find_job(client, other, [extra], is_drill=True, since=since())["jobID"] == started["jobID"]
    assert find_job(client, JobKey(execution_id="exec-idem", wave="db", chunk=2), since()) is None


def test_a_server_in_another_executions_job_is_a_non_retryable_error_naming_it(world):
    world.set_durations(pending=3600)  # the other execution's job stays active
    ids = [add(world, f"busy{i}") for i in range(3)]
    client = drs()
    theirs = start_or_find_job(client, JobKey(execution_id="exec-a", wave="w", chunk=0), ids[:2], True,
                               since=since())
    with pytest.raises(ApplicationError) as caught:
        start_or_find_job(client, JobKey(execution_id="exec-b", wave="w", chunk=0), ids[1:], True, since=since())
    assert caught.value.type == "ServerInActiveJob" and caught.value.non_retryable
    assert f"{ids[1]} (job {theirs['jobID']} of exec-a)" in str(caught.value) and ids[2] not in str(caught.value)
    # What the workflow needs to say per server who holds it: the job and the execution that started it.
    assert caught.value.details == ({"holders": {ids[1]: {"job_id": theirs["jobID"], "execution_id": "exec-a"}}},)


def test_throttling_carries_drs_retry_after_into_temporals_retry(world):
    (server,) = [add(world, "throttled")]
    world.set_faults(throttle_rate=1.0)
    with pytest.raises(ApplicationError) as caught:
        start_or_find_job(drs(config=NO_RETRIES), JobKey(execution_id="e", wave="w", chunk=0), [server], True,
                          since=since())
    assert caught.value.type == "Throttled" and not caught.value.non_retryable
    assert caught.value.next_retry_delay == timedelta(seconds=1)


def test_a_job_larger_than_the_servers_per_job_quota_is_not_retried(world):
    """The chunk was sized to the quota Service Quotas gave; DRS's is lower: the same job can never start."""
    world.set_quotas(servers_per_job=2)
    ids = [add(world, f"quota{i}") for i in range(3)]
    with pytest.raises(ApplicationError) as caught:
        start_or_find_job(drs(), JobKey(execution_id="e", wave="w", chunk=0), ids, True, since=since())
    assert caught.value.type == "DrsQuotaExceeded" and caught.value.non_retryable
    assert caught.value.details == ({"quotaCode": "L-B827C881"},)


def test_a_concurrent_jobs_quota_exceeded_start_is_retryable(world):
    """Capacity frees as other jobs finish: a later attempt can pass."""
    world.set_quotas(concurrent_jobs=1)
    start_or_find_job(drs(), JobKey(execution_id="e", wave="w", chunk=0), [add(world, "busy")], True, since=since())
    with pytest.raises(ApplicationError) as caught:
        start_or_find_job(drs(), JobKey(execution_id="e", wave="w", chunk=1), [add(world, "next")], True,
                          since=since())
    assert caught.value.type == "DrsQuotaExceeded" and not caught.value.non_retryable
    assert caught.value.details == ({"quotaCode": "L-D88FAC3A"},)


def test_describe_jobs_batches_ids_and_keeps_the_order_asked(world):
    client = drs()
    job_ids = [start_or_find_job(client, JobKey(execution_id="batch", wave="w", chunk=i), [add(world, f"batch{i}")],
                                 True, since=since())["jobID"] for i in range(7)]
    calls: list[Any] = []
    client.meta.events.register("before-parameter-build.drs.DescribeJobs", lambda **kw: calls.append(kw["params"]))
    jobs = describe_jobs(client, list(reversed(job_ids)) + job_ids[:1], batch_size=3)
    assert [j.job_id for j in jobs] == list(reversed(job_ids))
    assert [len(c["filters"]["jobIDs"]) for c in calls] == [3, 3, 1]
    assert JobProgress.model_validate_json(jobs[0].model_dump_json()) == jobs[0]


def test_a_completed_job_is_judged_per_server_and_the_log_says_why(world):
    ids = [add(world, f"judge{i}") for i in range(3)]
    world.set_faults(launch_failures={"judge1"})
    client = drs()
    job = start_or_find_job(client, JobKey(execution_id="judge", wave="w", chunk=0), ids, True, since=since())
    (progress,) = settle(client, [job["jobID"]])
    assert job_done(progress) and progress.settled
    assert progress.outcomes() == {ids[0]: "ok", ids[1]: "failed", ids[2]: "ok"}
    events = last_log_events(client, job["jobID"])
    assert events[ids[1]]["event"] == "LAUNCH_FAILED" and events[ids[1]]["rawError"]
    assert events[ids[0]]["event"] == "LAUNCH_START" and "rawError" not in events[ids[0]] and events[ids[0]]["at"]

    launched = [progress.servers[s].recovery_instance_id for s in (ids[0], ids[2])]
    details = recovery_details(client, boto3.client("ec2", region_name=REGION), launched + ["i-0123456789abcdef0"])
    assert sorted(details) == sorted(launched)
    detail = details[launched[0]]
    assert detail.is_drill and detail.job_id == job["jobID"] and detail.source_server_id == ids[0]
    assert detail.ec2_instance_state == "RUNNING" and detail.private_ip and detail.point_in_time


def test_usage_counts_active_jobs_and_their_servers_and_quotas_fall_back(world):
    world.set_durations(pending=3600)
    client = drs()
    ids = [add(world, f"use{i}") for i in range(5)]
    assert active_usage(client) == (0, 0)
    start_or_find_job(client, JobKey(execution_id="u", wave="w", chunk=0), ids[:2], True, since=since())
    start_or_find_job(client, JobKey(execution_id="u", wave="w", chunk=1), ids[2:], True, since=since())
    assert active_usage(client) == (2, 5)
    assert drs_quotas(boto3.client("service-quotas", region_name=REGION)) == Quotas(
        concurrent_jobs=20, servers_per_job=100, servers_in_active_jobs=500)


# ---- instances -------------------------------------------------------------------------------------------------


def _drill(client: Any, world: DrsWorld, execution: str, hosts: list[str], is_drill: bool = True) -> list[str]:
    ids = [add(world, h) for h in hosts]
    job = start_or_find_job(client, JobKey(execution_id=execution, wave="w", chunk=0 if is_drill else 1), ids,
                            is_drill, since=since())
    (progress,) = settle(client, [job["jobID"]])
    return [s.recovery_instance_id for s in progress.servers.values() if s.recovery_instance_id]


def _ec2_states(ec2: Any, rids: list[str], details: dict[str, Any]) -> set[str]:
    ids = [details[r].ec2_instance_id for r in rids]
    found = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {m["State"]["Name"] for r in found for m in r["Instances"]}


def test_cleanup_terminates_only_this_executions_drill_instances(world):
    client, ec2 = drs(), boto3.client("ec2", region_name=REGION)
    ours = _drill(client, world, "exec-mine", ["mine0", "mine1"])
    theirs = _drill(client, world, "exec-theirs", ["theirs0", "theirs1"])
    real = _drill(client, world, "exec-mine", ["mine-real"], is_drill=False)
    assert (len(ours), len(theirs), len(real)) == (2, 2, 1)
    details = recovery_details(client, ec2, ours + theirs + real)

    assert sorted(drill_instances_of(client, "exec-mine")) == sorted(ours)
    # A slow TERMINATE (about 5 s): the job must still be running when the retry below looks for it (at the fast
    # clock it ends within 60 ms, which a loaded machine can take between two calls).
    world.set_durations(terminate=250.0)
    jobs = terminate_recovery_instances(client, drill_instances_of(client, "exec-mine"))
    assert len(jobs) == 1
    # A retry while the TERMINATE job runs finds it rather than starting another.
    assert terminate_recovery_instances(client, ours) == jobs
    (terminate,) = settle(client, jobs)
    assert {s.status for s in terminate.servers.values()} == {"TERMINATED"}
    assert terminate_recovery_instances(client, ours) == []  # gone: nothing left to do
    all_jobs = [j for p in client.get_paginator("describe_jobs").paginate() for j in p["items"]]
    assert sum(j["type"] == "TERMINATE" for j in all_jobs) == 1

    assert drill_instances_of(client, "exec-mine") == []
    assert sorted(drill_instances_of(client, "exec-theirs")) == sorted(theirs)
    assert _ec2_states(ec2, ours, details) == {"terminated"}
    assert _ec2_states(ec2, theirs + real, details) == {"running"}


def test_reverse_replication_for_ec2_origin_and_the_failback_client_for_on_premises(world):
    client = drs()
    cloud = add(world, "rev-cloud", source_region="us-east-1")
    onprem = add(world, "rev-onprem", ec2_origin=False)
    job = start_or_find_job(client, JobKey(execution_id="rev", wave="w", chunk=0), [cloud, onprem], False,
                            since=since())
    (progress,) = settle(client, [job["jobID"]])
    rid_cloud, rid_onprem = (progress.servers[s].recovery_instance_id for s in (cloud, onprem))
    assert rid_cloud and rid_onprem

    result = reverse_replication(client, [rid_cloud, rid_onprem])
    arn = result[rid_cloud].reversed_source_server_arn
    assert arn and arn.startswith(f"arn:aws:drs:us-east-1:{HUB_ACCOUNT}:source-server/s-")
    assert result[rid_onprem].needs_failback_client and result[rid_onprem].reversed_source_server_arn is None
    # A retry reports the same reversed server, and DRS has only one.
    assert reverse_replication(client, [rid_cloud])[rid_cloud].reversed_source_server_arn == arn
    assert [s["arn"] for s in drs("us-east-1").describe_source_servers()["items"]] == [arn]
