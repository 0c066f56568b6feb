"""The DRS emulator's behaviour through real boto3 clients at the sandbox endpoint: the job lifecycle, the rules that
bite (one job per server, quotas, throttling, failures that still COMPLETE a job), cross-account isolation."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox.drs.models import DrsWorld, reset_world
from tests.conftest import APP_ACCOUNT, HUB_ACCOUNT, account_session

REGION = "us-west-2"
NO_RETRIES = Config(retries={"total_max_attempts": 1})


@pytest.fixture
def world(sandbox: Any) -> Iterator[DrsWorld]:
    # A fast clock keeps every lifecycle under a second; each test starts from an empty, seeded world.
    yield reset_world(time_scale=50, seed=7)
    reset_world()


def drs(region: str = REGION, session: boto3.Session | None = None, config: Config | None = None) -> Any:
    return (session or boto3.Session()).client("drs", region_name=region, config=config)


def servers(world: DrsWorld, count: int, prefix: str = "web", account: str = HUB_ACCOUNT, region: str = REGION,
            **kwargs: Any) -> list[str]:
    return [world.add_source_server(account, region, f"{prefix}{i:02d}", **kwargs) for i in range(count)]


def start(client: Any, ids: list[str], **kwargs: Any) -> dict[str, Any]:
    return client.start_recovery(sourceServers=[{"sourceServerID": i} for i in ids], **kwargs)["job"]


def wait_job(client: Any, job_id: str, timeout: float = 10, interval: float = 0.05) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.describe_jobs(filters={"jobIDs": [job_id]})["items"][0]
        if job["status"] == "COMPLETED" or time.monotonic() > deadline:
            return job
        time.sleep(interval)


def statuses(job: dict[str, Any]) -> dict[str, str]:
    return {p["sourceServerID"]: p["launchStatus"] for p in job["participatingServers"]}


def events(client: Any, job_id: str) -> list[tuple[str, str | None]]:
    pages = client.get_paginator("describe_job_log_items").paginate(jobID=job_id)
    return [(i["event"], i.get("eventData", {}).get("sourceServerID")) for p in pages for i in p["items"]]


def error_of(call: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


def test_three_servers_recover_within_30s_at_real_time_and_a_busy_server_conflicts(sandbox):
    world = reset_world(time_scale=1, seed=7)
    try:
        ids = servers(world, 3)
        client = drs()
        job = start(client, ids, isDrill=False, tags={"run": "must-show"})
        assert job["status"] == "PENDING" and job["initiatedBy"] == "START_RECOVERY" and job["type"] == "LAUNCH"

        conflict = error_of(lambda: start(client, [ids[1]]))
        assert conflict.response["Error"]["Code"] == "ConflictException"
        assert conflict.response["ResponseMetadata"]["HTTPStatusCode"] == 409
        assert conflict.response["resourceId"] == ids[1]

        began, seen = time.monotonic(), set()
        while (job := client.describe_jobs(filters={"jobIDs": [job["jobID"]]})["items"][0])["status"] != "COMPLETED":
            seen.add(job["status"])
            assert time.monotonic() - began < 30, job
            time.sleep(0.5)
        assert "STARTED" in seen
        assert statuses(job) == dict.fromkeys(ids, "LAUNCHED")

        instances = client.describe_recovery_instances(filters={"sourceServerIDs": ids})["items"]
        assert sorted(i["sourceServerID"] for i in instances) == sorted(ids)
        assert all(i["ec2InstanceState"] == "RUNNING" and i["isDrill"] is False for i in instances)
        assert {p["recoveryInstanceID"] for p in job["participatingServers"]} == {i["recoveryInstanceID"] for i in instances}
        ec2 = boto3.client("ec2", region_name=REGION)
        found = ec2.describe_instances(InstanceIds=[i["ec2InstanceID"] for i in instances])["Reservations"]
        machines = [m for r in found for m in r["Instances"]]
        assert len(machines) == 3 and all(m["State"]["Name"] == "running" for m in machines)
        tags = {t["Key"]: t["Value"] for t in machines[0]["Tags"]}
        assert tags["AWSElasticDisasterRecoveryManaged"] == "drs.amazonaws.com" and tags["run"] == "must-show"

        log = events(client, job["jobID"])
        assert log[0] == ("JOB_START", None) and log[-1] == ("JOB_END", None)
        per_server = [e for e, s in log if s == ids[0]]
        assert per_server == ["SNAPSHOT_START", "SNAPSHOT_END", "CONVERSION_START", "CONVERSION_END", "LAUNCH_START"]
    finally:
        reset_world()


def test_101_servers_exceed_the_per_job_quota_and_201_the_model(world):
    ids = servers(world, 101)
    err = error_of(lambda: start(drs(), ids))
    assert err.response["Error"]["Code"] == "ServiceQuotaExceededException"
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 402
    assert (err.response["quotaCode"], err.response["serviceCode"]) == ("L-B827C881", "drs")
    too_many = error_of(lambda: start(drs(), ids + ids[:100]))
    assert too_many.response["Error"]["Code"] == "ValidationException"
    assert too_many.response["fieldList"][0]["name"] == "sourceServers"


def test_the_21st_concurrent_job_and_servers_in_active_jobs_exceed_quotas(world):
    world.set_durations(pending=3600)  # jobs stay PENDING: active for the whole test
    client = drs()
    ids = servers(world, 21)
    for server_id in ids[:20]:
        start(client, [server_id])
    err = error_of(lambda: start(client, [ids[20]]))
    assert err.response["quotaCode"] == "L-D88FAC3A"

    world.reset()
    world.set_durations(pending=3600)
    world.set_quotas(servers_in_active_jobs=5)
    ids = servers(world, 6)
    start(client, ids[:3])
    err = error_of(lambda: start(client, ids[3:]))
    assert (err.response["Error"]["Code"], err.response["quotaCode"]) == ("ServiceQuotaExceededException",
                                                                          "L-05AFA8C6")


def test_throttle_rate_throttles_about_that_share_of_calls_with_retry_after(world):
    servers(world, 1)
    world.set_faults(throttle_rate=0.3)
    client = drs(config=NO_RETRIES)
    throttled = []
    for _ in range(200):
        try:
            client.describe_source_servers()
        except ClientError as err:
            throttled.append(err.response)
    assert 0.2 <= len(throttled) / 200 <= 0.4
    first = throttled[0]
    assert first["Error"]["Code"] == "ThrottlingException"
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert first["retryAfterSeconds"] == "1"
    assert first["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"

    world.set_faults(throttle_rate=0.0, error_rate=1.0)
    err = error_of(lambda: client.describe_source_servers())
    assert (err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "InternalServerException", 500)


def test_a_launch_failure_completes_the_job_with_that_server_failed(world):
    ids = servers(world, 3)
    world.set_faults(launch_failures={"web01"})
    client = drs()
    job = wait_job(client, start(client, ids, isDrill=True)["jobID"])
    assert job["status"] == "COMPLETED"  # COMPLETED is not success: read each server
    assert statuses(job) == {ids[0]: "LAUNCHED", ids[1]: "FAILED", ids[2]: "LAUNCHED"}
    failed = [i for i in client.describe_job_log_items(jobID=job["jobID"])["items"] if i["event"] == "LAUNCH_FAILED"]
    assert failed[0]["eventData"]["sourceServerID"] == ids[1] and failed[0]["eventData"]["rawError"]
    launched = client.describe_recovery_instances()["items"]
    assert sorted(i["sourceServerID"] for i in launched) == sorted([ids[0], ids[2]])
    server = client.describe_source_servers(filters={"sourceServerIDs": [ids[1]]})["items"][0]
    assert server["lastLaunchResult"] == "FAILED"
    assert server["lifeCycle"]["lastLaunch"]["initiated"]["type"] == "DRILL"


def test_a_stuck_server_keeps_its_job_started_and_its_lock(world):
    ids = servers(world, 2)
    world.set_faults(stuck_servers={ids[0]})
    client = drs()
    job = start(client, ids)
    time.sleep(0.6)  # about three times the whole job's simulated length
    job = wait_job(client, job["jobID"], timeout=0.2)
    assert job["status"] == "STARTED"
    assert statuses(job) == {ids[0]: "IN_PROGRESS", ids[1]: "LAUNCHED"}
    assert error_of(lambda: start(client, [ids[0]])).response["Error"]["Code"] == "ConflictException"
    assert error_of(lambda: client.delete_job(jobID=job["jobID"])).response["Error"]["Code"] == "ConflictException"


def test_a_raced_server_conflicts_as_drs_says_and_a_denied_operation_answers_403(world, sandbox):
    """The admin path's faults: another party's job takes a server just before our StartRecovery (which DRS then
    refuses, naming only the server), and IAM denies an operation."""
    ids = servers(world, 2)
    body = {"racedServers": {"web00": {"dr:execution": "someone-else"}}, "deniedOperations": ["DeleteJob"]}
    request = urllib.request.Request(f"{sandbox.url}/_sandbox/faults", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        assert json.load(answer)["drs"]["faults"]["denied_operations"] == ["DeleteJob"]
    client = drs(config=NO_RETRIES)
    err = error_of(lambda: start(client, ids, isDrill=True, tags={"dr:execution": "us"}))
    # As DRS's ConflictException: the server, not the job holding it (a caller reads the jobs to learn that).
    assert (err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ConflictException", 409)
    assert (err.response["resourceId"], err.response["resourceType"]) == (ids[0], "SOURCE_SERVER")
    (theirs,) = client.describe_jobs()["items"]
    assert theirs["tags"] == {"dr:execution": "someone-else"} and list(statuses(theirs)) == [ids[0]]
    assert start(client, [ids[1]], isDrill=True)["jobID"]  # one shot: the other server is free, no new race
    denied = error_of(lambda: client.delete_job(jobID=theirs["jobID"]))
    assert (denied.response["Error"]["Code"], denied.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "AccessDeniedException", 403)
    assert "drs:DeleteJob" in denied.response["Error"]["Message"]


def test_servers_whose_replication_cannot_snapshot_fail_to_launch(world):
    ids = servers(world, 3)
    world.set_replication(HUB_ACCOUNT, REGION, "web00", "STALLED", lag_seconds=600)
    world.set_replication(HUB_ACCOUNT, REGION, ids[1], "DISCONNECTED")
    client = drs()
    stalled = client.describe_source_servers(filters={"sourceServerIDs": [ids[0]]})["items"][0]
    assert stalled["dataReplicationInfo"]["dataReplicationState"] == "STALLED"
    assert stalled["dataReplicationInfo"]["dataReplicationError"]["error"] == "UNSTABLE_NETWORK"
    job = wait_job(client, start(client, ids)["jobID"])
    assert job["status"] == "COMPLETED"
    assert statuses(job) == {ids[0]: "FAILED", ids[1]: "FAILED", ids[2]: "LAUNCHED"}
    log = events(client, job["jobID"])
    assert [e for e, s in log if s == ids[0]] == ["SNAPSHOT_START", "SNAPSHOT_FAIL", "USING_PREVIOUS_SNAPSHOT_FAILED"]


def test_cross_account_servers_are_seen_only_with_that_accounts_credentials(world):
    hub_ids = servers(world, 1, prefix="hub")
    app_ids = servers(world, 2, prefix="app", account=APP_ACCOUNT)
    hub_seen = [s["sourceServerID"] for s in drs().describe_source_servers()["items"]]
    assert hub_seen == hub_ids
    app = account_session(APP_ACCOUNT)
    app_client = drs(session=app)
    assert [s["sourceServerID"] for s in app_client.describe_source_servers()["items"]] == app_ids
    # StartRecovery models no ResourceNotFoundException: another account's server is invalid input there.
    assert error_of(lambda: start(drs(), app_ids)).response["Error"]["Code"] == "ValidationException"
    assert error_of(lambda: drs().get_launch_configuration(sourceServerID=app_ids[0])).response["Error"][
        "Code"] == "ResourceNotFoundException"

    job = wait_job(app_client, start(app_client, app_ids)["jobID"])
    assert statuses(job) == dict.fromkeys(app_ids, "LAUNCHED")
    ec2_ids = [i["ec2InstanceID"] for i in app_client.describe_recovery_instances()["items"]]
    in_app = app.client("ec2", region_name=REGION).describe_instances(InstanceIds=ec2_ids)["Reservations"]
    assert sum(len(r["Instances"]) for r in in_app) == 2
    hub_ec2 = boto3.client("ec2", region_name=REGION)
    hub_instances = {m["InstanceId"] for r in hub_ec2.describe_instances()["Reservations"] for m in r["Instances"]}
    assert not hub_instances & set(ec2_ids)
    assert drs().describe_recovery_instances()["items"] == []


def test_terminate_recovery_instances_runs_a_terminate_job_that_terminates_ec2(world):
    ids = servers(world, 2)
    client = drs()
    wait_job(client, start(client, ids, isDrill=True)["jobID"])
    instances = client.describe_recovery_instances()["items"]
    job = client.terminate_recovery_instances(recoveryInstanceIDs=[i["recoveryInstanceID"] for i in instances])["job"]
    assert (job["type"], job["initiatedBy"]) == ("TERMINATE", "TERMINATE_RECOVERY_INSTANCES")
    job = wait_job(client, job["jobID"])
    assert statuses(job) == dict.fromkeys(ids, "TERMINATED")
    assert client.describe_recovery_instances()["items"] == []
    ec2 = boto3.client("ec2", region_name=REGION)
    found = ec2.describe_instances(InstanceIds=[i["ec2InstanceID"] for i in instances])["Reservations"]
    assert {m["State"]["Name"] for r in found for m in r["Instances"]} == {"terminated"}
    assert [e for e, s in events(client, job["jobID"]) if s == ids[0]] == ["CLEANUP_START", "CLEANUP_END"]


def test_reverse_replication_creates_a_failback_server_in_the_original_region(world):
    (server_id,) = servers(world, 1, source_region="us-east-1")
    # 5 s at this scale: long enough to observe the initial sync even on a loaded machine.
    world.set_durations(resync=200)
    client = drs()
    wait_job(client, start(client, [server_id])["jobID"])
    (instance,) = client.describe_recovery_instances()["items"]
    assert instance["originEnvironment"] == "AWS"
    reversed_arn = client.reverse_replication(recoveryInstanceID=instance["recoveryInstanceID"])[
        "reversedDirectionSourceServerArn"]
    assert reversed_arn.startswith(f"arn:aws:drs:us-east-1:{HUB_ACCOUNT}:source-server/s-")
    east = drs("us-east-1")
    (reversed_server,) = east.describe_source_servers()["items"]
    assert reversed_server["arn"] == reversed_arn and reversed_server["replicationDirection"] == "FAILBACK"
    assert reversed_server["sourceCloudProperties"]["originRegion"] == REGION
    assert reversed_server["dataReplicationInfo"]["dataReplicationState"] == "INITIAL_SYNC"
    assert reversed_server["dataReplicationInfo"]["etaDateTime"]
    deadline = time.monotonic() + 15
    while reversed_server["dataReplicationInfo"]["dataReplicationState"] == "INITIAL_SYNC":
        assert time.monotonic() < deadline, "the failback server never finished its initial sync"
        time.sleep(0.5)
        (reversed_server,) = east.describe_source_servers()["items"]
    assert reversed_server["dataReplicationInfo"]["dataReplicationState"] == "CONTINUOUS"
    original = client.describe_source_servers()["items"][0]
    assert original["reversedDirectionSourceServerArn"] == reversed_arn


def test_update_launch_configuration_writes_a_new_template_version(world):
    (server_id,) = servers(world, 1)
    client = drs()
    config = client.get_launch_configuration(sourceServerID=server_id)
    template_id = config["ec2LaunchTemplateID"]
    updated = client.update_launch_configuration(sourceServerID=server_id, launchDisposition="STOPPED",
                                                 copyTags=True)
    assert (updated["launchDisposition"], updated["copyTags"]) == ("STOPPED", True)
    ec2 = boto3.client("ec2", region_name=REGION)
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=template_id)["LaunchTemplateVersions"]
    assert sorted(v["VersionNumber"] for v in versions) == [1, 2]
    assert ec2.describe_launch_templates(LaunchTemplateIds=[template_id])["LaunchTemplates"][0][
        "DefaultVersionNumber"] == 2
    wait_job(client, start(client, [server_id])["jobID"])
    (instance,) = client.describe_recovery_instances()["items"]
    assert instance["ec2InstanceState"] == "STOPPED"  # LAUNCHED, but not running


def test_describe_source_servers_paginates(world):
    ids = servers(world, 7)
    client = drs()
    first = client.describe_source_servers(maxResults=3)
    assert len(first["items"]) == 3 and first["nextToken"]
    pages = list(client.get_paginator("describe_source_servers").paginate(PaginationConfig={"PageSize": 3}))
    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    assert [s["sourceServerID"] for p in pages for s in p["items"]] == ids


def test_ids_are_deterministic_under_a_seed(sandbox):
    def run(seed: int) -> tuple[list[str], str, list[str]]:
        world = reset_world(time_scale=50, seed=seed)
        ids = servers(world, 3)
        client = drs()
        job = wait_job(client, start(client, ids)["jobID"])
        return ids, job["jobID"], sorted(p["recoveryInstanceID"] for p in job["participatingServers"])

    try:
        assert run(11) == run(11)
        assert run(11)[0] != run(12)[0]
    finally:
        reset_world()


def test_an_account_region_is_uninitialized_until_initialize_service(world):
    client = drs("eu-west-1")
    err = error_of(lambda: client.describe_source_servers())
    assert err.response["Error"]["Code"] == "UninitializedAccountException"
    client.initialize_service()
    assert client.describe_source_servers()["items"] == []


def test_recovery_from_a_chosen_snapshot_and_from_an_unknown_one(world):
    ids = servers(world, 2)
    client = drs()
    snapshots = client.describe_recovery_snapshots(sourceServerID=ids[0], order="DESC")["items"]
    assert len(snapshots) > 20 and snapshots[0]["timestamp"] > snapshots[-1]["timestamp"]
    chosen = snapshots[3]
    job = client.start_recovery(sourceServers=[{"sourceServerID": ids[0], "recoverySnapshotID": chosen["snapshotID"]},
                                               {"sourceServerID": ids[1], "recoverySnapshotID": "pit-0123456789abcdef0"}])
    job = wait_job(client, job["job"]["jobID"])
    assert statuses(job) == {ids[0]: "LAUNCHED", ids[1]: "FAILED"}
    (instance,) = client.describe_recovery_instances()["items"]
    assert instance["pointInTimeSnapshotDateTime"] == chosen["timestamp"]
    assert [e for e, s in events(client, job["jobID"]) if s == ids[1]] == ["USING_PREVIOUS_SNAPSHOT",
                                                                            "USING_PREVIOUS_SNAPSHOT_FAILED"]


def test_unimplemented_operations_say_so(world):
    err = error_of(lambda: drs().list_staging_accounts())
    assert err.response["Error"]["Code"] == "ValidationException"
    assert err.response["reason"] == "unknownOperation" and "ListStagingAccounts" in err.response["Error"]["Message"]
