"""Following a run from outside: print each change of phase, layer and resource as it happens, then a summary."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import click
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from workflows.models import LifecycleState, RunStatus, StepStatus

_MARK = {
    StepStatus.RUNNING: "▶", StepStatus.SUCCEEDED: "✔", StepStatus.FAILED: "✘", StepStatus.PARTIAL: "◐",
    StepStatus.CANCELLED: "■", StepStatus.SKIPPED: "·", StepStatus.PENDING: " ",
}


def ui_link(ui_base: str, namespace: str, workflow_id: str) -> str:
    return f"{ui_base.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}"


class ProgressPrinter:
    """Remembers what it last saw, so only changes are printed."""

    def __init__(self, echo: Callable[[str], Any] = click.echo) -> None:
        self.echo = echo
        self.seen: dict[str, tuple[str, str]] = {}

    def update(self, state: LifecycleState) -> None:
        for phase in state.phases:
            self._line(phase.phase.value, phase.status.value, "", lambda p=phase: f"{_MARK[p.status]} {p.phase.value}"
                       + (f" ({p.duration_seconds:.1f} s)" if p.duration_seconds is not None else ""))
            for layer in phase.layers:
                key = f"{phase.phase.value}/{layer.name}"
                self._line(key, layer.status.value, "", lambda lay=layer: f"    {_MARK[lay.status]} layer {lay.name}")
                for r in layer.resources:
                    detail = r.error or r.message
                    self._line(f"{key}/{r.name}", r.status.value, detail, lambda r=r, d=detail:
                               f"        {_MARK[r.status]} {r.name} [{r.action} @ {r.account}/{r.region}]"
                               + (f": {d}" if d else ""))
        gate = state.pending_gate()
        if gate:
            self._line(f"gate/{gate.id}", "pending", "", lambda g=gate: f"  ⏸ waiting for approval at {g.id}")
        self._line("run", state.status.value, "", lambda: f"run {state.status.value.lower()}"
                   + (f": {state.error}" if state.error else ""))

    def _line(self, key: str, status: str, detail: str, render: Callable[[], str]) -> None:
        if status in ("PENDING", "RUNNING") and key == "run" and key not in self.seen:
            self.seen[key] = (status, detail)  # "run running" at the start says nothing
            return
        if status == "PENDING" and key not in self.seen:
            self.seen[key] = (status, detail)
            return
        if self.seen.get(key) != (status, detail):
            self.seen[key] = (status, detail)
            self.echo(render())


async def follow(handle: WorkflowHandle[Any, Any], printer: ProgressPrinter | None = None,
                 interval: float = 0.5) -> LifecycleState:
    """Poll the status query until the run ends; return the final state."""
    printer = printer or ProgressPrinter()
    while True:
        try:
            state = await handle.query("status", result_type=LifecycleState)
        except RPCError as exc:  # a worker restart or a not-yet-started task: keep following
            click.echo(f"  (status not available yet: {exc.message})", err=True)
            await asyncio.sleep(interval * 4)
            continue
        printer.update(state)
        if state.status.finished:
            return state
        await asyncio.sleep(interval)


def summary(state: LifecycleState) -> list[str]:
    lines = [f"Run {state.workflow_id}: {state.status.value}"]
    if state.error:
        lines.append(f"  {state.error}")
    for phase in state.phases:
        took = f"{phase.duration_seconds:6.1f} s" if phase.duration_seconds is not None else "     -  "
        counts: dict[str, int] = {}
        for layer in phase.layers:
            for r in layer.resources:
                counts[r.status.value] = counts.get(r.status.value, 0) + 1
        detail = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "nothing to do"
        lines.append(f"  {phase.phase.value:<12} {phase.status.value:<10} {took}   {detail}")
    if state.ended_at:
        lines.append(f"  total        {(state.ended_at - state.started_at).total_seconds():.1f} s")
    return lines


def exit_code_for(state: LifecycleState) -> int:
    return 0 if state.status is RunStatus.COMPLETED else 1
