"""drctl and the `temporal` CLI as real processes, the way an operator runs them, against the session's dev server."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import os
import signal
import sysconfig
from pathlib import Path
from typing import Any

from tests import reaper
from tests.conftest import TEST_TASK_QUEUE
from tests.identity_helpers import token_for

DRCTL = os.path.join(sysconfig.get_path("scripts"), "drctl")
TEMPORAL = os.path.join(sysconfig.get_path("scripts"), "temporal")


def cli_env(temporal_env: Any) -> dict[str, str]:
    """What drctl needs to reach the session's dev server and the test worker's task queue, with an operator's
    token."""
    return {"TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": TEST_TASK_QUEUE, "USER": "cli-tester",
            "DRCTL_TOKEN": token_for("cli-tester@example.com", ["operator"])}


async def drctl(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str, str]:
    # Async, because the worker these commands talk to runs on this test's event loop.
    process = await asyncio.create_subprocess_exec(
        DRCTL, *args, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, out.decode(), err.decode()


@functools.cache
def codec_options() -> tuple[str, ...]:
    """`--codec-endpoint URL --codec-auth "Bearer <auditor's token>"`: a `drctl codec-server` over the session's key
    and trust files, started once per test process, as a person reading sealed runs with the CLI points it there.
    Stopped by PID when the process exits (and by the reaper's watchdog if it dies)."""
    from tests.codec_helpers import codec_server
    from tests.identity_helpers import session_idp, session_keys_file

    stack = contextlib.ExitStack()
    log = session_idp().directory / f"codec-server-{os.getpid()}.log"
    url = stack.enter_context(codec_server(session_keys_file(), session_idp().trust_file, log))
    atexit.register(stack.close)
    return "--codec-endpoint", url, "--codec-auth", f"Bearer {token_for('cli-reader@example.com', ['auditor'])}"


async def temporal(worker: Any, *args: str, timeout: float = 60, codec: bool = True) -> tuple[int, str]:
    """The `temporal` CLI of the venv against the test server; its exit code and output (stdout and stderr).
    With `codec` (the default) it reads and writes payloads through the codec server, as a person with the key's
    codec endpoint does; without, it sees the sealed payloads. Async, for the same reason as drctl: the worker that
    answers runs on this test's event loop."""
    address = worker.client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        TEMPORAL, *args, "--address", address, "--namespace", worker.client.namespace,
        *(codec_options() if codec else ()), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, out.decode()


def payload(user: str, roles: tuple[str, ...], reason: str, run: str | None = None) -> str:
    """A control message's input as `--input` takes it: a token for `user` with `roles`, a reason, and the run it
    is for (an approve/reject must name it)."""
    return json.dumps({"token": token_for(user, roles), "reason": reason, **({"run": run} if run else {})})


async def listed(env: dict[str, str], *args: str, expect: int, timeout: float = 20) -> list[dict]:
    """`drill list ... -o json` once the visibility store has caught up with `expect` finished runs."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        code, out, err = await drctl("drill", "list", *args, "-o", "json", env=env)
        assert code == 0, err
        rows = json.loads(out)
        if len(rows) == expect and all(r["ended_at"] and r["status"] != "RUNNING" for r in rows):
            return rows
        assert asyncio.get_running_loop().time() < deadline, rows
        await asyncio.sleep(0.5)


def worker_env(temporal_env: Any, task_queue: str) -> dict[str, str]:
    """What `drctl worker` needs to serve `task_queue` of the session's dev server (the sandbox and the trust file
    come with the test process's environment)."""
    return {"TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": task_queue}


async def start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """A `drctl worker` process in a session of its own (so it can be killed with everything it started), once it
    says it started; its output goes to `log` (one log per worker: the first "worker.started" is taken)."""
    out = log.open("ab")
    process = await asyncio.create_subprocess_exec(DRCTL, "worker", env={**os.environ, **env}, stdout=out,
                                                   stderr=out, start_new_session=True)
    reaper.watch(process.pid)  # stopped even if this session is killed outright
    for _ in range(300):
        if "worker.started" in log.read_text():
            return process
        await asyncio.sleep(0.1)
    raise AssertionError(log.read_text())


async def stop_worker(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL if it is still there after 30 s; a process already gone is fine."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
