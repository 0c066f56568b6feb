"""Histories of runs recorded on earlier code replay on today's without nondeterminism, on any worker process.

A worker that cannot replay the history of a run in flight breaks that run (a drill stuck mid-way, a failover left
half done). tests/histories/ holds complete histories recorded by tests/histories/record.py; each is replayed with
the workflows the worker registers, its sandbox and its data converter. No server: replay is local.

Replay runs in worker-like processes with different PYTHONHASHSEEDs: str hashes are salted per process, so
workflow code that iterates a set of str takes its steps in another order on another worker, and a run breaks when
it moves to a worker that hashes differently. Both seeds below order the DRS targets of drs-waves differently.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workers.main import WORKFLOWS, workflow_runner
from tests.identity_helpers import session_converter

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = ROOT / "tests" / "histories"
COMPLETED, FAILED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
# Every history that must be here, its workflow type and how it ended. Listed here, not read from the folder, so
# that a deleted history fails the test instead of silently leaving the set.
EXPECTED = {
    "gated-drill.json": ("DrLifecycleWorkflow", COMPLETED),
    "drs-waves.json": ("DrLifecycleWorkflow", COMPLETED),
    "drs-waves.ACTIVATE.servers.servers.json": ("DrsRecoveryWorkflow", COMPLETED),
    "drs-waves.CLEANUP.servers.servers.json": ("DrsRecoveryWorkflow", COMPLETED),
    "failed-run.json": ("DrLifecycleWorkflow", FAILED),
    "paused-cancelled.json": ("DrLifecycleWorkflow", COMPLETED),
    "signalled-gate.json": ("DrLifecycleWorkflow", COMPLETED),
    "bad-input.json": ("DrLifecycleWorkflow", FAILED),
    "tolerated-failures-completed.json": ("DrLifecycleWorkflow", COMPLETED),
    "tolerated-failures-completed.ACTIVATE.servers.servers.json": ("DrsRecoveryWorkflow", COMPLETED),
    "partial-run.json": ("DrLifecycleWorkflow", COMPLETED),
    "partial-run.ACTIVATE.servers.servers.json": ("DrsRecoveryWorkflow", COMPLETED),
    "drs-faults.json": ("DrLifecycleWorkflow", FAILED),
    "drs-faults.ACTIVATE.servers.servers.json": ("DrsRecoveryWorkflow", COMPLETED),
    "drill-cleanup-after-failure.json": ("DrLifecycleWorkflow", FAILED),
    "drill-cleanup-after-failure.ACTIVATE.servers.servers.json": ("DrsRecoveryWorkflow", COMPLETED),
    "drill-cleanup-after-failure.CLEANUP.servers.servers.json": ("DrsRecoveryWorkflow", COMPLETED),
    "bound-approvals.json": ("DrLifecycleWorkflow", COMPLETED),
}
HASH_SEEDS = ("0", "2")


def load(name: str) -> WorkflowHistory:
    # A history does not hold its own workflow id; the index does (child workflow ids are derived from it).
    index = json.loads((HISTORIES / "index.json").read_text())
    return WorkflowHistory.from_json(index[name]["workflowId"], (HISTORIES / name).read_text())


def replayer() -> Replayer:
    return Replayer(workflows=list(WORKFLOWS), workflow_runner=workflow_runner(),
                    data_converter=session_converter())


async def replay_all() -> dict[str, str | None]:
    """Each expected history -> its replay failure, or None. What a worker process would make of them."""
    results = {}
    for name in sorted(EXPECTED):
        result = await replayer().replay_workflow(load(name), raise_on_replay_failure=False)
        results[name] = None if result.replay_failure is None else str(result.replay_failure)
    return results


@functools.cache
def replays_per_seed() -> dict[str, dict[str, str | None]]:
    """replay_all in one process per hash seed, the processes running side by side."""
    # The results go to a file: the SDK's core logs (replay failures among them) to stdout.
    with tempfile.TemporaryDirectory(prefix="dr-replay-") as folder:
        # stderr goes to a file that a failure quotes: a crash of the replay process must say why.
        running = {seed: subprocess.Popen([sys.executable, "-m", "tests.test_replay_histories", f"{folder}/{seed}"],
                                          cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed},
                                          stdout=subprocess.DEVNULL, stderr=open(f"{folder}/{seed}.err", "wb"))
                   for seed in HASH_SEEDS}
        for seed, process in running.items():
            code = process.wait(timeout=120)
            errors = Path(folder, f"{seed}.err").read_text(errors="replace").splitlines()[-30:]
            assert code == 0, f"replay process (PYTHONHASHSEED={seed}) exited {code}:\n" + "\n".join(errors)
        return {seed: json.loads(Path(folder, seed).read_text()) for seed in HASH_SEEDS}


def test_every_expected_history_is_committed_and_indexed():
    index = json.loads((HISTORIES / "index.json").read_text())
    on_disk = {p.name for p in HISTORIES.glob("*.json")} - {"index.json"}
    assert set(index) == on_disk == set(EXPECTED)
    # Each stands for a release and a commit of it (docs/versioning.md: `make record-histories` at each release).
    unnamed = {name: key for name, entry in index.items() for key in ("recordedOn", "release", "workflowCodeOf")
               if not entry.get(key)}
    assert not unnamed, unnamed


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_history_is_a_whole_run_of_its_workflow(name: str):
    history = load(name)
    workflow_type, last_event = EXPECTED[name]
    assert history.events[0].workflow_execution_started_event_attributes.workflow_type.name == workflow_type
    assert history.events[-1].event_type == last_event  # the whole run, not a cut-off part of it


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_recorded_history_replays_without_nondeterminism(name: str):
    failures = {seed: results[name] for seed, results in replays_per_seed().items() if results[name]}
    assert not failures, f"{name}: {failures}"


async def test_a_changed_command_is_caught_as_nondeterminism():
    """The check can fail: the same history with one activity renamed no longer matches what the code does."""
    history = load("failed-run.json")
    scheduled = next(e for e in history.events if e.HasField("activity_task_scheduled_event_attributes"))
    scheduled.activity_task_scheduled_event_attributes.activity_type.name = "dr.renamed"
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower(), result.replay_failure


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(asyncio.run(replay_all())))
    # The results are written: leave without interpreter finalization. On a loaded machine the SDK core's native
    # threads were seen calling into a finalizing interpreter (SIGABRT in PyGILState_Release, 3 times in ~20 runs),
    # failing the test after every replay had passed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
