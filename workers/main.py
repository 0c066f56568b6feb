"""The worker process: hosts DrLifecycleWorkflow and the AWS activities on one task queue."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
from datetime import timedelta
import sys
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.core.aws import AwsClients
from activities.callback import CallbackActivities
from activities.drs.activities import DrsActivities
from activities.notify import NotifyActivities
from activities.core.runtime import DrActivities
from workflows.drs_recovery import DrsRecoveryWorkflow
from workflows.lifecycle import DrLifecycleWorkflow
from contracts.lifecycle import DEFAULT_TASK_QUEUE

log = structlog.get_logger("dr.worker")

# What the worker hosts; tests/test_replay_histories.py replays recorded histories against exactly these.
WORKFLOWS = (DrLifecycleWorkflow, DrsRecoveryWorkflow)

# Activities are blocking boto3 calls in threads; this bounds both the threads and the concurrent activities.
ACTIVITY_THREADS = 32


@dataclass(frozen=True)
class TemporalSettings:
    """Where Temporal is. From the environment, so the same image runs against a dev server or a real cluster."""

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> TemporalSettings:
        def path(name: str) -> Path | None:
            value = os.environ.get(name)
            return Path(value) if value else None

        return cls(
            address=os.environ.get("TEMPORAL_ADDRESS", cls.address),
            namespace=os.environ.get("TEMPORAL_NAMESPACE", cls.namespace),
            task_queue=os.environ.get("TEMPORAL_TASK_QUEUE", cls.task_queue),
            tls_cert=path("TEMPORAL_TLS_CERT"),
            tls_key=path("TEMPORAL_TLS_KEY"),
            tls_ca=path("TEMPORAL_TLS_CA"),
            api_key=os.environ.get("TEMPORAL_API_KEY") or None,
        )

    def tls(self) -> TLSConfig | bool:
        if self.tls_cert or self.tls_ca:
            return TLSConfig(
                client_cert=self.tls_cert.read_bytes() if self.tls_cert else None,
                client_private_key=self.tls_key.read_bytes() if self.tls_key else None,
                server_root_ca_cert=self.tls_ca.read_bytes() if self.tls_ca else None,
            )
        return bool(self.api_key)  # Temporal Cloud API keys need TLS with the system roots


async def connect(settings: TemporalSettings) -> Client:
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        tls=settings.tls(),
        api_key=settings.api_key,
        data_converter=pydantic_data_converter,
    )


def workflow_runner() -> SandboxedWorkflowRunner:
    """The default sandbox, but token verification's crypto libraries pass through: their native bindings cannot be
    re-imported per workflow, and signature checks are deterministic."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("jwt", "cryptography", "_cffi_backend"))


def build_worker(client: Client, task_queue: str, aws: AwsClients,
                 executor: concurrent.futures.ThreadPoolExecutor) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=[*DrActivities(aws).all(), *DrsActivities(aws).all(), *CallbackActivities(aws).all(),
                    *NotifyActivities(aws).all()],
        activity_executor=executor,
        workflow_runner=workflow_runner(),
        max_concurrent_activities=ACTIVITY_THREADS,
        graceful_shutdown_timeout=timedelta(seconds=20),
    )


async def run_worker(settings: TemporalSettings) -> None:
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS, thread_name_prefix="dr-activity") as executor:
        worker = build_worker(client, settings.task_queue, AwsClients(), executor)
        log.info("worker.started", address=settings.address, namespace=settings.namespace,
                 task_queue=settings.task_queue)
        async with worker:
            await stop.wait()
            log.info("worker.stopping", reason="signal")
    log.info("worker.stopped")


def main(settings: TemporalSettings | None = None) -> None:
    code = 0
    try:
        asyncio.run(run_worker(settings or TemporalSettings.from_env()))
    except Exception as exc:  # startup problems (no server, bad TLS files) are the operator's to fix, not a bug
        log.error("worker.failed", error=str(exc), error_type=type(exc).__name__)
        code = 1
    # The SDK can crash at interpreter exit once a Worker ran (sdk-python#300): flush and leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
