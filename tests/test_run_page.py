"""What the Temporal UI shows of a run, read through the server's API as the UI reads it: the static summary and
details the starter set, the memo, the current details the workflow keeps up to date (where it is, the gate it waits
for and who may open it), and a summary on every activity and timer instead of `dr.resource.start` or `1 (1h)`."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle

from contracts.lifecycle import WORKFLOW_TYPE, LifecycleInput, LifecycleResult, RunOptions, RunStatus
from contracts.run_metadata import start_metadata
from plans.model import Mode, Plan
from tests.conftest import APP_ACCOUNT
from tests.identity_helpers import token_for
from tests.lifecycle_helpers import INITIATOR, control, finish, send, summary_text, timer_summaries, wait_until
from tests.test_lifecycle_aws import Estate


@pytest.fixture
def estate(sandbox: Any) -> Estate:
    return Estate()


def _gated(plan: Plan) -> Plan:
    """The example plan with an approval gate before ACTIVATE's traffic layer, where the run is caught waiting."""
    data = plan.model_dump(by_alias=True, mode="json")
    traffic = next(layer for layer in data["phases"]["ACTIVATE"]["layers"] if layer["name"] == "traffic")
    traffic["approval"] = {"approvals": 1, "roles": ["recovery-manager"]}
    return Plan.model_validate(data)


async def _current_details(handle: WorkflowHandle[Any, Any]) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def _activity_summaries(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """(summary or "" for none) of every activity the run scheduled, in order."""
    return [await summary_text(e.user_metadata.summary) if e.user_metadata.HasField("summary") else ""
            async for e in handle.fetch_history_events() if e.HasField("activity_task_scheduled_event_attributes")]


async def test_the_run_page_explains_the_run(worker: Any, estate: Estate) -> None:
    plan = _gated(estate.plan(f"page-{uuid.uuid4().hex[:6]}"))
    run_input = LifecycleInput(plan=plan, mode=Mode.DRILL, initiator=INITIATOR, options=RunOptions(),
                               token=token_for(INITIATOR, ("admin",)))
    handle = await worker.client.start_workflow(
        WORKFLOW_TYPE, run_input, id=f"dr-{plan.name}-drill", task_queue=worker.task_queue,
        result_type=LifecycleResult, **start_metadata(run_input))

    # Waiting at the gate, the page says so, and who may open it.
    await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL)
    details = await _current_details(handle)
    assert f"**drill of {plan.name}** by {INITIATOR}: phase ACTIVATE" in details
    assert "AWAITING_APPROVAL" in details
    assert "Waiting for approval of `ACTIVATE/traffic`: 1 approval(s) from recovery-manager; 0 of 1 so far" in details
    assert "Layer" not in details, "nothing is at work while the gate waits"

    description = await handle.describe()
    assert await description.static_summary() == f"drill of {plan.name} by {INITIATOR}"
    static_details = await description.static_details() or ""
    assert f"`{plan.name}` {plan.digest()}" in static_details and "**Mode** drill" in static_details
    assert await description.memo_value("planHash") == plan.digest()
    assert await description.memo_value("plan") == plan.name

    await send(handle, "approve", control("manager@example.com", ("recovery-manager",), reason="go"))
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED

    details = await _current_details(handle)
    assert details.startswith(f"**drill of {plan.name}** by {INITIATOR}")
    assert "COMPLETED" in details and f"drill of {plan.name} completed" in details

    summaries = await _activity_summaries(handle)
    assert summaries and all(summaries), f"every activity has a summary: {summaries}"
    assert f"ACTIVATE / database / orders-db: rds.read_replica in {APP_ACCOUNT} us-west-2: start" in summaries
    assert f"ACTIVATE / traffic / app-dns: route53.record in {APP_ACCOUNT} us-west-2: start" in summaries
    assert f"check plan {plan.name} against the worker's modules and accounts" in summaries
    timers = await timer_summaries(handle)
    assert "ACTIVATE / database / orders-db: layer timeout (3600 s)" in timers
    assert "approval gate ACTIVATE/traffic times out" not in timers, "a gate without a timeout has no timer"
    assert all(timers)
