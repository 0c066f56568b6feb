"""A start input the run cannot use fails it at once, naming the field, with DrStatus FAILED."""

from __future__ import annotations

import asyncio
import json
import os
import sysconfig
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError

from contracts.lifecycle import INVALID_INPUT, LifecycleResult
from tests.identity_helpers import token_for
from tests.lifecycle_helpers import make_plan, wait_resource

TEMPORAL = os.path.join(sysconfig.get_path("scripts"), "temporal")
DR_STATUS = SearchAttributeKey.for_keyword("DrStatus")


def plan_of(name: str, *layers: dict[str, Any], **extra: Any) -> Any:
    return make_plan({"ACTIVATE": list(layers)}, name=name, **extra)


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
