"""Contract: every operation the DRS emulator implements, driven through a real boto3 client, answers what botocore's
model allows: only modeled members on the wire, valid enum values, types, lengths and patterns, for results and errors.

The check reads the raw body of every response (an `after-call` hook), because botocore's parser silently drops
members the model lacks: a test on parsed output alone would never see them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.model import Shape

from sandbox.drs.models import DrsWorld, reset_world
from sandbox.drs.responses import HANDLERS
from tests.conftest import HUB_ACCOUNT

REGION = "us-west-2"
# Shapes whose constraints contradict each other in botocore's model; the service follows the pattern. EbsVolumeID:
# max length 19, but its pattern and every real EC2 volume id ("vol-" + 17 hex digits) have 21 characters.
SELF_CONTRADICTORY = {"EbsVolumeID"}


@pytest.fixture
def world(sandbox: Any) -> Iterator[DrsWorld]:
    yield reset_world(time_scale=50, seed=3)
    reset_world()


class Contract:
    """Collects every operation called and every way a response strays from the model."""

    def __init__(self, client: Any) -> None:
        self.model = client.meta.service_model
        self.called: set[str] = set()
        self.problems: list[str] = []
        client.meta.events.register("after-call.drs", self.check_response)

    def check_response(self, http_response: Any, model: Any, **_: Any) -> None:
        self.called.add(model.name)
        status = http_response.status_code
        body = json.loads(http_response.content) if http_response.content else {}
        if status >= 300:
            code = http_response.headers.get("x-amzn-ErrorType", "").split(":")[0]
            shape = self.model.shape_for_error_code(code)
            if shape is None or code not in {e.name for e in model.error_shapes} | {"ValidationException"}:
                self.problems.append(f"{model.name}: error {code!r} is not one the model gives this operation")
            if shape is not None:
                self.check(body, shape, f"{model.name}!{code}")
            return
        expected = model.http.get("responseCode", 200)
        if status != expected:
            self.problems.append(f"{model.name}: HTTP {status}, the model says {expected}")
        if model.output_shape is not None:
            self.check(body, model.output_shape, model.name)

    def check(self, value: Any, shape: Shape, path: str) -> None:
        kind, meta = shape.type_name, shape.metadata
        if kind == "structure":
            wire = {m.serialization.get("name", n): m for n, m in shape.members.items()
                    if m.serialization.get("location") is None}
            if not isinstance(value, dict):
                self.problems.append(f"{path}: not an object")
                return
            for key, item in value.items():
                if key not in wire:
                    self.problems.append(f"{path}.{key}: not a member of {shape.name}")
                else:
                    self.check(item, wire[key], f"{path}.{key}")
        elif kind == "list":
            self._size(path, len(value) if isinstance(value, list) else None, meta)
            for i, item in enumerate(value if isinstance(value, list) else []):
                self.check(item, shape.member, f"{path}[{i}]")
        elif kind == "map":
            for key, item in (value.items() if isinstance(value, dict) else []):
                self.check(key, shape.key, f"{path} key")
                self.check(item, shape.value, f"{path}.{key}")
        elif kind == "string":
            if not isinstance(value, str):
                self.problems.append(f"{path}: {value!r} is not a string")
                return
            if shape.name not in SELF_CONTRADICTORY:
                self._size(path, len(value), meta)
            if shape.enum and value not in shape.enum:
                self.problems.append(f"{path}: {value!r} is not in {shape.name}")
            if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
                self.problems.append(f"{path}: {value!r} does not match {meta['pattern']}")
        elif kind in ("integer", "long"):
            if not isinstance(value, int) or isinstance(value, bool):
                self.problems.append(f"{path}: {value!r} is not an integer")
            else:
                self._size(path, value, meta)
        elif kind == "boolean" and not isinstance(value, bool):
            self.problems.append(f"{path}: {value!r} is not a boolean")

    def _size(self, path: str, size: int | None, meta: dict[str, Any]) -> None:
        if size is None:
            self.problems.append(f"{path}: wrong JSON type")
        elif size < meta.get("min", size) or size > meta.get("max", size):
            self.problems.append(f"{path}: size {size} outside [{meta.get('min')}, {meta.get('max')}]")


def wait_job(client: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (job := client.describe_jobs(filters={"jobIDs": [job_id]})["items"][0])["status"] != "COMPLETED":
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_every_implemented_operation_answers_within_the_model(world):
    client = boto3.client("drs", region_name=REGION)
    contract = Contract(client)
    ec2_ids = [world.add_source_server(HUB_ACCOUNT, REGION, f"app{i}", tags={"tier": "app"}) for i in range(2)]
    on_prem = world.add_source_server(HUB_ACCOUNT, REGION, "mainframe", ec2_origin=False, replication_state="BACKLOG",
                                      lag_seconds=90)
    stalled = world.add_source_server(HUB_ACCOUNT, REGION, "stalled", replication_state="STALLED")
    ids = [*ec2_ids, on_prem]

    fresh = boto3.client("drs", region_name="eu-central-1")
    contract_fresh = Contract(fresh)
    with pytest.raises(ClientError):
        fresh.describe_source_servers()
    fresh.initialize_service()
    assert fresh.describe_source_servers()["items"] == []

    listed = client.describe_source_servers(filters={"sourceServerIDs": ids}, maxResults=2)
    assert len(listed["items"]) == 2 and listed["nextToken"]
    client.describe_source_servers(nextToken=listed["nextToken"])
    hint = listed["items"][0]["sourceProperties"]["identificationHints"]["awsInstanceID"]
    assert [s["sourceServerID"] for s in client.describe_source_servers(filters={"hardwareId": hint})["items"]] == \
        [ec2_ids[0]]
    assert client.describe_source_servers(filters={"stagingAccountIDs": ["444455556666"]})["items"] == []

    now = datetime.now(UTC)
    snapshots = client.describe_recovery_snapshots(
        sourceServerID=ec2_ids[0], order="DESC", maxResults=5,
        filters={"fromDateTime": (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "toDateTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert snapshots["items"] and snapshots["nextToken"]
    client.describe_recovery_snapshots(sourceServerID=stalled)

    client.get_launch_configuration(sourceServerID=ec2_ids[0])
    client.update_launch_configuration(sourceServerID=ec2_ids[0], copyPrivateIp=True, copyTags=True,
                                       targetInstanceTypeRightSizingMethod="NONE", licensing={"osByol": False},
                                       name="app0-launch")
    client.get_replication_configuration(sourceServerID=ec2_ids[0])
    client.update_replication_configuration(
        sourceServerID=ec2_ids[0], bandwidthThrottling=100, dataPlaneRouting="PUBLIC_IP",
        pitPolicy=[{"ruleID": 1, "units": "MINUTE", "interval": 10, "retentionDuration": 60, "enabled": True},
                   {"ruleID": 2, "units": "HOUR", "interval": 1, "retentionDuration": 12, "enabled": True},
                   {"ruleID": 3, "units": "DAY", "interval": 1, "retentionDuration": 3, "enabled": True}])

    # A job's timeline is fixed when it starts: a 1 s pending phase (at this time scale) keeps it active for the
    # delete below even on a loaded machine, and later jobs are fast again.
    world.set_durations(pending=50)
    job = client.start_recovery(sourceServers=[{"sourceServerID": i} for i in ids + [stalled]], isDrill=False,
                                tags={"run": "contract"})["job"]
    world.set_durations(pending=1)
    with pytest.raises(ClientError):  # an active job cannot be deleted
        client.delete_job(jobID=job["jobID"])
    job = wait_job(client, job["jobID"])
    client.describe_jobs(filters={"fromDate": (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                  "toDate": (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")},
                         maxResults=10)
    log = client.describe_job_log_items(jobID=job["jobID"], maxResults=4)
    client.describe_job_log_items(jobID=job["jobID"], nextToken=log["nextToken"])
    instances = {i["sourceServerID"]: i for i in client.describe_recovery_instances(
        filters={"sourceServerIDs": ids}, maxResults=10)["items"]}
    assert set(instances) == set(ids)
    client.describe_recovery_instances(filters={"recoveryInstanceIDs": [instances[on_prem]["recoveryInstanceID"]]})

    for arn in (job["arn"], instances[ec2_ids[0]]["arn"], f"arn:aws:drs:{REGION}:{HUB_ACCOUNT}:source-server/{on_prem}"):
        client.tag_resource(resourceArn=arn, tags={"owner": "dr-team", "temp": "x"})
        client.untag_resource(resourceArn=arn, tagKeys=["temp"])
        assert client.list_tags_for_resource(resourceArn=arn)["tags"]["owner"] == "dr-team"

    client.reverse_replication(recoveryInstanceID=instances[ec2_ids[1]]["recoveryInstanceID"])
    failback = client.start_failback_launch(recoveryInstanceIDs=[instances[on_prem]["recoveryInstanceID"]],
                                            tags={"run": "failback"})["job"]
    assert failback["initiatedBy"] == "FAILBACK"
    wait_job(client, failback["jobID"])
    client.describe_recovery_instances()
    client.disconnect_recovery_instance(recoveryInstanceID=instances[ec2_ids[1]]["recoveryInstanceID"])

    assert client.stop_replication(sourceServerID=ec2_ids[1])["sourceServer"]["dataReplicationInfo"][
        "dataReplicationState"] == "STOPPED"
    assert client.start_replication(sourceServerID=ec2_ids[1])["sourceServer"]["dataReplicationInfo"][
        "dataReplicationState"] == "RESCAN"

    terminate = client.terminate_recovery_instances(
        recoveryInstanceIDs=[instances[ec2_ids[0]]["recoveryInstanceID"], instances[on_prem]["recoveryInstanceID"]])
    wait_job(client, terminate["job"]["jobID"])
    client.delete_job(jobID=job["jobID"])
    with pytest.raises(ClientError):
        client.describe_job_log_items(jobID=job["jobID"])
    with pytest.raises(ClientError):
        client.start_recovery(sourceServers=[{"sourceServerID": "x-0123456789abcdefg"}])

    assert contract.problems + contract_fresh.problems == [], "\n".join(contract.problems + contract_fresh.problems)
    assert contract.called | contract_fresh.called >= set(HANDLERS), set(HANDLERS) - contract.called
