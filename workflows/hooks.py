"""Running hooks (plans.hooks) from workflow code: a layer's in DrLifecycleWorkflow, a DRS wave's in
DrsRecoveryWorkflow.

A hook is a resource of a `hook.*` module run through the generic start/wait activities, so retries, heartbeats and
the module's own idempotency (an SSM ClientToken, a Lambda invocation id) are those of any resource. Its timeout is
enforced by the module (it stops an automation that overruns) and, as a backstop, here; a forced cancel stops a
running automation through `hook.ssm_automation_stop`. Hooks of one layer or wave run one after the other, in order.
Deterministic workflow code: no I/O, time from `workflow.now()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from workflows.timeouts import heartbeat
from workflows.steps import AWS_RETRY, START_TIMEOUT, end, record_failure, start_and_wait, within
from workflows.run_details import step_summary

with workflow.unsafe.imports_passed_through():
    from contracts.activities import RESOURCE_START, Operation, ResourceCall
    from plans.hooks import LAMBDA_ACTION, SSM_AUTOMATION_STOP_ACTION, Hook
    from plans.model import Account, Layer, Mode, Phase, Plan, Regions, Resource
    from contracts.drs_recovery import DrsRecoveryInput, DrsRecoveryState, HookTarget, WaveRecord, WaveStatus
    from contracts.lifecycle import HookState, LayerState, LifecycleState, StepStatus

# The module enforces a hook's timeout; this much later the workflow gives up on it too (a worker lost mid-wait).
GRACE = timedelta(seconds=60)


def hook_state(hook: Hook, when: str, account_id: str, region: str, mode: Mode) -> HookState:
    state = HookState(name=hook.name, when=when, kind=hook.kind, target=hook.target, account=account_id,
                      region=region, on_failure=hook.on_failure, timeout_seconds=hook.timeout_seconds)
    if hook.modes is not None and mode.value not in hook.modes:
        state.runs, state.status = False, StepStatus.SKIPPED
        state.message = f"not run in a {mode.value} run (modes: {', '.join(hook.modes)})"
    return state


def layer_hook_target(plan: Plan, layer: Layer, hook: Hook) -> tuple[str, str]:
    """(account key, region) of a layer's hook: its own, else the one all the layer's resources share, else the
    plan's default account and recovery region."""
    accounts = {plan.account_key_for(r) for r in layer.resources}
    regions = {plan.region_for(r) for r in layer.resources}
    account = hook.account or (accounts.pop() if len(accounts) == 1 else
                               plan.defaults.account or next(iter(plan.accounts)))
    return account, hook.region or (regions.pop() if len(regions) == 1 else plan.regions.recovery)


def hook_call(hook: Hook, *, execution_id: str, plan_name: str, mode: Mode, phase: Phase, step: str,
              account_key: str, account: Account, region: str, regions: Regions) -> ResourceCall:
    """The resource call that runs `hook`; `step` (the layer, or "<resource>/wave:<wave>") keeps its
    idempotency token apart from other steps' hooks of the same name."""
    resource = Resource(name=hook.name, action=hook.action, parameters=hook.module_parameters(),
                        account=account_key, region=region)
    return ResourceCall(execution_id=execution_id, plan_name=plan_name, mode=mode, phase=phase, layer=step,
                        resource=resource, account_key=account_key, account=account, region=region, regions=regions)


def failed_hook(states: Sequence[HookState], policy: str) -> HookState | None:
    return next((h for h in states if h.status in (StepStatus.FAILED, StepStatus.CANCELLED)
                 and h.on_failure == policy), None)


def describe_failure(hook: HookState) -> str:
    return f"{hook.when}-hook {hook.name} {hook.status.value.lower()}: {hook.error or hook.message}"


async def run_hooks(items: Sequence[tuple[Hook, ResourceCall, HookState]], id_prefix: str,
                    tasks: dict[str, asyncio.Task[None]] | None = None) -> bool:
    """Run hooks in order; False when one with onFailure "fail" failed (the rest are then SKIPPED)."""
    for index, (hook, call, state) in enumerate(items):
        if not state.runs:
            continue
        activity_id = f"{id_prefix}/{state.when}-hook/{hook.name}"
        task = asyncio.create_task(run_hook(hook, call, state, activity_id))
        if tasks is not None:
            tasks[activity_id] = task  # a forced cancel of the run reaches it
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the whole run is being cancelled through Temporal
        finally:
            if tasks is not None:
                tasks.pop(activity_id, None)
        if state.status in (StepStatus.FAILED, StepStatus.CANCELLED) and hook.on_failure == "fail":
            for _, _, rest in items[index + 1:]:
                rest.status = StepStatus.SKIPPED
            return False
    return True


async def run_hook(hook: Hook, call: ResourceCall, state: HookState, activity_id: str) -> None:
    state.status, state.started_at = StepStatus.RUNNING, workflow.now()
    timeout = timedelta(seconds=hook.timeout_seconds) + GRACE
    # A Lambda invoke answers within the start activity; it must be allowed the hook's whole timeout to do so.
    start_timeout = timeout if hook.action == LAMBDA_ACTION else START_TIMEOUT
    try:
        await within(asyncio.create_task(start_and_wait(call, state, activity_id, wait_timeout=timeout,
                                                        start_timeout=start_timeout)),
                     timeout, f"{step_summary(call, activity_id)}: hook timeout ({hook.timeout_seconds} s)")
        end(state, StepStatus.SUCCEEDED)
    except asyncio.TimeoutError:
        state.error, state.error_type = f"did not finish within {hook.timeout_seconds} s", "HookTimeout"
        end(state, StepStatus.FAILED)
        await _stop(call, state, activity_id, "timeout")
    except ActivityError as err:
        if not record_failure(state, err, "cancelled"):
            return
        cause = err.cause
        if isinstance(cause, ApplicationError):
            # A hook module's message says what failed without its type (error_type has it); its details may
            # carry what the automation or function put out before it failed.
            state.error = cause.message
            if cause.details and isinstance(cause.details[0], dict) and \
                    isinstance(cause.details[0].get("outputs"), dict):
                state.outputs = cause.details[0]["outputs"]
        workflow.logger.warning("hook %s failed: %s", activity_id, state.error)
    except (asyncio.CancelledError, CancelledError):
        end(state, StepStatus.CANCELLED, "cancelled")
        await _stop(call, state, activity_id, "run cancelled")
        raise


async def _stop(call: ResourceCall, state: HookState, activity_id: str, reason: str) -> None:
    """Stop a running automation; a Lambda invocation cannot be stopped (it ends at its own timeout)."""
    execution_id = state.handle.get("automationExecutionId")
    if not execution_id:
        if call.resource.action == LAMBDA_ACTION:
            state.message = "the invocation may run on until the function's own timeout"
        return
    stop = call.model_copy(update={"resource": Resource(
        name=call.resource.name, action=SSM_AUTOMATION_STOP_ACTION,
        parameters={"automationExecutionId": execution_id, "reason": reason})})
    try:
        await workflow.execute_activity(RESOURCE_START, stop, result_type=Operation, activity_id=f"{activity_id}/stop",
                                        start_to_close_timeout=timedelta(minutes=1), heartbeat_timeout=heartbeat(),
                                        retry_policy=AWS_RETRY,
                                        summary=f"{step_summary(call, activity_id)}: stop automation {execution_id}")
        state.message = f"automation {execution_id} stopped ({reason})"
    except ActivityError as err:
        state.message = f"automation {execution_id} could not be stopped: {err.cause or err}"


# ---- a layer's hooks (DrLifecycleWorkflow) ---------------------------------------------------------------------

async def run_layer_hooks(plan: Plan, run: LifecycleState, phase: Phase, layer: Layer, layer_state: LayerState,
                          when: str, tasks: dict[str, asyncio.Task[None]]) -> bool:
    """Run the layer's pre- or post-hooks; False when the layer must fail (a hook with onFailure fail)."""
    hooks = layer.pre_hooks if when == "pre" else layer.post_hooks
    states = layer_state.pre_hooks if when == "pre" else layer_state.post_hooks
    items = []
    for hook, state in zip(hooks, states, strict=True):
        account_key, region = layer_hook_target(plan, layer, hook)
        if account_key not in plan.accounts:  # the worker's plan check names it; never fail the task
            state.status, state.error, state.error_type = StepStatus.FAILED, \
                f"unknown account {account_key!r}", "InvalidParameters"
            return hook.on_failure != "fail"
        items.append((hook, hook_call(
            hook, execution_id=run.workflow_id, plan_name=plan.name, mode=run.mode, phase=phase,
            step=layer.name, account_key=account_key, account=plan.accounts[account_key], region=region,
            regions=plan.regions), state))
    return await run_hooks(items, f"{phase.value}/{layer.name}", tasks)


# ---- a DRS wave's hooks (DrsRecoveryWorkflow, ACTIVATE) ---------------------------------------------------------

class WaveHooks:
    """The hooks of a DRS recovery's waves: a plain object the ACTIVATE engine (workflows.drs_waves) owns. It ends
    waves through `end_wave` and wakes the engine's main loop through `wake` when hooks finish."""

    def __init__(self, input: DrsRecoveryInput, state: DrsRecoveryState,
                 end_wave: Callable[[WaveRecord, WaveStatus, str], None], wake: Callable[[], None]) -> None:
        self._input, self._state, self._end_wave, self._wake = input, state, end_wave, wake
        self._tasks: dict[tuple[str, str], asyncio.Task[Any]] = {}
        for record in self._state.waves:
            for target in self._input.wave_hooks.get(record.name, []):
                states = record.pre_hooks if target.when == "pre" else record.post_hooks
                states.append(hook_state(target.hook, target.when, target.account.id, target.region,
                                         self._input.mode))

    def ready(self, record: WaveRecord) -> bool:
        """Whether the wave may start its jobs: its pre-hooks ran and none with onFailure fail failed. The first
        call starts them; the wave stays PENDING meanwhile, and their end wakes the main loop."""
        if not any(h.runs for h in record.pre_hooks):
            return True
        task = self._tasks.get((record.name, "pre"))
        if task is None:
            self._tasks[(record.name, "pre")] = asyncio.create_task(self._run(record, "pre"))
            return False
        if not task.done():
            return False
        failed = failed_hook(record.pre_hooks, "fail")
        if failed is not None:
            self._end_wave(record, WaveStatus.FAILED, f"not started: {describe_failure(failed)}")
            return False
        return True

    def launched(self, record: WaveRecord, status: WaveStatus, message: str) -> None:
        """Called instead of ending a wave whose servers launched: its post-hooks run first."""
        if not any(h.runs for h in record.post_hooks) and failed_hook(record.pre_hooks, "continue") is None:
            self._end_wave(record, status, message)
            return
        if (record.name, "post") in self._tasks:
            return  # running: their end closes the wave

        async def post() -> None:
            await self._run(record, "post")
            hooks = [*record.pre_hooks, *record.post_hooks]
            failed, tolerated = failed_hook(hooks, "fail"), failed_hook(hooks, "continue")
            if failed is not None:
                self._end_wave(record, WaveStatus.FAILED, f"{message}; {describe_failure(failed)}")
            elif tolerated is not None:
                self._end_wave(record, WaveStatus.PARTIAL, f"{message}; {describe_failure(tolerated)} "
                                                                "(onFailure continue)")
            else:
                self._end_wave(record, status, message)

        record.message = f"{message}; post-hooks running" if any(h.runs for h in record.post_hooks) else message
        self._tasks[(record.name, "post")] = asyncio.create_task(post())

    async def _run(self, record: WaveRecord, when: str) -> bool:
        targets: list[HookTarget] = [t for t in self._input.wave_hooks.get(record.name, []) if t.when == when]
        states = record.pre_hooks if when == "pre" else record.post_hooks
        items = []
        for t, s in zip(targets, states, strict=True):
            # drs_input_for gives an input its plan's regions whenever it gives it wave hooks.
            assert self._input.regions is not None
            items.append((t.hook, hook_call(
                t.hook, execution_id=self._input.execution_id, plan_name=self._input.plan_name, mode=self._input.mode,
                phase=self._input.phase, step=f"{self._input.resource}/wave:{record.name}",
                account_key=t.account_key, account=t.account, region=t.region, regions=self._input.regions), s))
        try:
            return await run_hooks(items, f"wave/{record.name}")
        finally:
            self._wake()

