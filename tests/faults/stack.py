"""The whole product as processes, for the fault suite: a Temporal dev server (SQLite on disk, so it can be killed
with SIGKILL and started again with its history), the sandbox over HTTP seeded with the three-tier estate, and any
number of `drctl worker` processes. Each can be killed outright; every process is stopped by its PID at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from activities.core.registry import catalogue
from drctl.demo_services import SANDBOX_CREDENTIALS, RequestedPorts, start_sandbox, start_temporal
from drctl.dev_idp import DevIdentityProvider
from drctl.processes import ManagedProcess, temporal_dev_server_argv, venv_tool, wait_for_line, wait_for_port
from plans.loader import load_plan
from plans.model import Mode, Plan
from contracts.lifecycle import WORKFLOW_TYPE, LifecycleInput, RunOptions, workflow_id_for
from contracts.run_metadata import start_metadata
from contracts.search_attributes import start_search_attributes
from tests.identity_helpers import session_converter, session_keys_file
from workers.encryption import KEYS_FILE_ENV
from tests import reaper

THREE_TIER = Path(__file__).resolve().parents[2] / "plans" / "examples" / "three-tier.yaml"
INITIATOR = "sre@faults.local"


def _quiet(_: str) -> None:
    pass


@dataclass
class Stack:
    state: Path
    temporal: ManagedProcess
    temporal_argv: list[str]
    temporal_port: int
    sandbox_url: str
    idp: DevIdentityProvider
    workers: list[ManagedProcess] = field(default_factory=list)
    others: list[ManagedProcess] = field(default_factory=list)

    @classmethod
    def start(cls, state: Path) -> Stack:
        children: list[ManagedProcess] = []
        temporal, port, _ = start_temporal(state / "temporal.db", state / "temporal.log", RequestedPorts(), children,
                                           _quiet)
        reaper.watch(temporal.pid)
        sandbox, url = start_sandbox("three-tier", state / "sandbox.log", RequestedPorts(), children, _quiet)
        reaper.watch(sandbox.pid)
        idp = DevIdentityProvider.ensure(state / "auth")
        return cls(state=state, temporal=temporal, temporal_argv=list(temporal.popen.args),  # type: ignore[arg-type]
                   temporal_port=port, sandbox_url=url, idp=idp, others=[sandbox])

    # ---- processes -------------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def aws_env(self) -> dict[str, str]:
        return {**SANDBOX_CREDENTIALS, "AWS_ENDPOINT_URL": self.sandbox_url}

    def add_worker(self, task_queue: str, **env: str) -> ManagedProcess:
        n = len(self.workers) + 1
        process = ManagedProcess(f"worker-{n}", [venv_tool("drctl"), "worker"], self.state / f"worker-{n}.log", env={
            **self.aws_env(), "TEMPORAL_ADDRESS": self.address, "TEMPORAL_TASK_QUEUE": task_queue,
            "DR_AUTH_TRUST_FILE": str(self.idp.trust_file.resolve()), KEYS_FILE_ENV: str(session_keys_file()),
            "DR_POLL_CAP_SECONDS": "1", **env})
        reaper.watch(process.pid)
        self.workers.append(process)
        wait_for_line(process, "worker.started", 60)
        return process

    @staticmethod
    def kill(process: ManagedProcess) -> None:
        """SIGKILL to the process group: no shutdown, no goodbye to the server, as when a machine dies."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.popen.wait(timeout=10)

    def restart_temporal(self) -> None:
        """The dev server again on the same ports and SQLite file: every run's history is still there."""
        self.temporal = ManagedProcess("temporal", self.temporal_argv, self.state / "temporal-2.log")
        reaper.watch(self.temporal.pid)
        wait_for_port(self.temporal_port, 60, self.temporal)

    def stop(self) -> None:
        for process in [*self.workers, self.temporal, *self.others]:
            process.stop(grace=5)

    # ---- the sandbox ---------------------------------------------------------------------------------------------

    def admin(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.sandbox_url}/_sandbox/{action}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.load(response))

    def reset(self, time_scale: float, seed: int = 7) -> None:
        """A fresh three-tier estate with DRS at `time_scale` (a wave then takes about 10 s / time_scale)."""
        self.admin("reset", {"timeScale": time_scale, "seed": seed})
        self.admin("scenario", {"name": "three-tier"})

    # ---- runs ---------------------------------------------------------------------------------------------------

    def plan(self, edit: tuple[str, str] | None = None) -> Plan:
        """The three-tier plan, with `edit` (old, new) made to its text first: a fault case's own setting."""
        os.environ.update(self.aws_env())  # reference checks while loading read the sandbox
        path = THREE_TIER
        if edit:
            text = THREE_TIER.read_text()
            assert edit[0] in text, edit
            path = self.state / "three-tier.yaml"
            path.write_text(text.replace(edit[0], edit[1], 1))
        return load_plan(path, catalogue=catalogue())

    async def drill(self, task_queue: str, workers: int = 1, options: RunOptions | None = None,
                    faults: dict[str, Any] | None = None,
                    edit: tuple[str, str] | None = None) -> tuple[Plan, WorkflowHandle[Any, Any]]:
        """A fresh estate with DRS `faults` (the admin API's fields), `workers` workers on their own task
        queue, and a drill of the three-tier plan (with `edit` made to its text) started."""
        self.reset(time_scale=1)
        for _ in range(workers):
            self.add_worker(task_queue)
        plan = self.plan(edit)
        if faults:
            self.admin("faults", faults)
        return plan, await self.start_drill(await self.client(), task_queue, plan, options)

    async def client(self) -> Client:
        return await Client.connect(self.address, data_converter=session_converter())

    async def start_drill(self, client: Client, task_queue: str, plan: Plan,
                          options: RunOptions | None = None) -> WorkflowHandle[Any, Any]:
        run_input = LifecycleInput(plan=plan, mode=Mode.DRILL, initiator=INITIATOR, options=options or RunOptions(),
                                   token=self.idp.token(INITIATOR, ["operator"], ttl_seconds=3600))
        workflow_id = workflow_id_for(plan.name, Mode.DRILL, datetime.now(UTC), secrets.token_hex(3))
        return await client.start_workflow(WORKFLOW_TYPE, run_input, id=workflow_id, task_queue=task_queue,
                                           search_attributes=start_search_attributes(run_input),
                                           **start_metadata(run_input))


def seconds_since(started: float) -> float:
    return time.monotonic() - started
