"""`drctl sandbox`: the local AWS for demos and trials."""

from __future__ import annotations

import os
import signal
import sys
import threading

import click

from drctl.errors import EXIT_FAILED, fail


@click.group()
def sandbox() -> None:
    """The local AWS (moto plus emulators) for demos, tests and trials."""


@sandbox.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Keep loopback unless inside a container.")
@click.option("--port", default=4566, show_default=True, type=click.IntRange(0, 65535),
              help="Port to bind (0: any free port).")
@click.option("--scenario", default="default", show_default=True,
              help="Seed this scenario (a name from sandbox/scenarios or a YAML file); 'none' for an empty sandbox.")
@click.option("--time-scale", default=1.0, show_default=True, type=click.FloatRange(min=0.01, max=10000),
              help="Simulated DRS durations (snapshot, conversion, launch) are divided by this.")
@click.option("--seed", default=None, type=int, help="Seed for ids, jitter and injected faults (reproducible runs).")
def serve(host: str, port: int, scenario: str, time_scale: float, seed: int | None) -> None:
    """Serve the sandbox on one URL; point AWS_ENDPOINT_URL at it."""
    from sandbox import scenario as scenarios
    from sandbox.moto_fixes import UnsupportedMoto

    try:
        from sandbox.server import SandboxServer  # applies the fixes to moto: refused when moto changed under them
    except UnsupportedMoto as exc:
        click.echo(str(exc), err=True)  # the line says it all (moto's version, the patch); no traceback
        raise SystemExit(EXIT_FAILED) from None
    if scenario != "none" and scenario not in scenarios.available() and not scenario.endswith((".yaml", ".yml")):
        fail(f"no scenario {scenario!r}; known: {', '.join(scenarios.available())} (or a YAML file, or 'none')")
    try:
        server = SandboxServer(host=host, port=port, time_scale=time_scale, seed=seed)
    except OSError as exc:
        fail(f"cannot bind {host}:{port}: {exc.strerror or exc}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    if scenario != "none":
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        try:
            server.app.admin.seed(scenarios.load(scenario))
        except (ValueError, OSError) as exc:
            server.stop()
            fail(f"cannot seed scenario {scenario!r}: {exc}")
    # One parseable line on stdout: the demo and scripts wait for it.
    click.echo(f"sandbox ready at {server.url}", file=sys.stdout)
    sys.stdout.flush()
    stop.wait()
    server.stop()


@sandbox.command("scenarios")
def list_scenarios() -> None:
    """List the built-in scenarios."""
    from sandbox import scenario as scenarios

    for name in scenarios.available():
        click.echo(f"{name}: {scenarios.load(name).description}")
