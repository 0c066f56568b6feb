"""A run as `drill status` and `drill watch` show it: its state with its DRS recoveries' waves and servers, as a
document (`-o json|yaml`) or as Rich tables (`-o table`, and each frame of the live view)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowHandle

from contracts.drs_recovery import DrsRecoveryState, WaveRecord
from contracts.lifecycle import Gate, LifecycleState, RunStatus, StepStatus
from drctl.progress import SERVER_LINES_UP_TO, drs_states

_STYLE = {"RUNNING": "bold cyan", "SUCCEEDED": "green", "COMPLETED": "bold green", "PARTIAL": "yellow",
          "FAILED": "bold red", "REJECTED": "bold red", "CANCELLED": "magenta", "SKIPPED": "dim", "PENDING": "dim",
          "AWAITING_APPROVAL": "bold yellow", "PAUSED": "yellow", "LAUNCHED": "green", "LAUNCHING": "cyan",
          "NOT_RECOVERABLE": "red", "TIMED_OUT": "red"}
_MARK = {"RUNNING": "▶", "SUCCEEDED": "✔", "PARTIAL": "◐", "FAILED": "✘", "CANCELLED": "■", "SKIPPED": "·",
         "AWAITING_APPROVAL": "⏸", "PENDING": " ", "LAUNCHED": "✔", "LAUNCHING": "▶", "NOT_RECOVERABLE": "✘",
         "TIMED_OUT": "✘"}


@dataclass
class RunSnapshot:
    state: LifecycleState
    drs: dict[str, DrsRecoveryState] = field(default_factory=dict)  # by PHASE/layer/resource
    note: str = ""  # why this frame may be stale (the status query did not answer)


async def snapshot(client: Client, handle: WorkflowHandle[Any, Any], previous: RunSnapshot | None = None,
                   ) -> RunSnapshot:
    """The run's state and its DRS recoveries'; those that had ended by `previous` are not asked again."""
    state = await handle.query("status", result_type=LifecycleState)
    ended = {key: child for key, child in (previous.drs if previous else {}).items() if child.ended_at is not None}
    drs = await drs_states(client, state, lambda key, r: key not in ended)
    # In the run's order of phases, layers and resources.
    order = [f"{p.phase.value}/{layer.name}/{r.name}"
             for p in state.phases for layer in p.layers for r in layer.resources]
    return RunSnapshot(state, {key: drs.get(key) or ended[key] for key in order if key in drs or key in ended})


def document(snap: RunSnapshot) -> dict[str, Any]:
    """`drill status -o json|yaml`: {"run": the `status` query's state (its audit trail is `drctl audit`'s),
    "drs": {"PHASE/layer/resource": that DRS recovery's `status`, with its waves and servers}}."""
    return {"run": snap.state.model_dump(mode="json", exclude={"audit"}),
            "drs": {key: child.model_dump(mode="json") for key, child in snap.drs.items()}}


def render(snap: RunSnapshot, ui_url: str | None = None) -> RenderableType:
    """The whole run at a glance: a header, the steps, each DRS recovery's waves and servers, the pending gate."""
    state = snap.state
    # What asks for the operator comes first: a view taller than the terminal is cut at the bottom while live.
    parts: list[RenderableType] = [_header(state, ui_url)]
    if snap.note:
        parts.append(Text(snap.note, style="dim"))
    gate = state.pending_gate()
    if gate is not None:
        parts.append(_gate(state, gate))
    if state.error and state.status is RunStatus.PARTIAL:  # the outcome, naming what failed within policy
        parts.append(Text(state.error, style="yellow"))
    elif state.error:
        parts.append(Text(f"error: {state.error}", style="red"))
    if state.last_denial and not state.status.finished:
        # A denied signal has no answer: this is where its sender sees it (the whole trail needs view-audit).
        parts.append(Text(f"last denied request: {state.last_denial}", style="yellow"))
    parts.append(_steps(state))
    for key, child in snap.drs.items():
        parts.append(_waves(key, child))
    return Group(*parts)


def wave_progress(wave: WaveRecord, child: DrsRecoveryState) -> tuple[int, int, int, str]:
    """launched, failed, servers, and the line an operator reads: "web: 5/8 launched, 1 failed"."""
    records = [child.servers[s] for s in wave.servers if s in child.servers]
    launched = sum(s.status.value == "LAUNCHED" for s in records)
    failed = sum(s.status.failed for s in records)
    if not records:
        # CLEANUP and REPLICATE work per account, not per server: their waves never list servers.
        what = {"PENDING": "not started", "AWAITING_APPROVAL": "awaiting approval"}.get(wave.status.value) or (
            ("resolving servers" if wave.status.value == "RUNNING" else "no servers")
            if child.phase.value == "ACTIVATE" else "per account")
        text = f"{wave.name}: {what}"
    else:
        text = f"{wave.name}: {launched}/{len(records)} launched" + (f", {failed} failed" if failed else "")
    return launched, failed, len(records), text


def _status(value: str) -> Text:
    return Text(f"{_MARK.get(value, ' ')} {value}", style=_STYLE.get(value, ""))


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    return f"{((end or datetime.now(UTC)) - start).total_seconds():.1f} s"


def _header(state: LifecycleState, ui_url: str | None) -> RenderableType:
    title = Text.assemble(("Run ", "bold"), (state.workflow_id, "bold"), "  ", _status(state.status.value))
    if state.paused and state.status is RunStatus.RUNNING:
        title.append("  (pausing at the next boundary)", style="yellow")
    grid = Table.grid(padding=(0, 2))
    grid.add_row("plan", state.plan_name, "mode", state.mode.value, "initiator", state.initiator)
    grid.add_row("phase", state.current_phase.value if state.current_phase else "-", "started",
                 f"{state.started_at:%Y-%m-%d %H:%M:%S}Z", "duration", _took(state.started_at, state.ended_at))
    parts: list[RenderableType] = [title, grid]
    if state.plan_hash:  # what an approver compares with the hash of the plan they reviewed (`drctl plan validate`)
        parts.append(Text(f"plan hash {state.plan_hash}"))
    if ui_url:
        parts.append(Text(ui_url, style="dim"))
    return Group(*parts)


def _steps(state: LifecycleState) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("step", "status", "action @ account/region", "time", "detail"):
        table.add_column(column, overflow="fold")
    for phase in state.phases:
        table.add_row(Text(phase.phase.value, style="bold"), _status(phase.status.value), "",
                      _took(phase.started_at, phase.ended_at), "")
        for layer in phase.layers:
            table.add_row(f"  layer {layer.name}", _status(layer.status.value), "",
                          _took(layer.started_at, layer.ended_at), f"skipped by {layer.skipped_by}"
                          if layer.skipped_by else "")
            for hook in [*layer.pre_hooks, *layer.post_hooks]:
                table.add_row(f"    {hook.when}-hook {hook.name}", _status(hook.status.value),
                              f"{hook.kind} {hook.target} @ {hook.account}/{hook.region}",
                              _took(hook.started_at, hook.ended_at), hook.error or hook.message)
            for r in layer.resources:
                table.add_row(f"    {r.name}", _status(r.status.value), f"{r.action} @ {r.account}/{r.region}",
                              _took(r.started_at, r.ended_at), r.error or r.message)
    return table


def _waves(key: str, child: DrsRecoveryState) -> Table:
    table = Table(title=f"DRS recovery {key}: {child.status.value}", title_justify="left",
                  box=None, pad_edge=False, header_style="bold")
    for column in ("wave", "status", "progress", "", "time", "detail"):
        table.add_column(column, overflow="fold")
    for wave in child.waves:
        launched, failed, total, text = wave_progress(wave, child)
        bar = ProgressBar(total=max(total, 1), completed=launched, width=20) if total else ""
        table.add_row(wave.name, _status(wave.status.value), text, bar, _took(wave.started_at, wave.ended_at),
                      wave.message)
        records = [child.servers[s] for s in wave.servers if s in child.servers]
        few = len(records) <= SERVER_LINES_UP_TO
        # Large waves show only their failed servers: a thousand rows would hide what matters.
        for server in records if few else [s for s in records if s.status.failed]:
            name = server.hostname or server.id
            target = f"→ {server.recovery_instance_id}" if server.recovery_instance_id else ""
            table.add_row(f"  {name}", _status(server.status.value), target, "", _took(server.started_at,
                          server.ended_at) if server.started_at else "", server.detail or "")
    return table


def _gate(state: LifecycleState, gate: Gate) -> Panel:
    who = f"roles {', '.join(gate.roles)}" if gate.roles else "any approver"
    approvals = ", ".join(a.actor for a in gate.approvals) or "none yet"
    lines = [f"needs {gate.required} approval{'s' if gate.required > 1 else ''} from {who}",
             f"approvals so far: {len(gate.approvals)} of {gate.required} ({approvals})"]
    if gate.timeout_at:
        lines.append(f"times out at {gate.timeout_at:%Y-%m-%d %H:%M:%S}Z ({gate.on_timeout})")
    lines.append(f"drctl drill approve {state.workflow_id} --gate {gate.id}")
    return Panel("\n".join(lines), title=f"⏸ waiting for approval at {gate.id}", title_align="left",
                 border_style="yellow", expand=False)
