"""`drctl sandbox serve` as a user runs it: its own process, the default scenario, the admin path, boto3 over HTTP.

A separate process, so resetting it or injecting faults never disturbs the sandbox the rest of the suite shares.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sysconfig
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from drctl.processes import free_port
from tests import reaper

DRCTL = os.path.join(sysconfig.get_path("scripts"), "drctl")
HUB, APP = "123456789012", "210987654321"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
NO_RETRIES = Config(retries={"total_max_attempts": 1})  # `max_attempts` would count retries, not attempts


class Served:
    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, service: str, region: str = "us-west-2", config: Config | None = None,
               **credentials: str) -> object:
        return boto3.client(service, region_name=region, endpoint_url=self.url, config=config,
                            **(credentials or CREDENTIALS))

    def in_account(self, account: str, service: str, region: str = "us-west-2") -> object:
        creds = self.client("sts", "us-east-1").assume_role(  # type: ignore[attr-defined]
            RoleArn=f"arn:aws:iam::{account}:role/inspector", RoleSessionName="inspector")["Credentials"]
        return self.client(service, region, aws_access_key_id=creds["AccessKeyId"],
                           aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])

    def admin(self, action: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(f"{self.url}/_sandbox/{action}", method="POST" if body is not None else "GET",
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    port = free_port()
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with log.open("w") as out:
        process = subprocess.Popen([DRCTL, "sandbox", "serve", "--port", str(port), "--seed", "11"],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    reaper.watch(process.pid)  # stopped even if this session is killed outright
    try:
        deadline = time.monotonic() + 120
        while "sandbox ready at" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield Served(f"http://127.0.0.1:{port}")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, Path(log).read_text()[-2000:]


def _servers(client: object) -> list[dict]:
    paginator = client.get_paginator("describe_source_servers")  # type: ignore[attr-defined]
    return [s for page in paginator.paginate(filters={}) for s in page["items"]]


def test_default_scenario_has_a_realistic_estate(served: Served):
    hub = _servers(served.client("drs"))
    continuous = [s for s in hub if s["dataReplicationInfo"]["dataReplicationState"] == "CONTINUOUS"]
    assert len(continuous) >= 150
    assert {s["dataReplicationInfo"]["dataReplicationState"] for s in hub} >= {"CONTINUOUS", "STALLED"}
    assert all(s["tags"].get("DR") == "enabled" for s in hub)
    app = _servers(served.in_account(APP, "drs"))
    assert len(app) == 10 and not {s["sourceServerID"] for s in app} & {s["sourceServerID"] for s in hub}
    state = served.admin("state")
    assert state["scenario"] == "default"


def test_three_servers_recover_within_30_seconds_at_the_default_time_scale(served: Served):
    drs, ec2 = served.client("drs"), served.client("ec2")
    web = sorted((s for s in _servers(drs) if s["tags"].get("Tier") == "web"), key=lambda s: s["sourceServerID"])[:3]
    ids = [s["sourceServerID"] for s in web]
    job = drs.start_recovery(sourceServers=[{"sourceServerID": i} for i in ids], isDrill=True)["job"]
    started = time.monotonic()
    with pytest.raises(ClientError) as conflict:  # one of them again while the first job is active
        drs.start_recovery(sourceServers=[{"sourceServerID": ids[0]}], isDrill=True)
    assert conflict.value.response["Error"]["Code"] == "ConflictException"
    assert conflict.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    while True:
        current = drs.describe_jobs(filters={"jobIDs": [job["jobID"]]})["items"][0]
        if current["status"] == "COMPLETED":
            break
        assert time.monotonic() - started < 30, current
        time.sleep(0.5)
    assert {p["launchStatus"] for p in current["participatingServers"]} == {"LAUNCHED"}
    recovered = drs.describe_recovery_instances(filters={"sourceServerIDs": ids})["items"]
    assert sorted(r["sourceServerID"] for r in recovered) == sorted(ids) and all(r["isDrill"] for r in recovered)
    reservations = ec2.describe_instances(InstanceIds=[r["ec2InstanceID"] for r in recovered])["Reservations"]
    assert [i["State"]["Name"] for res in reservations for i in res["Instances"]] == ["running"] * 3


def test_a_job_over_the_per_job_quota_is_refused(served: Served):
    ids = [s["sourceServerID"] for s in _servers(served.client("drs"))
           if s["dataReplicationInfo"]["dataReplicationState"] == "CONTINUOUS"][:101]
    with pytest.raises(ClientError) as refused:
        served.client("drs").start_recovery(sourceServers=[{"sourceServerID": i} for i in ids], isDrill=True)
    assert refused.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 402


def test_admin_faults_and_replication_changes(served: Served):
    drs = served.client("drs", config=NO_RETRIES)
    served.admin("faults", {"throttleRate": 0.3})
    try:
        throttled = 0
        for _ in range(100):
            try:
                drs.describe_jobs(filters={})
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "ThrottlingException"
                assert exc.response.get("retryAfterSeconds")
                throttled += 1
    finally:
        served.admin("faults", {"throttleRate": 0.0})
    assert 15 <= throttled <= 45  # about 30 %

    server = next(s for s in _servers(drs) if s["tags"].get("Tier") == "db")
    served.admin("replication", {"account": HUB, "region": "us-west-2", "server": server["sourceServerID"],
                                 "state": "DISCONNECTED", "lagSeconds": 900})
    seen = drs.describe_source_servers(filters={"sourceServerIDs": [server["sourceServerID"]]})["items"][0]
    assert seen["dataReplicationInfo"]["dataReplicationState"] == "DISCONNECTED"
    assert seen["dataReplicationInfo"]["lagDuration"] == "PT15M"


def test_admin_errors_are_clear(served: Served):
    with pytest.raises(urllib.error.HTTPError) as missing:
        served.admin("no-such-action", {})
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as bad:
        served.admin("faults", {"throttleRate": 0.1, "noSuchFault": 1})
    assert bad.value.code == 400 and "no_such_fault" in bad.value.read().decode()


def test_reset_then_seed_another_scenario(served: Served):
    served.admin("reset", {"timeScale": 5, "seed": 2})
    assert served.admin("state")["scenario"] is None
    with pytest.raises(ClientError) as fresh:  # as on AWS: a fresh account/region must initialize DRS first
        _servers(served.client("drs"))
    assert fresh.value.response["Error"]["Code"] == "UninitializedAccountException"
    seeded = served.admin("scenario", {"name": "demo"})["seeded"]
    assert seeded["scenario"] == "demo"
    rds = served.in_account(APP, "rds", "us-west-2")
    assert [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]] == ["orders-db-replica"]
