"""A test session leaves no server behind, however it ends: a fixture's setup failing after the Temporal server
started, the session told to stop (SIGTERM), or the session's process killed outright (SIGKILL: the reaper's
watchdog). Each case runs a real session or process in a subprocess and checks the servers' PIDs afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import reaper

ROOT = Path(__file__).resolve().parent.parent

# A session of its own that uses this suite's fixtures (tests.conftest as a plugin): it starts the dev server,
# writes the PIDs of what it started, then fails in setup or waits to be stopped.
PROBE_CONFTEST = 'pytest_plugins = ["tests.conftest"]\n'
PROBE_TEST = '''
import asyncio, os
from pathlib import Path
import pytest
from tests import reaper

@pytest.fixture(scope="session")
async def started(temporal_env):
    Path(os.environ["PROBE_PIDS"]).write_text(" ".join(map(str, reaper.watched())))
    if os.environ["PROBE_MODE"] == "fail":
        raise RuntimeError("setup fails after the server started")
    await asyncio.sleep(600)

async def test_probe(started):
    pass
'''


def _gone(pids: list[int], within: float) -> list[int]:
    """The PIDs still running after up to `within` seconds."""
    deadline = time.monotonic() + within
    while (left := [p for p in pids if reaper.alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _probe_session(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "conftest.py").write_text(PROBE_CONFTEST)
    (tmp_path / "test_probe.py").write_text(PROBE_TEST)
    pids = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROBE_PIDS": str(pids), "PROBE_MODE": mode}
    options = ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=session",
               "-o", "asyncio_default_test_loop_scope=session"]
    session = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                                *options, "--rootdir", str(tmp_path), str(tmp_path)],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return session, pids


def _wait_for(pids: Path, session: subprocess.Popen[str]) -> list[int]:
    deadline = time.monotonic() + 120
    while not (pids.exists() and pids.read_text()) and session.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids.exists(), session.communicate()[0] if session.poll() is not None else "no server started"
    started = [int(p) for p in pids.read_text().split()]
    assert started and all(reaper.alive(p) for p in started)
    return started


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the servers' PIDs through /proc")
def test_a_session_whose_setup_fails_after_the_server_started_stops_it(tmp_path: Path):
    session, pids = _probe_session(tmp_path, "fail")
    output = session.communicate(timeout=180)[0]
    assert session.returncode == 1 and "setup fails after the server started" in output, output
    started = [int(p) for p in pids.read_text().split()]
    assert started and not _gone(started, within=10), output


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the servers' PIDs through /proc")
def test_a_session_stopped_with_sigterm_stops_its_server(tmp_path: Path):
    session, pids = _probe_session(tmp_path, "wait")
    try:
        started = _wait_for(pids, session)
        session.send_signal(signal.SIGTERM)
        output = session.communicate(timeout=60)[0]
    finally:
        if session.poll() is None:
            session.kill()
    assert session.returncode == pytest.ExitCode.INTERRUPTED, output
    assert not _gone(started, within=10), output


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the servers' PIDs through /proc")
def test_a_process_killed_outright_leaves_no_server(tmp_path: Path):
    """SIGKILL runs no finalizer: the watchdog, seeing the pipe close, stops the server."""
    session, pids = _probe_session(tmp_path, "wait")
    try:
        started = _wait_for(pids, session)
        session.kill()
        session.wait(timeout=30)
    finally:
        if session.poll() is None:
            session.kill()
    assert not _gone(started, within=15)
