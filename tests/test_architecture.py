"""Rules that keep workflows deterministic and the layers apart."""

from __future__ import annotations

import ast
import concurrent.futures
import subprocess
import sys
from pathlib import Path

from temporalio import workflow
from temporalio.client import WorkflowHandle
from temporalio.common import RawValue
from temporalio.worker import Replayer, Worker

from activities.callback import CallbackActivities
from activities.core.runtime import DrActivities
from plans.model import Resource
from tests.identity_helpers import session_converter
from tests.lifecycle_helpers import finish, make_plan, start_run, timer_summaries, wait_resource
from workers.main import workflow_runner
from workflows.lifecycle import DrLifecycleWorkflow
from workflows.lifecycle_messages import NO_INPUT
from contracts.lifecycle import WORKFLOW_TYPE, LifecycleResult

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_WORKFLOWS = {"boto3", "botocore", "requests", "urllib", "socket", "time", "random", "threading",
                          "subprocess", "structlog"}


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_workflow_code_imports_no_boto3_io_clock_or_randomness():
    files = sorted((ROOT / "workflows").glob("*.py"))
    assert files
    for path in files:
        roots = {name.split(".")[0] for name in _imported_modules(path)}
        assert not roots & FORBIDDEN_IN_WORKFLOWS, f"{path.name} imports {roots & FORBIDDEN_IN_WORKFLOWS}"
        # Which of our packages workflows may import is an import-linter contract (pyproject.toml, `make test`).


def test_workflows_own_their_parts_instead_of_inheriting_them():
    """Each workflow class stands alone, its message handlers on it; its parts are objects it owns. A mixin that
    inherits the workflow under TYPE_CHECKING is what mypy rejected: none comes back."""
    from workflows.drs_recovery import DrsRecoveryWorkflow

    for cls in (DrLifecycleWorkflow, DrsRecoveryWorkflow):
        assert cls.__bases__ == (object,), cls.__bases__
    for path in sorted((ROOT / "workflows").glob("*.py")):
        assert "TYPE_CHECKING" not in path.read_text(), path.name


def test_importing_the_workflow_loads_no_boto3():
    code = "import sys, workflows.lifecycle, contracts.lifecycle; print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('boto3', 'botocore')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_recorded_history_replays_without_nondeterminism(worker):
    plan = make_plan({
        "INSTANTIATE": [{"name": "i", "resources": [wait_resource("i1")]}],
        "ACTIVATE": [{"name": "a", "approvalRequired": False,
                      "resources": [wait_resource("a1"), wait_resource("a2")]}],
    }, name="replay")
    handle = await start_run(worker.client, worker.task_queue, plan)
    await finish(handle)
    history = await handle.fetch_history()
    replayer = Replayer(workflows=[DrLifecycleWorkflow], data_converter=session_converter(),
                        workflow_runner=workflow_runner())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


# Unsandboxed: it is defined in this test module, which imports what the workflow sandbox refuses (boto3).
@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False)
class _BeforeTheWaitTimer(DrLifecycleWorkflow):
    """DrLifecycleWorkflow as it ran before control.wait became a timer: every wait through the activities."""

    @workflow.run
    async def run(self, raw: RawValue = NO_INPUT) -> LifecycleResult:
        return await super().run(raw)

    def _waits_on_a_timer(self, resource: Resource) -> bool:
        return False


async def test_a_history_from_before_the_wait_timer_replays_on_its_activities(worker):
    """Runs recorded before the `control-wait-timer` patch (waits as dr.resource.start/wait activities, no patch
    marker) replay on today's workflow, and a new run of the same plan waits on timers instead."""
    plan = make_plan({"ACTIVATE": [{"name": "a", "resources": [wait_resource("w1"), wait_resource("w2")]},
                                   {"name": "b", "resources": [wait_resource("w3")]}]}, name="before-timer")
    queue = f"{worker.task_queue}-before-timer"
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(worker.client, task_queue=queue, workflows=[_BeforeTheWaitTimer],
                          activities=[*DrActivities(worker.aws).all(), *CallbackActivities(worker.aws).all()],
                          activity_executor=executor):
            old = await start_run(worker.client, queue, plan)
            await finish(old)
    new = await start_run(worker.client, worker.task_queue, plan)
    await finish(new)

    async def activities(handle: WorkflowHandle) -> list[str]:
        return [e.activity_task_scheduled_event_attributes.activity_id async for e in handle.fetch_history_events()
                if e.HasField("activity_task_scheduled_event_attributes")]

    assert {"ACTIVATE/a/w1/start", "ACTIVATE/a/w2/start", "ACTIVATE/b/w3/start"} <= set(await activities(old))
    assert not [a for a in await activities(new) if a.startswith("ACTIVATE/")]
    waits = [summary for summary in await timer_summaries(new) if "layer timeout" not in summary]
    assert waits == ["w1: wait 1 s", "w2: wait 1 s", "w3: wait 1 s"]
    replayer = Replayer(workflows=[DrLifecycleWorkflow], data_converter=session_converter(),
                        workflow_runner=workflow_runner())
    for handle in (old, new):
        result = await replayer.replay_workflow(await handle.fetch_history(), raise_on_replay_failure=False)
        assert result.replay_failure is None, (handle.id, result.replay_failure)
