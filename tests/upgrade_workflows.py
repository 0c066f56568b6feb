"""The next release's workflow code, for tests/test_upgrade_at_gate.py: DrLifecycleWorkflow with a change before the
approval gate and a new step after it, registered under the same workflow type, as a new worker would run it.

`NextRelease` makes the change as docs/versioning.md says to: each change behind its own `workflow.patched`, so a
run that reached the gate on today's code replays on it unchanged and takes the new step once past the gate.
`Unguarded` makes the same change without the guard: a worker running it must fail such a run's workflow task with
nondeterminism, not let it go on differently.

A module of its own, not the test's: the workflow sandbox re-imports the module a workflow class is defined in, and
this one imports only workflow code.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue

from workflows.lifecycle import DrLifecycleWorkflow
from workflows.lifecycle_messages import NO_INPUT

with workflow.unsafe.imports_passed_through():  # as workflows/lifecycle.py imports them: one copy of each model
    from contracts.lifecycle import WORKFLOW_TYPE, LayerState, LifecycleResult
    from plans.model import Layer, Phase

# The change before the gate: a new pre-flight timer as the run starts.
PREFLIGHT_PATCH = "upgrade-test-preflight"
PREFLIGHT_SUMMARY = "upgrade test: pre-flight pause (new in the next release)"
# The new step after the gate: a timer before the gated layer's resources start.
AFTER_GATE_PATCH = "upgrade-test-after-gate"
AFTER_GATE_SUMMARY = "upgrade test: new step after the gate"
GATED_LAYER = "switch"


@workflow.defn(name=WORKFLOW_TYPE)
class NextRelease(DrLifecycleWorkflow):
    @workflow.run
    async def run(self, raw: RawValue = NO_INPUT) -> LifecycleResult:
        # The first command of a run: without the guard, a run started on today's code (whose history begins with
        # its search attributes) would meet a timer in its place on replay.
        if workflow.patched(PREFLIGHT_PATCH):
            await workflow.sleep(timedelta(milliseconds=100), summary=PREFLIGHT_SUMMARY)
        return await super().run(raw)

    async def _run_layer(self, phase: Phase, layer: Layer, layer_state: LayerState) -> None:
        # A patch of its own: patched() is memoized per run, so the pre-flight's False (a replayed run) must not
        # decide this one, which a run takes once it is past the gate, on the new code.
        if layer.name == GATED_LAYER and workflow.patched(AFTER_GATE_PATCH):
            await workflow.sleep(timedelta(milliseconds=100), summary=AFTER_GATE_SUMMARY)
        await super()._run_layer(phase, layer, layer_state)


@workflow.defn(name=WORKFLOW_TYPE)
class Unguarded(DrLifecycleWorkflow):
    @workflow.run
    async def run(self, raw: RawValue = NO_INPUT) -> LifecycleResult:
        await workflow.sleep(timedelta(milliseconds=100), summary=PREFLIGHT_SUMMARY)  # the same change, unguarded
        return await super().run(raw)
