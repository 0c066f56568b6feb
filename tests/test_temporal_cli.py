"""A whole gated drill driven with nothing but the `temporal` binary, as a team that already runs Temporal does it
(issue 12, "Must show"): `workflow start --input-file`, `workflow query`, an approval by `workflow update execute`
(the initiator refused, non-zero exit; a plan-manager accepted), the same gate opened by `workflow signal` in a second
run with the denied signal in the `audit` query, both runs found by `workflow list --query` on the search attributes.
Then what the Temporal UI shows of such a run, which the starter did not set: the memo, the current details and the
activities' and timers' summaries. tests/test_run_page.py reads the same things of a run drctl started with the SDK.

Payloads are sealed (issue 14): the binary reads and writes them through `drctl codec-server` (`--codec-endpoint`,
`--codec-auth "Bearer <token>"`, tests/cli_helpers.py), as such a team points it; its start input is sealed too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path
from typing import Any

from contracts.lifecycle import WORKFLOW_TYPE, LifecycleInput
from contracts.run_metadata import run_memo, start_metadata
from plans.model import Mode
from tests.cli_helpers import payload, temporal
from tests.identity_helpers import token_for
from tests.lifecycle_helpers import make_plan, wait_resource

INITIATOR = "alice@example.com"
MANAGER = ("manager@example.com", ("plan-manager",))
GATE = "ACTIVATE/gated"


def run_input(name: str) -> LifecycleInput:
    """A drill whose one ACTIVATE layer waits for a plan-manager's approval, then CLEANUP; started by an operator."""
    plan = make_plan({
        "ACTIVATE": [{"name": "gated", "approval": {"approvals": 1, "roles": ["plan-manager"]},
                      "resources": [wait_resource("switch", 1)]}],
        "CLEANUP": [{"name": "tidy", "resources": [wait_resource("tidy", 1)]}],
    }, name=name)
    return LifecycleInput(plan=plan, mode=Mode.DRILL, initiator=INITIATOR, token=token_for(INITIATOR, ["operator"]))


async def cli_json(worker: Any, *args: str) -> Any:
    code, out = await temporal(worker, *args, "-o", "json")
    assert code == 0, f"temporal {' '.join(args[:3])}: exit {code}: {out}"
    return json.loads(out)


async def start(worker: Any, folder: Path, workflow_id: str, input_: LifecycleInput, *metadata: str) -> None:
    # The input as someone writes it for the CLI: plain JSON, the plan in its file's camelCase.
    input_file = folder / f"{workflow_id}.json"
    input_file.write_text(json.dumps({"plan": input_.plan.model_dump(mode="json", by_alias=True), "mode": "drill",
                                      "initiator": input_.initiator, "token": input_.token}))
    code, out = await temporal(worker, "workflow", "start", "--type", WORKFLOW_TYPE, "--task-queue", worker.task_queue,
                               "--workflow-id", workflow_id, "--input-file", str(input_file), *metadata)
    assert code == 0, out


async def status(worker: Any, workflow_id: str) -> dict[str, Any]:
    answer = await cli_json(worker, "workflow", "query", "--workflow-id", workflow_id, "--name", "status")
    return answer["queryResult"][0]  # type: ignore[no-any-return]


async def status_when(worker: Any, workflow_id: str, what: str, condition: Any, timeout: float = 60) -> dict[str, Any]:
    # Generous: 4 suites' workers share 2 cores, and each look is a process of its own.
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition(state := await status(worker, workflow_id)):
        assert asyncio.get_running_loop().time() < deadline, f"{workflow_id}: no {what} in {timeout} s: {state}"
        await asyncio.sleep(0.3)
    return state


async def current_details(worker: Any, workflow_id: str) -> str:
    answer = await cli_json(worker, "workflow", "metadata", "--workflow-id", workflow_id)
    return answer["queryResult"][0]["currentDetails"]  # type: ignore[no-any-return]


async def approve(worker: Any, how: list[str], workflow_id: str, who: tuple[str, tuple[str, ...]],
                  reason: str) -> tuple[int, str]:
    return await temporal(worker, "workflow", *how, "--workflow-id", workflow_id, "--name", "approve",
                          "--input", payload(*who, reason, workflow_id))


async def completed(worker: Any, workflow_id: str) -> None:
    code, out = await temporal(worker, "workflow", "result", "--workflow-id", workflow_id, timeout=120)
    assert code == 0 and '"status":"COMPLETED"' in out, out


async def approved_by_update(worker: Any, workflow_id: str) -> None:
    # The initiator holds the right role, so what refuses her is four-eyes alone; the update fails, so does the CLI.
    code, out = await approve(worker, ["update", "execute"], workflow_id, (INITIATOR, ("plan-manager",)), "mine")
    assert code != 0 and "four-eyes" in out and "PermissionDenied" in out, out
    assert (await status(worker, workflow_id))["status"] == "AWAITING_APPROVAL"
    code, out = await approve(worker, ["update", "execute"], workflow_id, MANAGER, "change 4711")
    assert code == 0 and "accepted:true" in out and "status:RUNNING" in out, out
    await completed(worker, workflow_id)


async def approved_by_signal(worker: Any, workflow_id: str) -> None:
    # A signal is only delivered (exit 0 either way): its denial shows in the run's status and audit trail.
    code, out = await approve(worker, ["signal"], workflow_id, (INITIATOR, ("plan-manager",)), "mine")
    assert code == 0, out
    state = await status_when(worker, workflow_id, "denial", lambda s: s["denied_attempts"] == 1)
    assert state["status"] == "AWAITING_APPROVAL" and "four-eyes" in state["last_denial"], state
    code, out = await approve(worker, ["signal"], workflow_id, MANAGER, "change 4711")
    assert code == 0, out
    await completed(worker, workflow_id)
    auditor = json.dumps(token_for("auditor@example.com", ["auditor"]))  # the query's argument: a JSON string
    trail = await cli_json(worker, "workflow", "query", "--workflow-id", workflow_id, "--name", "audit",
                           "--input", auditor)
    assert [(e["action"], e["actor"], e["accepted"], e["via"]) for e in trail["queryResult"][0]] == [
        ("start-drill", INITIATOR, True, ""), ("approve", INITIATOR, False, "signal"),
        ("approve", MANAGER[0], True, "signal")]


def summaries(history: dict[str, Any], attributes: str) -> list[str]:
    """The summary of each event that has `attributes`, "" for none: `workflow show -o json` gives the payload."""
    found = []
    for event in history["events"]:
        if attributes in event:
            summary = event.get("userMetadata", {}).get("summary")
            found.append(json.loads(base64.b64decode(summary["data"])) if summary else "")
    return found


async def test_a_gated_drill_with_the_temporal_cli_alone(worker, tmp_path):
    name = f"cli-{uuid.uuid4().hex[:6]}"
    by_update, by_signal = f"dr-{name}-drill-update", f"dr-{name}-drill-signal"
    drill = run_input(name)
    # The first run as the README tells CLI users to start one: with the summary and details drctl would set.
    metadata = start_metadata(drill)
    await start(worker, tmp_path, by_update, drill, "--static-summary", metadata["static_summary"],
                "--static-details", metadata["static_details"])
    await start(worker, tmp_path, by_signal, drill)  # the second without: what the run sets itself must be there

    for workflow_id in (by_update, by_signal):
        state = await status_when(worker, workflow_id, "pending gate", lambda s: s["status"] == "AWAITING_APPROVAL")
        [gate] = state["gates"]
        assert (gate["id"], gate["decision"], gate["required"], gate["roles"]) == (GATE, None, 1, ["plan-manager"])
        assert state["initiator"] == INITIATOR and state["initiator_roles"] == ["operator"]
    details = await current_details(worker, by_signal)
    assert f"**drill of {name}** by {INITIATOR}: phase ACTIVATE" in details, details
    assert f"Waiting for approval of `{GATE}`: 1 approval(s) from plan-manager; 0 of 1 so far" in details, details

    await asyncio.gather(approved_by_update(worker, by_update), approved_by_signal(worker, by_signal))

    # Both found by the search attributes the runs keep; the memo is the run's own, also where the starter set none.
    query = f"DrPlan='{name}' AND DrStatus='COMPLETED'"
    deadline = asyncio.get_running_loop().time() + 30
    while len(listed := await cli_json(worker, "workflow", "list", "--query", query)) < 2:
        assert asyncio.get_running_loop().time() < deadline, f"{query}: {listed}"
        await asyncio.sleep(0.3)  # the list reads the visibility store, which follows the run a moment later
    assert sorted(run["execution"]["workflowId"] for run in listed) == sorted([by_signal, by_update])
    assert all(run["memo"]["fields"] == run_memo(drill) for run in listed), listed

    description = await worker.client.get_workflow_handle(by_update).describe()
    assert await description.static_summary() == f"drill of {name} by {INITIATOR}"
    assert f"`{name}` {drill.plan.digest()}" in (await description.static_details() or "")
    for workflow_id in (by_update, by_signal):
        details = await current_details(worker, workflow_id)
        assert details.startswith(f"**drill of {name}** by {INITIATOR}: **COMPLETED**, phases done: "), details
        assert details.endswith(f"drill of {name} completed"), details
    history = await cli_json(worker, "workflow", "show", "--workflow-id", by_signal)
    activities = summaries(history, "activityTaskScheduledEventAttributes")
    assert activities and all(activities), activities
    assert f"check plan {name} against the worker's modules and accounts" in activities
    timers = summaries(history, "timerStartedEventAttributes")
    assert all(timers), timers
    assert {"switch: wait 1 s", "tidy: wait 1 s", "ACTIVATE / gated / switch: layer timeout (3600 s)"} <= set(timers)
