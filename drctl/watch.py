"""Following a run until it ends, however it was started (drctl, `temporal workflow start`, an SDK, Step Functions).

On a terminal: a live view (Rich) of phases, layers, resources, DRS waves and servers and the pending gate, redrawn
at each poll. Otherwise (a pipe, a CI log): progress.py's append-only lines, one per change, as `drill start --wait`
has always printed them. Either way the outcome closes it; the exit code is 0 only for COMPLETED (3 for PARTIAL).
"""

from __future__ import annotations

import asyncio
from typing import Any

import click
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from contracts.lifecycle import LifecycleState
from drctl.errors import EXIT_PARTIAL
from drctl.progress import ProgressPrinter, exit_code_for, follow, summary
from drctl.run_view import RunSnapshot, render, snapshot

POLL_SECONDS = 0.5


async def watch_run(client: Client, handle: WorkflowHandle[Any, Any], ui_url: str | None = None,
                    live: bool | None = None) -> int:
    """Follow the run to its end; the exit code. `live`: the Rich view (default: when stdout is a terminal)."""
    from drctl.output import console as stdout

    console = stdout()
    if not (console.is_terminal if live is None else live):
        state = await follow(handle, ProgressPrinter(), interval=POLL_SECONDS, client=client)
        for line in summary(state):
            click.echo(line)
        return exit_code_for(state)
    state = await _live(console, client, handle, ui_url)
    took = f" in {(state.ended_at - state.started_at).total_seconds():.1f} s" if state.ended_at else ""
    style = {0: "bold green", EXIT_PARTIAL: "bold yellow"}.get(exit_code_for(state), "bold red")
    console.print(f"Run {state.workflow_id}: [{style}]{state.status.value}[/]{took}", highlight=False)
    return exit_code_for(state)


async def _live(console: Any, client: Client, handle: WorkflowHandle[Any, Any], ui_url: str | None,
                ) -> LifecycleState:
    from rich.live import Live
    from rich.text import Text

    snap: RunSnapshot | None = None
    # Redrawn when a poll answers, not on a timer: a frame never shows a state older than the last answer, and
    # durations move on at the poll's pace. A frame taller than the terminal is cut (a redraw cannot reach lines
    # that scrolled away); the last frame stays on screen whole, above the outcome line.
    with Live(Text(f"attaching to {handle.id} …"), console=console, auto_refresh=False) as view:
        while True:
            try:
                snap = await snapshot(client, handle, snap)
            except RPCError as exc:  # a worker restart or a not-yet-started task: keep following
                if snap is not None:
                    snap.note = f"(status not available: {exc.message}; retrying)"
                    view.update(render(snap, ui_url), refresh=True)
                await asyncio.sleep(POLL_SECONDS * 4)
                continue
            view.update(render(snap, ui_url), refresh=True)
            if snap.state.status.finished:
                return snap.state
            await asyncio.sleep(POLL_SECONDS)
