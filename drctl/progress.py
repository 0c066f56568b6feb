"""Following a run from outside: print each change of phase, layer and resource as it happens, then a summary.

A `drs.recovery` resource runs as a child workflow; while it runs, its own `status` query adds a line per change of
a wave ("wave app: RUNNING — 3/6 launched") and per server that launched or failed, and when it ends, a summary line
per wave. Hooks of a layer or a wave get a line per change, with what they answered once done.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from contracts.lifecycle import HookState, LifecycleState, ResourceState, RunStatus, StepStatus
from drctl.errors import EXIT_FAILED, EXIT_PARTIAL

if TYPE_CHECKING:
    from contracts.drs_recovery import DrsRecoveryState

# Above this many servers in a wave, only the wave's lines and the failed servers are printed.
SERVER_LINES_UP_TO = 30
_WAVE_MARK = {"RUNNING": "▶", "SUCCEEDED": "✔", "PARTIAL": "◐", "FAILED": "✘", "SKIPPED": "·",
              "AWAITING_APPROVAL": "⏸", "PENDING": " "}
_SERVER_SHOWN = ("LAUNCHED", "FAILED", "NOT_RECOVERABLE", "TIMED_OUT")

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

    def update(self, state: LifecycleState, children: dict[str, DrsRecoveryState] | None = None) -> None:
        """Print what changed. `children`: the newest state of DRS child workflows, by `PHASE/layer/resource`."""
        children = children or {}
        # A DRS recovery that just ended: its last waves first, above the lines saying its layer and phase ended.
        for phase in state.phases:
            for layer in phase.layers:
                for r in layer.resources:
                    key = f"{phase.phase.value}/{layer.name}/{r.name}"
                    if key in children and r.status is not StepStatus.RUNNING:
                        self.drs(key, children[key])
        for phase in state.phases:
            self._line(phase.phase.value, phase.status.value, "", lambda: f"{_MARK[phase.status]} {phase.phase.value}"
                       + (f" ({phase.duration_seconds:.1f} s)" if phase.duration_seconds is not None else ""))
            for layer in phase.layers:
                key = f"{phase.phase.value}/{layer.name}"
                self._line(key, layer.status.value, "", lambda: f"    {_MARK[layer.status]} layer {layer.name}")
                self.hooks(key, layer.pre_hooks, " " * 8)
                for r in layer.resources:
                    detail = r.error or r.message
                    child = children.get(f"{key}/{r.name}")
                    self._line(f"{key}/{r.name}", r.status.value, detail, lambda:
                               f"        {_MARK[r.status]} {r.name} [{r.action} @ {r.account}/{r.region}]"
                               + (f": {detail}" if detail else ""))
                    if child is not None and r.status is StepStatus.RUNNING:
                        self.drs(f"{key}/{r.name}", child)
                self.hooks(key, layer.post_hooks, " " * 8)
        gate = state.pending_gate()
        if gate:
            # The approvals so far are the detail: each new one prints a line ("1 of 2 approvals: alice").
            got = f"{len(gate.approvals)} of {gate.required} approvals" + (
                f": {', '.join(a.actor for a in gate.approvals)}" if gate.approvals else "")
            who = f" from {'/'.join(gate.roles)}" if gate.roles else ""
            self._line(f"gate/{gate.id}", "pending", got, lambda:
                       f"  ⏸ waiting for approval at {gate.id}{who} ({got})" if gate.required > 1 or gate.approvals
                       else f"  ⏸ waiting for approval at {gate.id}{who}")
        self._line("run", state.status.value, "", lambda: f"run {state.status.value.lower()}"
                   + (f": {state.error}" if state.error else ""))

    def drs(self, key: str, child: DrsRecoveryState) -> None:
        """The changes of one DRS recovery: per wave, per server (small waves) or failed server, a final summary."""
        indent = " " * 12
        for wave in child.waves:
            records = [child.servers[s] for s in wave.servers if s in child.servers]
            if not records and wave.status.value != "AWAITING_APPROVAL":
                continue  # CLEANUP and REPLICATE work per account, not per wave: the resource's line says it all
            launched = sum(s.status.value == "LAUNCHED" for s in records)
            failed = sum(s.status.failed for s in records)
            status = wave.status.value
            if wave.status.finished:
                progress = wave.message or f"{launched}/{len(records)} launched"
            else:
                progress = f"{launched}/{len(records)} launched" + (f", {failed} failed" if failed else "")
            wave_key = f"{key}/wave/{wave.name}"
            wave_line = f"{indent}{_WAVE_MARK.get(status, ' ')} wave {wave.name}: {status} — {progress}"
            # A wave seen before gets its servers' news first and its new state after; a new one, the other way.
            header_first = self.seen.get(wave_key, ("PENDING", ""))[0] == "PENDING"
            if header_first:
                self._line(wave_key, status, progress, lambda: wave_line)
            self.hooks(wave_key, wave.pre_hooks, indent + "    ")
            few = len(records) <= SERVER_LINES_UP_TO
            for server in records:
                shown = server.status.value in _SERVER_SHOWN and (few or server.status.failed)
                if not shown:
                    continue
                name = server.hostname or server.id
                if server.status.value == "LAUNCHED":
                    text = f"{indent}    ✔ {name} LAUNCHED → {server.recovery_instance_id or '?'}"
                else:
                    text = f"{indent}    ✘ {name} {server.status.value}" + (
                        f": {server.detail}" if server.detail else "")
                self._line(f"{key}/server/{server.id}", server.status.value, "", lambda: text)
            self.hooks(wave_key, wave.post_hooks, indent + "    ")
            if not header_first:
                self._line(wave_key, status, progress, lambda: wave_line)
        if child.ended_at is not None and f"{key}/summary" not in self.seen:
            self.seen[f"{key}/summary"] = ("done", "")
            for line in drs_summary(child):
                self.echo(f"{indent}{line}")

    def hooks(self, key: str, hooks: list[HookState], indent: str) -> None:
        """A line per change of a layer's or wave's hooks; a finished one shows what it answered, clipped."""
        for hook in hooks:
            detail = hook.error or hook.message
            took = f" ({(hook.ended_at - hook.started_at).total_seconds():.1f} s)" \
                if hook.started_at and hook.ended_at else ""
            answer = hook_answer(hook) if hook.status is StepStatus.SUCCEEDED else ""
            policy = " [onFailure continue]" if hook.on_failure == "continue" and hook.status is StepStatus.FAILED \
                else ""
            self._line(f"{key}/{hook.when}-hook/{hook.name}", hook.status.value, detail, lambda:
                       f"{indent}{_MARK[hook.status]} {hook.when}-hook {hook.name} [{hook.kind} {hook.target} @ "
                       f"{hook.account}/{hook.region}]{took}{policy}" + (f": {detail}" if detail else "")
                       + (f" → {answer}" if answer else ""))

    def _line(self, key: str, status: str, detail: str, render: Callable[[], str]) -> None:
        # `render` runs here or not at all, before the caller's loop moves on: its closures see this iteration's values.
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
                 interval: float = 0.5, client: Client | None = None) -> LifecycleState:
    """Poll the status query until the run ends; return the final state. A running DRS recovery's child workflow is
    queried too (through `client`, by default the handle's), for its waves and servers."""
    printer = printer or ProgressPrinter()
    client = client or handle._client
    while True:
        try:
            state = await handle.query("status", result_type=LifecycleState)
        except RPCError as exc:  # a worker restart or a not-yet-started task: keep following
            click.echo(f"  (status not available yet: {exc.message})", err=True)
            await asyncio.sleep(interval * 4)
            continue
        printer.update(state, await _drs_children(client, state, printer))
        if state.status.finished:
            return state
        await asyncio.sleep(interval)


async def _drs_children(client: Client, state: LifecycleState, printer: ProgressPrinter) -> dict[str, Any]:
    """The state of each DRS child workflow worth asking: running ones, and those that ended since the last look
    (once, for their final waves and summary)."""
    return await drs_states(client, state, lambda key, r: r.status is StepStatus.RUNNING
                            or f"{key}/summary" not in printer.seen)


async def drs_states(client: Client, state: LifecycleState,
                     wanted: Callable[[str, ResourceState], bool] = lambda key, r: True,
                     ) -> dict[str, DrsRecoveryState]:
    """The `status` of the run's DRS child workflows, by `PHASE/layer/resource`: those that started and that
    `wanted` asks for. One that does not answer (not started yet, its worker restarting) is left out."""
    from contracts.drs_recovery import DrsRecoveryState

    children: dict[str, DrsRecoveryState] = {}
    for phase in state.phases:
        for layer in phase.layers:
            for r in layer.resources:
                child_id = (r.outputs or {}).get("childWorkflowId")
                key = f"{phase.phase.value}/{layer.name}/{r.name}"
                if not child_id or r.status in (StepStatus.PENDING, StepStatus.SKIPPED) or not wanted(key, r):
                    continue
                try:
                    children[key] = await client.get_workflow_handle(child_id).query(
                        "status", result_type=DrsRecoveryState)
                except RPCError:
                    pass  # the next poll asks again
    return children


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


def drs_summary(child: DrsRecoveryState) -> list[str]:
    """One line per wave of a finished DRS launch (ACTIVATE) that had servers: status, launched/total, failed,
    duration. The other phases end all their waves at once, with the wave lines saying all there is."""
    lines: list[str] = []
    if child.phase.value != "ACTIVATE":
        return lines
    for wave in child.waves:
        records = [child.servers[s] for s in wave.servers if s in child.servers]
        if not records:
            continue
        launched = sum(s.status.value == "LAUNCHED" for s in records)
        failed = sum(s.status.failed for s in records)
        took = (f"{(wave.ended_at - wave.started_at).total_seconds():5.1f} s" if wave.started_at and wave.ended_at
                else "    -  ")
        counts = f"{launched}/{len(records)} launched" + (f", {failed} failed" if failed else "")
        lines.append(f"wave {wave.name:<12} {wave.status.value:<10} {counts:<24} {took}")
    return lines


def hook_answer(hook: HookState, limit: int = 120) -> str:
    """The part of a hook's outputs an operator reads: the automation's Outputs or the function's payload."""
    answer = hook.outputs.get("outputs", hook.outputs.get("payload"))
    if answer in (None, {}, ""):
        return ""
    text = json.dumps(answer, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def exit_code_for(state: LifecycleState) -> int:
    """0 COMPLETED, 3 PARTIAL (EXIT_PARTIAL), 1 any other end (FAILED, CANCELLED, REJECTED)."""
    return {RunStatus.COMPLETED: 0, RunStatus.PARTIAL: EXIT_PARTIAL}.get(state.status, EXIT_FAILED)
