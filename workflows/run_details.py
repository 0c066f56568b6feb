"""What the Temporal UI shows of a run, for someone who never heard of drctl: a summary per activity and timer, and the
run's current details (phase, the layer at work, what each of its resources is doing, a pending gate with who may
decide it). Pure functions of the run's state: the workflows call them and hand the text to the SDK.

Temporal renders current details as markdown; summaries are one line. Neither is in the workflow's commands'
identity, so changing their wording never breaks the replay of a running drill.
"""

from __future__ import annotations

from contracts.activities import ResourceCall
from contracts.drs_recovery import DrsRecoveryState, ServerStatus, WaveStatus
from contracts.lifecycle import Gate, LayerState, LifecycleState, PhaseState, RunStatus, StepStatus

# A run page is read at a glance: the resources of the layer at work, but not hundreds of lines of them.
_MAX_LINES = 12


def step_summary(call: ResourceCall, activity_id: str) -> str:
    """`ACTIVATE / data / orders-rds: rds.read_replica in 111122223333 us-west-2` for the step `activity_id`."""
    where = " / ".join(activity_id.split("/"))
    return f"{where}: {call.resource.action} in {call.account.id} {call.region}"


def gate_line(gate: Gate) -> str:
    who = f"from {', '.join(gate.roles)}" if gate.roles else "from any approver"
    got = ", ".join(a.actor for a in gate.approvals)
    so_far = f"{len(gate.approvals)} of {gate.required}" + (f" ({got})" if got else "")
    deadline = f"; times out at {gate.timeout_at:%Y-%m-%d %H:%M} UTC ({gate.on_timeout})" if gate.timeout_at else ""
    return (f"Waiting for approval of `{gate.id}`: {gate.required} approval(s) {who}; {so_far} so far{deadline}. "
            f"Approve with the `approve` update or signal (`drctl drill approve`).")


def lifecycle_details(state: LifecycleState, outcome: str = "") -> str:
    """The run page's current details; `outcome` is the result's message once the run has ended."""
    if state.status.finished:
        # The outcome first, in bold: a PARTIAL run must not read like a COMPLETED one at a glance.
        lines = [f"**{state.mode.value} of {state.plan_name}** by {state.initiator}: **{state.status.value}**"
                 + (" (some steps failed within the plan's policy)" if state.status is RunStatus.PARTIAL else "")
                 + f", {_phase_text(state)}", outcome]
        return "\n\n".join(lines)
    lines = [f"**{state.mode.value} of {state.plan_name}** by {state.initiator}: "
             f"{_phase_text(state)}, {state.status.value}"]
    if (gate := state.pending_gate()) is not None:
        lines.append(gate_line(gate))
    if state.paused:
        lines.append("Paused: running operations finish, nothing new starts until `resume`.")
    if state.cancel_requested:
        lines.append("Cancelling: nothing new starts.")
    phase = next((p for p in state.phases if p.phase == state.current_phase), None)
    layer = _layer_at_work(phase) if phase else None
    if layer is not None:
        lines.append(_layer_text(layer))
    return "\n\n".join(lines)


def _phase_text(state: LifecycleState) -> str:
    done = [p.phase.value for p in state.phases if p.status in (StepStatus.SUCCEEDED, StepStatus.PARTIAL)]
    if state.status.finished:
        return f"phases done: {', '.join(done) or 'none'}"
    current = state.current_phase.value if state.current_phase else "not started"
    return f"phase {current}" + (f" (done: {', '.join(done)})" if done else "")


def _layer_at_work(phase: PhaseState) -> LayerState | None:
    running = [layer for layer in phase.layers if layer.status is StepStatus.RUNNING]
    return running[0] if running else None


def _layer_text(layer: LayerState) -> str:
    finished = sum(r.status not in (StepStatus.PENDING, StepStatus.RUNNING) for r in layer.resources)
    lines = [f"Layer **{layer.name}**: {finished}/{len(layer.resources)} resources finished"]
    for resource in layer.resources[:_MAX_LINES]:
        text = resource.error or resource.message
        lines.append(f"- {resource.name} ({resource.action}): {resource.status.value}" + (f": {text}" if text else ""))
    if len(layer.resources) > _MAX_LINES:
        lines.append(f"- … and {len(layer.resources) - _MAX_LINES} more")
    return "\n".join(lines)


def drs_details(state: DrsRecoveryState) -> str:
    """`web: 37/48 launched` per wave, the waves at work first."""
    lines = [f"**DRS {state.phase.value}** of {state.resource} ({state.mode.value}): {state.status.value}"
             + (f": {state.message}" if state.message else "")]
    order = {WaveStatus.RUNNING: 0, WaveStatus.PENDING: 1}
    for wave in sorted(state.waves, key=lambda w: order.get(w.status, 2))[:_MAX_LINES]:
        servers = [state.servers[s] for s in wave.servers if s in state.servers]
        launched = sum(s.status is ServerStatus.LAUNCHED for s in servers)
        failed = sum(s.status is ServerStatus.FAILED for s in servers)
        counts = f"{launched}/{len(servers)} launched" + (f", {failed} failed" if failed else "")
        lines.append(f"- {wave.name}: {wave.status.value}, {counts}" + (f": {wave.message}" if wave.message else ""))
    return "\n".join(lines)
