"""The worker process: hosts DrLifecycleWorkflow and the AWS activities on one task queue."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
from datetime import timedelta
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.core.aws import AwsClients
from activities.core.heartbeat import KeepAlive
from activities.callback import CallbackActivities
from activities.claims import ClaimActivities
from activities.drs.activities import DrsActivities
from activities.notify import NotifyActivities
from activities.core.runtime import DrActivities
from workflows.claims import DrClaimsWorkflow
from workflows.drs_recovery import DrsRecoveryWorkflow
from workflows.lifecycle import DrLifecycleWorkflow
from contracts.lifecycle import DEFAULT_TASK_QUEUE
from workers.encryption import KEYS_FILE_ENV, EncryptionCodec, KeyRing, KeyRingError, data_converter

log = structlog.get_logger("dr.worker")

# What the worker hosts; tests/test_replay_histories.py replays recorded histories against exactly these.
WORKFLOWS = (DrLifecycleWorkflow, DrsRecoveryWorkflow, DrClaimsWorkflow)

# Activities are blocking boto3 calls in threads; this bounds both the threads and the concurrent activities.
ACTIVITY_THREADS = 32


# Where Temporal is when neither the environment nor a profile file says: a local dev server.
DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"
# Payloads are sealed unless this says "off" explicitly: a forgotten key file must not mean tokens in clear.
ENCRYPTION_ENV = "DR_PAYLOAD_ENCRYPTION"

# Our TLS variables before we read Temporal's environment configuration, and what the SDK and the `temporal` CLI
# call them. Honoured for one release (deprecated in issue 12), then gone.
LEGACY_TLS_VARIABLES = {
    "TEMPORAL_TLS_CERT": "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_KEY": "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CA": "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
}


def with_legacy_tls(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with each legacy TLS variable copied onto its envconfig name when that one is unset (the new name
    wins when both are); one deprecation warning names the new variables."""
    env = dict(environ)
    legacy = {old: new for old, new in LEGACY_TLS_VARIABLES.items() if env.get(old)}
    for old, new in legacy.items():
        env.setdefault(new, env[old])
    if legacy:
        log.warning("temporal.config.deprecated_variables", use_instead=legacy,
                    note="the old names work for one more release; when both are set the new one wins")
    return env


@dataclass(frozen=True)
class TemporalSettings:
    """Where Temporal is, as the Temporal ecosystem configures it (temporalio.envconfig, shared with the `temporal`
    CLI): TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_GRPC_META_* over the
    TEMPORAL_PROFILE profile of TEMPORAL_CONFIG_FILE (default ~/.config/temporalio/temporal.toml) over our defaults.
    The task queue is ours (TEMPORAL_TASK_QUEUE): envconfig has none, and so is the payload key file
    (DR_PAYLOAD_KEYS_FILE, see workers/encryption.py; DR_PAYLOAD_ENCRYPTION=off to write payloads in clear)."""

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = DEFAULT_TASK_QUEUE
    # The rest of the profile (API key, TLS, gRPC metadata). Certificate files are read at connect(), as before.
    profile: ClientConfigProfile = field(default_factory=ClientConfigProfile, repr=False)
    payload_keys_file: Path | None = None
    payload_encryption: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TemporalSettings:
        """Raises temporalio.envconfig's errors for an unreadable profile file or an unknown TEMPORAL_PROFILE."""
        env = with_legacy_tls(os.environ if environ is None else environ)
        profile = ClientConfigProfile.load(override_env_vars=env)
        encryption = (env.get(ENCRYPTION_ENV) or "on").strip().lower()
        if encryption not in ("on", "off"):
            raise ValueError(f"{ENCRYPTION_ENV} must be 'on' or 'off', not {env[ENCRYPTION_ENV]!r}")
        keys_file = env.get(KEYS_FILE_ENV)
        return cls(address=profile.address or cls.address, namespace=profile.namespace or cls.namespace,
                   task_queue=env.get("TEMPORAL_TASK_QUEUE") or cls.task_queue, profile=profile,
                   payload_keys_file=Path(keys_file) if keys_file else None, payload_encryption=encryption == "on")

    def connect_config(self) -> ClientConnectConfig:
        """Client.connect's keyword arguments; an API key without TLS settings means TLS with the system roots."""
        config = self.profile.to_client_connect_config()
        config["target_host"] = self.address
        config["namespace"] = self.namespace
        return config


class PayloadKeysNotConfigured(KeyRingError):
    """Neither a key file nor an explicit DR_PAYLOAD_ENCRYPTION=off."""


def payload_converter(settings: TemporalSettings) -> DataConverter:
    """The data converter of every client, the worker's and drctl's: payloads sealed with the configured key ring.
    Raises KeyRingError (one line naming the file and the entry) for a missing or unusable key file."""
    if not settings.payload_encryption:
        log.warning("payloads.unencrypted", setting=f"{ENCRYPTION_ENV}=off",
                    note="inputs, tokens, approvals and failures are stored in Temporal's history in clear")
        return data_converter(None)
    if settings.payload_keys_file is None:
        raise PayloadKeysNotConfigured(
            f"no payload key file: set {KEYS_FILE_ENV} (create one with `drctl keys rotate --file PATH`, add "
            f"`--kms KMS_KEY_ID` in production; `drctl auth init` makes one too), or {ENCRYPTION_ENV}=off to store "
            "payloads in clear")
    return data_converter(KeyRing.load(settings.payload_keys_file))


async def connect(settings: TemporalSettings, converter: DataConverter | None = None) -> Client:
    return await Client.connect(**settings.connect_config(),
                                data_converter=converter or payload_converter(settings))


def workflow_runner() -> SandboxedWorkflowRunner:
    """The default sandbox, but token verification's crypto libraries pass through: their native bindings cannot be
    re-imported per workflow, and signature checks are deterministic."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("jwt", "cryptography", "_cffi_backend"))


def build_worker(client: Client, task_queue: str, aws: AwsClients,
                 executor: concurrent.futures.ThreadPoolExecutor, workflows: Sequence[type] = WORKFLOWS) -> Worker:
    """`workflows`: another release's workflow code under the same type names, for the upgrade test
    (tests/test_upgrade_at_gate.py); the worker always hosts WORKFLOWS."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(workflows),
        activities=[*DrActivities(aws).all(), *DrsActivities(aws).all(), *CallbackActivities(aws).all(),
                    *NotifyActivities(aws).all(), *ClaimActivities(client).all()],
        activity_executor=executor,
        # Heartbeats for every activity whose call has a heartbeat timeout: a lost worker costs that long, no more.
        interceptors=[KeepAlive()],
        workflow_runner=workflow_runner(),
        max_concurrent_activities=ACTIVITY_THREADS,
        graceful_shutdown_timeout=timedelta(seconds=20),
    )


async def run_worker(settings: TemporalSettings) -> None:
    converter = payload_converter(settings)  # before connecting: a bad key file is named even with no server
    client = await connect(settings, converter)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    threads = concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS, thread_name_prefix="dr-activity")
    with threads as executor:
        worker = build_worker(client, settings.task_queue, AwsClients(), executor)
        log.info("worker.started", address=settings.address, namespace=settings.namespace,
                 task_queue=settings.task_queue, payload_key=_writing_key(converter))
        async with worker:
            await stop.wait()
            log.info("worker.stopping", reason="signal")
    log.info("worker.stopped")


def _writing_key(converter: DataConverter) -> str:
    codec = converter.payload_codec
    return codec.writing_key if isinstance(codec, EncryptionCodec) else "none (payloads in clear)"


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
