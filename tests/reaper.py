"""The servers a test session starts are stopped however the session ends.

Fixture finalizers stop them when a test or a fixture's setup fails (pytest tears down whatever was set up), and
conftest turns SIGTERM into KeyboardInterrupt so they also run when the session is told to stop. What no finalizer
survives (SIGKILL, os._exit from a timeout, a crash of the interpreter) is covered by a watchdog: a small process
started with the first server, which holds the read end of a pipe. When the session's process ends, however it
ends, the pipe closes and the watchdog terminates every process it was told about that is still the same process
(same start time, so a recycled PID is left alone).

The Temporal servers are spawned by the SDK's core, which gives no PID: `start_watched` finds them as the
children of this process that appeared while the server started (Linux /proc; elsewhere only the finalizers act).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_watched: list[int] = []


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None once it has exited
    (a zombie has exited too: its parent just has not reaped it yet)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def alive(pid: int) -> bool:
    return start_time(pid) is not None


def children(pid: int | None = None) -> set[int]:
    parent = str(pid or os.getpid())
    found = set()
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            if entry.read_text().rsplit(")", 1)[1].split()[1] == parent:
                found.add(int(entry.parent.name))
        except (OSError, IndexError):
            continue
    return found


@functools.cache
def _watchdog() -> subprocess.Popen[str]:
    # This file run as a script (stdlib only); a session of its own, so a Ctrl-C to the group leaves it be.
    return subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, text=True, start_new_session=True)


def watch(pid: int) -> None:
    """Have the watchdog stop `pid` when this process ends, if it is still running then."""
    started = start_time(pid)
    if started is None:
        return
    stdin = _watchdog().stdin
    assert stdin is not None
    stdin.write(f"{pid} {started}\n")
    stdin.flush()
    _watched.append(pid)


def watched() -> list[int]:
    """Every PID this process has handed to the watchdog (for tests of this module)."""
    return list(_watched)


def stop(pids: set[int], grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)


async def start_watched(start: Awaitable[T]) -> T:
    """Await `start` (which spawns a server), hand the children it spawned to the watchdog, return its result.
    When `start` fails after spawning (a server that never became ready), those children are stopped at once."""
    before = children()
    try:
        result = await start
    except BaseException:
        stop(children() - before)
        raise
    for pid in children() - before:
        watch(pid)
    return result


def _watch_until_closed() -> None:
    """The watchdog: reads "PID START" lines until its stdin closes (the session's process has ended, however),
    then stops those still running as the same process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watched = [line.split() for line in sys.stdin]
    stop({int(pid) for pid, started in watched if start_time(int(pid)) == started})


if __name__ == "__main__":
    _watch_until_closed()
