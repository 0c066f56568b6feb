"""The demo's servers, started without losing a race for their ports.

A port that was free when we looked can be taken before the child binds it (another Temporal starting on 7233, any
process picking an ephemeral port). So: the sandbox binds port 0 itself and reports the port it got, which cannot
race; the Temporal dev server needs its ports named up front, so when it exits because one was taken meanwhile, it
is started again on newly chosen ports, a bounded number of times. Ports the user asked for are never swapped for
others: a taken one is an error naming the option.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drctl.codec_cmd import READY as CODEC_READY
from drctl.processes import (
    ChildExited,
    ManagedProcess,
    free_port,
    port_is_free,
    temporal_dev_server_argv,
    venv_tool,
    wait_for_line,
    wait_for_port,
)

TEMPORAL_PORT, UI_PORT = 7233, 8233  # the dev server's usual ones, used when free: the links people know
START_ATTEMPTS = 5  # each attempt picks new ports; five lost races in a row means something else is wrong
SANDBOX_READY = "sandbox ready at "
SANDBOX_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}

Echo = Callable[[str], None]


class PortInUse(RuntimeError):
    """A port the user asked for by option is taken: one line naming the option(s), never a retry elsewhere."""


@dataclass(frozen=True)
class RequestedPorts:
    """Ports fixed by options; None lets the demo choose (the usual port when free, else any free one)."""

    temporal: int | None = None
    ui: int | None = None
    sandbox: int | None = None

    def options(self) -> dict[int, str]:
        named = {"--temporal-port": self.temporal, "--ui-port": self.ui, "--sandbox-port": self.sandbox}
        return {port: option for option, port in named.items() if port is not None}

    def check(self) -> None:
        """Before starting anything: every requested port distinct and free, or one line saying which is not."""
        ports = [p for p in (self.temporal, self.ui, self.sandbox) if p is not None]
        if len(set(ports)) != len(ports):
            raise PortInUse("--temporal-port, --ui-port and --sandbox-port must differ")
        taken = [f"{option} {port}" for port, option in self.options().items() if not port_is_free(port)]
        if taken:
            raise PortInUse(f"{', '.join(taken)}: already in use on 127.0.0.1 (choose another, or leave the option "
                            "out and the demo picks a free port)")


def _choose(usual: int | None, requested: int | None, chosen: set[int]) -> tuple[int, str]:
    """A port for one listener (`usual` None: any free one), and a note when the usual one could not be had."""
    if requested is not None:
        port, note = requested, ""
    elif usual is not None and usual not in chosen and port_is_free(usual):
        port, note = usual, ""
    else:
        port = free_port()
        while port in chosen:  # the kernel may hand out the same ephemeral port twice in a row
            port = free_port()
        note = f" ({usual} is in use)" if usual is not None else ""
    chosen.add(port)
    return port, note


def start_temporal(db_file: Path, log: Path, requested: RequestedPorts, children: list[ManagedProcess],
                   echo: Echo, codec: Callable[[int], str] | None = None) -> tuple[ManagedProcess, int, int]:
    """The dev server, listening on its gRPC and UI ports; returns it with those ports. Each started process is in
    `children` while it lives, so the caller stops it whatever happens (Ctrl-C included). `codec(ui_port)`, when
    given, starts the codec server for a UI on that port and returns its URL, which the UI then decodes through."""
    for attempt in range(1, START_ATTEMPTS + 1):
        chosen: set[int] = set(requested.options())
        port, port_note = _choose(TEMPORAL_PORT, requested.temporal, chosen)
        ui_port, ui_note = _choose(UI_PORT, requested.ui, chosen)
        http_port, _ = _choose(None, None, chosen)  # HTTP API and metrics: nobody needs to know these two
        metrics_port, _ = _choose(None, None, chosen)
        codec_url = codec(ui_port) if codec else None
        echo(f"• Temporal dev server on 127.0.0.1:{port}{port_note}, Web UI http://127.0.0.1:{ui_port}{ui_note}: "
             "starting …")
        started = time.monotonic()
        process = ManagedProcess("temporal", temporal_dev_server_argv(db_file, port, ui_port, http_port,
                                                                      metrics_port, codec_url), log)
        children.append(process)
        try:
            wait_for_port(port, 30, process)
            wait_for_port(ui_port, 30, process)
        except ChildExited as exc:
            process.stop()
            children.remove(process)
            lost = exc.taken_port
            if lost is not None and lost in requested.options():
                raise PortInUse(f"{requested.options()[lost]} {lost}: taken while the dev server started ({exc})") \
                    from None
            if not exc.address_in_use or attempt == START_ATTEMPTS:
                raise
            echo(f"  port {lost or '?'} was taken before the dev server could bind it; "
                 f"choosing ports again (attempt {attempt + 1} of {START_ATTEMPTS})")
            continue
        echo(f"  ready in {time.monotonic() - started:.1f} s (SQLite: {db_file})")
        return process, port, ui_port
    raise AssertionError("unreachable: the last attempt returns or raises")


def start_sandbox(scenario: str, log: Path, requested: RequestedPorts, children: list[ManagedProcess],
                  echo: Echo) -> tuple[ManagedProcess, str]:
    """The sandbox seeded with `scenario`; returns it with its URL, read from its readiness line. Without
    --sandbox-port it binds port 0, so no other process can take its port between a check and the bind."""
    echo(f"• Sandbox (local AWS), scenario '{scenario}': starting and seeding the scenario …")
    started = time.monotonic()
    process = ManagedProcess("sandbox", [venv_tool("drctl"), "sandbox", "serve", "--port", str(requested.sandbox or 0),
                                         "--scenario", scenario], log, env=SANDBOX_CREDENTIALS)
    children.append(process)
    try:
        line = wait_for_line(process, SANDBOX_READY, 120)
    except ChildExited as exc:
        if requested.sandbox is not None and exc.address_in_use:
            raise PortInUse(f"--sandbox-port {requested.sandbox}: taken while the sandbox started ({exc})") from None
        raise
    url = line.split(SANDBOX_READY, 1)[1].strip()
    echo(f"  sandbox on {url.removeprefix('http://')}, ready in {time.monotonic() - started:.1f} s")
    return process, url


class CodecServerForUi:
    """For start_temporal: called with the UI's port, runs `drctl codec-server` on a port of its own choosing (port
    0: no race) for that dev UI, which has no login and so sends no token: its origin is let through without one, on
    loopback only. Called again when the dev server has to move to other ports, it replaces the previous one."""

    def __init__(self, keys_file: Path, trust_file: Path, log: Path, children: list[ManagedProcess],
                 echo: Echo) -> None:
        self.keys_file, self.trust_file, self.log, self.children, self.echo = keys_file, trust_file, log, children, echo
        self.process: ManagedProcess | None = None
        self.url = ""

    def __call__(self, ui_port: int) -> str:
        if self.process is not None:
            self.process.stop()
            self.children.remove(self.process)
        argv = [venv_tool("drctl"), "codec-server", "--port", "0", "--keys-file", str(self.keys_file),
                "--trust-file", str(self.trust_file)]
        for origin in (f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"):
            argv += ["--allow-unauthenticated-origin", origin]
        self.process = ManagedProcess("codec-server", argv, self.log)
        self.children.append(self.process)
        self.url = wait_for_line(self.process, CODEC_READY, 60).split(CODEC_READY, 1)[1].strip()
        self.echo(f"• Codec server at {self.url}: the Web UI decodes sealed payloads through it")
        return self.url
