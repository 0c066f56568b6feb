"""Pure functions over the run state: building it from a plan, rolling statuses up, closing it at the end.

No workflow APIs here (the caller passes the time), so these are plain, fast unit-testable code.
"""

from __future__ import annotations

from datetime import datetime

from plans.hooks import Hook
from plans.model import Layer, Mode, Plan, Resource
from contracts.lifecycle import (
    HookState,
    LayerState,
    LifecycleInput,
    LifecycleResult,
    LifecycleState,
    PhaseState,
    ResourceState,
    RunStatus,
    StepStatus,
)
from workflows.hooks import hook_state, layer_hook_target


def new_state(run_input: LifecycleInput, workflow_id: str, now: datetime) -> LifecycleState:
    plan = run_input.plan
    return LifecycleState(
        workflow_id=workflow_id,
        plan_name=plan.name,
        mode=run_input.mode,
        initiator=run_input.initiator,
        paused=run_input.options.start_paused,
        started_at=now,
        plan_hash=plan.digest(),
        phases=[
            PhaseState(phase=phase, layers=[_layer_state(plan, layer, run_input.mode)
                                            for layer in plan.layers(phase)])
            for phase in run_input.selected_phases()
        ],
    )


def _layer_state(plan: Plan, layer: Layer, mode: Mode) -> LayerState:
    def account_id(resource: Resource) -> str:
        # The plan is re-validated by an activity after start; until then an unknown key must not crash the task.
        key = plan.account_key_for(resource)
        return plan.accounts[key].id if key in plan.accounts else key

    def hook(hook: Hook, when: str) -> HookState:
        key, region = layer_hook_target(plan, layer, hook)
        return hook_state(hook, when, plan.accounts[key].id if key in plan.accounts else key, region, mode)

    return LayerState(
        name=layer.name,
        continue_on_error=layer.continue_on_error,
        resources=[
            ResourceState(name=r.name, action=r.action, account=account_id(r), region=plan.region_for(r))
            for r in layer.resources
        ],
        pre_hooks=[hook(h, "pre") for h in layer.pre_hooks],
        post_hooks=[hook(h, "post") for h in layer.post_hooks],
    )


def layer_rollup(layer: LayerState) -> StepStatus:
    """A layer's status from its resources' and its hooks': a failed hook fails the layer unless its onFailure is
    continue (then the layer is PARTIAL), whatever the layer's continueOnError says about its resources."""
    if layer.skipped_by or all(r.skipped_by for r in layer.resources):
        return StepStatus.SKIPPED
    hooks = [*layer.pre_hooks, *layer.post_hooks]
    counted = [r.status for r in layer.resources if not r.skipped_by]  # an operator's skip is not a stop
    statuses = [rollup(counted, tolerate_failures=layer.continue_on_error)]
    statuses += [StepStatus.PARTIAL if h.status is StepStatus.FAILED and h.on_failure == "continue" else h.status
                 for h in hooks if h.runs and h.status is not StepStatus.PENDING]  # not run (yet): no say
    return rollup(statuses)


def phase_rollup(phase: PhaseState) -> StepStatus:
    """A phase's status from its layers', leaving out layers an operator skipped."""
    counted = [layer.status for layer in phase.layers if not layer.skipped_by]
    return rollup(counted) if counted or not phase.layers else StepStatus.SKIPPED


def rollup(statuses: list[StepStatus], tolerate_failures: bool = False) -> StepStatus:
    """The status of a layer or phase from its children's. PARTIAL: some failed in a continue-on-error layer."""
    if not statuses:
        return StepStatus.SUCCEEDED
    if StepStatus.RUNNING in statuses:
        return StepStatus.RUNNING
    if StepStatus.FAILED in statuses:
        return StepStatus.PARTIAL if tolerate_failures else StepStatus.FAILED
    if StepStatus.CANCELLED in statuses:
        return StepStatus.CANCELLED
    if all(s is StepStatus.SKIPPED for s in statuses):
        return StepStatus.SKIPPED
    if all(s is StepStatus.PENDING for s in statuses):
        return StepStatus.PENDING
    if any(s in (StepStatus.SKIPPED, StepStatus.PENDING) for s in statuses):
        return StepStatus.CANCELLED  # part of it ran, then the run stopped
    if StepStatus.PARTIAL in statuses:
        return StepStatus.PARTIAL
    return StepStatus.SUCCEEDED


def close(state: LifecycleState, status: RunStatus, message: str, now: datetime) -> None:
    """End the run: whatever never started is SKIPPED, and every layer and phase gets its final status."""
    for phase_state in state.phases:
        for layer_state in phase_state.layers:
            for step in [*layer_state.resources, *layer_state.pre_hooks, *layer_state.post_hooks]:
                if step.status is StepStatus.PENDING:
                    step.status = StepStatus.SKIPPED
            if layer_state.status in (StepStatus.PENDING, StepStatus.RUNNING):
                layer_state.status = StepStatus.SKIPPED if layer_state.started_at is None else \
                    layer_rollup(layer_state)
        if phase_state.status in (StepStatus.PENDING, StepStatus.RUNNING):
            phase_state.status = _final(phase_state.started_at,
                                        [layer.status for layer in phase_state.layers if not layer.skipped_by])
            if phase_state.started_at and phase_state.ended_at is None:
                phase_state.ended_at = now
    state.status = status
    state.error = message if status is not RunStatus.COMPLETED else None
    state.ended_at = now


def _final(started_at: datetime | None, children: list[StepStatus], tolerate_failures: bool = False) -> StepStatus:
    # Never started means nothing in it ran, even when it had nothing to run.
    return StepStatus.SKIPPED if started_at is None else rollup(children, tolerate_failures)


def failed_resources(state: LifecycleState) -> list[str]:
    """Failed resources, and failed hooks (named "<when>-hook <name>")."""
    return [
        f"{p.phase.value}/{layer.name}/{r.name}: {r.error}"
        for p in state.phases for layer in p.layers for r in layer.resources
        if r.status is StepStatus.FAILED
    ] + [
        f"{p.phase.value}/{layer.name}/{h.when}-hook {h.name}: {h.error}"
        for p in state.phases for layer in p.layers for h in [*layer.pre_hooks, *layer.post_hooks]
        if h.status is StepStatus.FAILED
    ]


def partial_resources(state: LifecycleState) -> list[str]:
    """Resources that ended PARTIAL (a DRS recovery with optional servers failed), with what failed in them."""
    return [f"{p.phase.value}/{layer.name}/{r.name}: {r.error or r.message}"
            for p in state.phases for layer in p.layers for r in layer.resources if r.status is StepStatus.PARTIAL]


def within_policy(state: LifecycleState) -> list[str]:
    """Everything that failed in a run that went on, in run order: resources of continue-on-error layers, hooks with
    onFailure continue, resources that ended PARTIAL. Empty: nothing failed, the run is COMPLETED; else PARTIAL."""
    items = []
    for p in state.phases:
        for layer in p.layers:
            items += [f"{p.phase.value}/{layer.name}/{h.when}-hook {h.name}: {h.error}" for h in layer.pre_hooks
                      if h.status is StepStatus.FAILED]
            items += [f"{p.phase.value}/{layer.name}/{r.name}: {r.error or r.message}" for r in layer.resources
                      if r.status in (StepStatus.FAILED, StepStatus.PARTIAL)]
            items += [f"{p.phase.value}/{layer.name}/{h.when}-hook {h.name}: {h.error}" for h in layer.post_hooks
                      if h.status is StepStatus.FAILED]
    return items


def partial_message(state: LifecycleState, items: list[str], shown: int = 3, limit: int = 240) -> str:
    """"drill of web partial: ACTIVATE/app/servers: wave web: 1 optional server failed (web-3: ...); ...": the
    first `shown` of what failed within policy, each clipped to `limit` characters, for a message read at a glance
    (the result's failed_resources and partial_resources, and the status, have them all)."""
    clipped = [item if len(item) <= limit else item[:limit - 1] + "…" for item in items[:shown]]
    more = f"; and {len(items) - shown} more" if len(items) > shown else ""
    return f"{state.mode.value} of {state.plan_name} partial: {'; '.join(clipped)}{more}"


def result_of(state: LifecycleState) -> LifecycleResult:
    failed = failed_resources(state)
    if state.error:
        message = state.error
    elif failed:  # continue-on-error layers: the run went on, but say so (runs from before RunStatus.PARTIAL)
        message = f"{state.mode.value} of {state.plan_name} completed with {len(failed)} failed resource(s)"
    else:
        message = f"{state.mode.value} of {state.plan_name} completed"
    return LifecycleResult(
        workflow_id=state.workflow_id,
        status=state.status,
        phase_durations_seconds={
            p.phase.value: p.duration_seconds for p in state.phases if p.duration_seconds is not None
        },
        failed_resources=failed,
        message=message,
        partial_resources=partial_resources(state),
    )
