"""`control.wait` as a workflow timer: a wait costs no activity and no worker slot, shows in the Temporal UI as a
timer with a summary, and a time-skipping test server can run it at its real length.

Runs whose history began before this existed waited in the `dr.resource.start` / `dr.resource.wait` activities.
`workflow.patched(WAIT_TIMER_PATCH)` keeps them replaying: a new run records the patch marker where its first
wait starts and takes the timer; replaying a history without the marker at that point answers False, and the SDK
remembers the answer for the rest of that run, so every wait of an old run goes on through the activities (which
the worker still registers). Once no run from before the patch can be open, `workflow.deprecate_patch` replaces
the check.

Functions of DrLifecycleWorkflow's resource step (same determinism rules). The parameters are those the run resolved
(`resolve:ssm:` / `!Import` values are read by an activity before this runs), so the timer uses the values.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow

from workflows.steps import end

with workflow.unsafe.imports_passed_through():
    from contracts.activities import WAIT_ACTION, WaitParameters
    from plans.model import Resource
    from contracts.lifecycle import ResourceState, StepStatus

WAIT_TIMER_PATCH = "control-wait-timer"


def waits_on_a_timer(resource: Resource) -> bool:
    # `patched` is asked only for a wait, so histories without one never meet the marker.
    return resource.action == WAIT_ACTION and workflow.patched(WAIT_TIMER_PATCH)


async def wait_timer(resource: Resource, state: ResourceState) -> None:
    try:
        params = WaitParameters.model_validate(resource.parameters)
    except ValidationError as exc:  # validated before the run and by the resolver: only a guard, never a task failure
        state.error = f"invalid parameters for {resource.name}: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())  # no input: it may be a secret
        state.error_type = "InvalidParameters"
        end(state, StepStatus.FAILED)
        return
    why = f" ({params.reason})" if params.reason else ""
    duration = timedelta(seconds=params.seconds)
    state.message = f"waiting {params.seconds} s{why}"
    state.handle = {"until": (workflow.now() + duration).isoformat()}
    try:
        await workflow.sleep(duration, summary=f"{resource.name}: wait {params.seconds} s{why}")
    except asyncio.CancelledError:  # a forced cancel stops the wait, as it stopped the wait activity
        end(state, StepStatus.CANCELLED, "cancelled during its wait")
        raise
    end(state, StepStatus.SUCCEEDED, f"waited {params.seconds} s{why}")
