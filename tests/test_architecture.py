"""Rules that keep workflows deterministic and the layers apart."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.lifecycle_helpers import finish, make_plan, start_run, wait_resource
from workers.main import workflow_runner
from workflows.lifecycle import DrLifecycleWorkflow

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
        # What workflows take from activities must be the boto3-free contract only.
        from_activities = {n for n in _imported_modules(path) if n.startswith("activities")}
        assert from_activities <= {"activities.contract", "activities.drs_contract"}, \
            f"{path.name} imports {from_activities}"


def test_importing_the_workflow_loads_no_boto3():
    code = "import sys, workflows.lifecycle, workflows.models; print(sorted(m for m in sys.modules " \
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
    replayer = Replayer(workflows=[DrLifecycleWorkflow], data_converter=pydantic_data_converter,
                        workflow_runner=workflow_runner())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
