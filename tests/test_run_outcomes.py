"""Every way a run ends, as Temporal shows it: the result or failure, and the DrStatus search attribute the UI filters
by, agree with the run's own status. And a start input the run cannot use fails it at once, naming the field."""

from __future__ import annotations

import asyncio
import json
import os
import sysconfig
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError

from contracts.lifecycle import INVALID_INPUT, LifecycleResult, RunStatus
from tests.cli_helpers import cli_env, drctl
from tests.identity_helpers import token_for
from tests.lifecycle_helpers import control, make_plan, resource, send, start_run, status_of, wait_resource, wait_until

TEMPORAL = os.path.join(sysconfig.get_path("scripts"), "temporal")
DR_STATUS = SearchAttributeKey.for_keyword("DrStatus")
MISSING_ZONE = {"name": "missing-zone", "action": "route53.record",
                "parameters": {"zoneName": "no-such-zone.example.com", "recordName": "www.no-such-zone.example.com",
                               "recoveryValue": "elsewhere.example.com"}}


async def ended(handle: WorkflowHandle[Any, LifecycleResult]) -> tuple[RunStatus | str, str | None]:
    """How Temporal saw the run end (its result's status, or the failure's type) and its DrStatus."""
    try:
        outcome: RunStatus | str = (await handle.result()).status
    except WorkflowFailureError as exc:
        assert isinstance(exc.cause, ApplicationError), exc.cause
        outcome = exc.cause.type or ""
    return outcome, (await handle.describe()).typed_search_attributes.get(DR_STATUS)


def plan_of(name: str, *layers: dict[str, Any], **extra: Any) -> Any:
    return make_plan({"ACTIVATE": list(layers)}, name=name, **extra)


async def test_completed_partial_and_failed_runs(worker, sandbox):
    ok = await start_run(worker.client, worker.task_queue, plan_of("end-ok", {"name": "l",
                                                                              "resources": [wait_resource("w")]}))
    partial = await start_run(worker.client, worker.task_queue, plan_of(
        "end-partial", {"name": "tolerant", "continueOnError": True, "resources": [wait_resource("w"), MISSING_ZONE]}))
    failed = await start_run(worker.client, worker.task_queue, plan_of("end-failed", {"name": "dns",
                                                                                      "resources": [MISSING_ZONE]}))
    assert await ended(ok) == (RunStatus.COMPLETED, "COMPLETED")
    # Something failed within the plan's policy: PARTIAL everywhere, naming it; Temporal sees a completed workflow.
    assert await ended(partial) == (RunStatus.PARTIAL, "PARTIAL")
    result = await partial.result()
    error = resource(await status_of(partial), "ACTIVATE", "tolerant", "missing-zone").error
    assert result.failed_resources == [f"ACTIVATE/tolerant/missing-zone: {error}"]
    assert result.message.startswith("drill of end-partial partial: ACTIVATE/tolerant/missing-zone: "), result.message
    assert "no-such-zone" in result.message
    assert (await partial.describe()).status is WorkflowExecutionStatus.COMPLETED
    assert await ended(failed) == ("DrRunFailed", "FAILED")
    assert (await status_of(failed)).status is RunStatus.FAILED


async def test_rejected_runs(worker):
    plan = plan_of("end-denied", {"name": "l", "resources": [wait_resource("w")]})
    denied = await start_run(worker.client, worker.task_queue, plan, initiator="viewer@example.com",
                             roles=("read-only",))
    assert await ended(denied) == (RunStatus.REJECTED, "REJECTED")
    gated = await start_run(worker.client, worker.task_queue, plan_of(
        "end-rejected", {"name": "g", "approvalRequired": True, "resources": [wait_resource("w")]}))
    await wait_until(gated, lambda s: s.pending_gate() is not None)
    await send(gated, "reject", control("manager@example.com", reason="not today"))
    assert await ended(gated) == (RunStatus.REJECTED, "REJECTED")


async def test_cancelled_runs(worker):
    slow = plan_of("end-cancel", {"name": "slow", "resources": [wait_resource("long", 600)]})
    by_operator = await start_run(worker.client, worker.task_queue, slow)
    by_temporal = await start_run(worker.client, worker.task_queue, slow)
    for handle in (by_operator, by_temporal):
        await wait_until(handle, lambda s: s.current_phase is not None)
    await send(by_operator, "cancel", control(force=True))
    await by_temporal.cancel()
    assert await ended(by_operator) == (RunStatus.CANCELLED, "CANCELLED")
    with pytest.raises(WorkflowFailureError):
        await by_temporal.result()
    assert (await by_temporal.describe()).typed_search_attributes.get(DR_STATUS) == "CANCELLED"


async def test_a_worker_without_identity_configuration_fails_the_run_at_once(worker, monkeypatch):
    # The activity reads the environment when it runs; nothing else runs in this process meanwhile.
    monkeypatch.delenv("DR_AUTH_TRUST_FILE")
    handle = await start_run(worker.client, worker.task_queue, plan_of("end-no-idp", {
        "name": "l", "resources": [wait_resource("w")]}))
    outcome = await asyncio.wait_for(ended(handle), 30)
    assert outcome == ("DrRunFailed", "FAILED")
    state = await status_of(handle)
    assert state.status is RunStatus.FAILED and "no identity configuration" in (state.error or "")


def good_input() -> dict[str, Any]:
    plan = plan_of("bad-input", {"name": "l", "resources": [wait_resource("w")]})
    return {"plan": plan.model_dump(mode="json", by_alias=True), "mode": "drill", "initiator": "cli-user",
            "token": token_for("cli-user", ["operator"])}


@pytest.mark.parametrize(("change", "names"), [
    ({"mode": "yolo"}, "mode: Input should be 'drill'"),
    ({"plan": "plans/examples/web-app.yaml"}, "plan: Input should be an object"),
    ({"initiator": None}, "initiator: Field required"),
    (None, "(the whole input): Input should be an object"),
], ids=["mode-yolo", "plan-as-path", "no-initiator", "junk-1.5MB"])
async def test_input_the_run_cannot_use_fails_it_at_once(worker, tmp_path, change, names):
    """Started as an operator would, with `temporal workflow start`: the run fails in seconds, naming the field,
    where it used to retry its first workflow task for ever."""
    if change is None:
        run_input: Any = "x" * 1_500_000
    else:
        run_input = {k: v for k, v in {**good_input(), **change}.items() if v is not None}
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps(run_input))
    workflow_id = f"dr-bad-input-{uuid.uuid4().hex[:8]}"
    address = worker.client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        TEMPORAL, "workflow", "start", "--address", address, "--namespace", worker.client.namespace,
        "--task-queue", worker.task_queue, "--type", "DrLifecycleWorkflow", "--workflow-id", workflow_id,
        "--input-file", str(input_file), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode()
    handle = worker.client.get_workflow_handle(workflow_id, result_type=LifecycleResult)
    with pytest.raises(WorkflowFailureError) as raised:
        await asyncio.wait_for(handle.result(), 20)
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError) and (cause.type, cause.non_retryable) == (INVALID_INPUT, True)
    assert cause.message.startswith("the run's input: invalid input: ") and names in cause.message, cause.message
    assert len(cause.message) < 3000
    assert (await handle.describe()).typed_search_attributes.get(DR_STATUS) == "FAILED"
    # What a person asking the run gets: the reason, in words. A query's refusal reaches its caller as the server's
    # plain text, which no codec opens, so it must not be sealed as `Encoded failure` like the stored failures.
    code, out, err = await drctl("drill", "status", workflow_id, env=cli_env(worker))
    assert code == 1 and "this run never started: the run's input: invalid input" in err and names in err, err
    assert "Encoded failure" not in err and "Traceback" not in err
