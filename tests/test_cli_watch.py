"""`drctl drill watch` and `drill status` on a run with DRS waves that drctl did not start: a wave gated by
pauseBefore holds the run mid-way, so the watchers attach while it waits, see the wave move once it is approved, and
end with the outcome. One watcher in a pseudo-terminal (the live view), one in a pipe (append-only lines)."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import re
import signal
import struct
import termios

import pytest
from ruamel.yaml import YAML

from tests.cli_helpers import DRCTL, cli_env, drctl
from tests.lifecycle_helpers import control, send, start_run, wait_until
from tests.test_drs_gates import gated_plan
from tests.test_drs_recovery import estate
from contracts.lifecycle import RunOptions, RunStatus
from plans.model import Mode

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
GATE = "ACTIVATE/servers/servers/wave:web"


class Terminal:
    """A process whose stdout is a pseudo-terminal of 200 x 60, read as it writes, escape sequences stripped."""

    def __init__(self) -> None:
        self.raw = bytearray()
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, *args: str, env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 200, 0, 0))
        self.master = master
        self.process = await asyncio.create_subprocess_exec(
            DRCTL, *args, stdin=asyncio.subprocess.DEVNULL, stdout=slave, stderr=asyncio.subprocess.PIPE,
            # COLUMNS and LINES too: Rich takes them over the terminal's size, and a test session may set them.
            env={**os.environ, **env, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "60"})
        os.close(slave)
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            self.raw += os.read(self.master, 65536)
        except OSError:  # EIO: the process closed the terminal
            asyncio.get_running_loop().remove_reader(self.master)

    @property
    def text(self) -> str:
        return _ANSI.sub("", self.raw.decode(errors="replace"))

    async def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = asyncio.get_running_loop().time() + timeout
        while not (found := re.search(pattern, self.text)):
            assert asyncio.get_running_loop().time() < deadline, f"{pattern!r} not seen in:\n{self.text[-3000:]}"
            await asyncio.sleep(0.1)
        return found

    async def close(self) -> tuple[int, str]:
        assert self.process is not None and self.process.stderr is not None
        err = await asyncio.wait_for(self.process.stderr.read(), 60)
        code = await asyncio.wait_for(self.process.wait(), 60)
        self._read_rest()
        return code, err.decode()

    def _read_rest(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.raw += chunk
        os.close(self.master)


@pytest.fixture
def env(worker, temporal_env) -> dict[str, str]:
    return cli_env(temporal_env)


async def test_watch_attaches_mid_run_and_follows_the_waves_to_the_outcome(worker, world, env):
    app = estate(world, {"db": 2, "web": 3})
    # Started through the SDK, not drctl: watch attaches to any run.
    handle = await start_run(worker.client, worker.task_queue, gated_plan("cli-watch", app), mode=Mode.DRILL,
                             options=RunOptions(phases=["ACTIVATE"]))
    await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL, timeout=60)

    # status, as a document: the run, and its DRS recovery's waves and servers; and as a table.
    (code, out, err), (yaml_code, yaml_out, yaml_err), (table_code, table, table_err) = await asyncio.gather(
        *(drctl("drill", "status", handle.id, *output, env=env) for output in (("-o", "json"), ("-o", "yaml"), ())))
    assert code == yaml_code == table_code == 0, err + yaml_err + table_err
    status = json.loads(out)
    assert status["run"]["workflow_id"] == handle.id and status["run"]["status"] == "AWAITING_APPROVAL"
    drs = status["drs"]["ACTIVATE/servers/servers"]
    assert [(w["name"], w["status"]) for w in drs["waves"]] == [("db", "SUCCEEDED"), ("web", "AWAITING_APPROVAL")]
    assert sorted((s["wave"], s["status"]) for s in drs["servers"].values()) == [("db", "LAUNCHED")] * 2
    assert all(s["recovery_instance_id"] for s in drs["servers"].values())
    assert YAML(typ="safe").load(io.StringIO(yaml_out)) == status  # the same document (the run is held at the gate)
    assert re.search(r"db\s+✔ SUCCEEDED\s+db: 2/2 launched", table), table
    assert f"waiting for approval at {GATE}" in table and f"drctl drill approve {handle.id} --gate {GATE}" in table

    terminal = Terminal()
    await terminal.start("drill", "watch", handle.id, env=env)
    lines = await asyncio.create_subprocess_exec(DRCTL, "drill", "watch", handle.id, env={**os.environ, **env},
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    # The live view of the waiting run: the done wave's servers, the gated wave, who may approve it.
    await terminal.wait_for(r"web\s+⏸ AWAITING_APPROVAL\s+web: awaiting approval")
    await terminal.wait_for(r"db: 2/2 launched")
    await terminal.wait_for(rf"waiting for approval at {re.escape(GATE)}")
    await terminal.wait_for(r"needs 1 approval from any approver")
    await terminal.wait_for(r"approvals so far: 0 of 1 \(none yet\)")
    assert lines.stdout is not None
    before = b""  # the pipe's watcher, too, has seen the run waiting before it is approved
    while f"waiting for approval at {GATE}".encode() not in before:
        before += await asyncio.wait_for(lines.stdout.readline(), 60)

    await send(handle, "approve", control(actor="manager@example.com", gate=GATE))
    code, err = await terminal.close()
    assert code == 0, err + terminal.text[-3000:]
    text = terminal.text
    # The gated wave moved, in the same view: waiting, then every server launched, then the outcome.
    waiting = text.index("web: awaiting approval")
    launched = text.rindex("web: 3/3 launched")
    assert waiting < launched < text.rindex(f"Run {handle.id}: COMPLETED")
    assert re.search(r"web\s+✔ SUCCEEDED\s+web: 3/3 launched", text)
    assert re.search(r"web-00[0-2]\.\S+\s+✔ LAUNCHED\s+→ \S+", text)
    assert "Traceback" not in err

    # In a pipe: one line per change, as `drill start --wait` prints them, then the summary.
    out, err_bytes = await asyncio.wait_for(lines.communicate(), 60)
    assert lines.returncode == 0, err_bytes.decode()
    plain = (before + out).decode()
    assert "\x1b[" not in plain  # no escape sequences in a log
    assert plain.index(f"⏸ waiting for approval at {GATE}") < plain.index("✔ wave web: SUCCEEDED — 3/3 launched")
    assert re.search(r"^\s+wave web\s+SUCCEEDED\s+3/3 launched", plain, re.MULTILINE)
    assert f"Run {handle.id}: COMPLETED" in plain
    assert plain.count(f"waiting for approval at {GATE}") == 1  # append-only: a line per change, not per poll


async def test_watch_exits_non_zero_when_the_run_does_not_complete(worker, world, env):
    app = estate(world, {"db": 1, "web": 1})
    handle = await start_run(worker.client, worker.task_queue, gated_plan("cli-watch-reject", app),
                             mode=Mode.DRILL, options=RunOptions(phases=["ACTIVATE"]))
    await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL, timeout=60)
    terminal, interrupted = Terminal(), Terminal()
    await terminal.start("drill", "watch", handle.id, env=env)
    await interrupted.start("drill", "watch", handle.id, env=env)
    await terminal.wait_for(rf"waiting for approval at {re.escape(GATE)}")
    await interrupted.wait_for(rf"waiting for approval at {re.escape(GATE)}")
    # Ctrl-C stops watching, quietly; the run goes on.
    assert interrupted.process is not None
    interrupted.process.send_signal(signal.SIGINT)
    code, err = await interrupted.close()
    assert (code, err) == (130, f"stopped watching; {handle.id} goes on\n")
    await send(handle, "reject", control(actor="owner@example.com", reason="web tier frozen"))
    code, err = await terminal.close()
    assert code == 1, err
    assert re.search(rf"Run {handle.id}: FAILED", terminal.text)
    assert "rejected by owner@example.com: web tier frozen" in terminal.text
