"""Nothing secret in Temporal's history: runs of the real worker, their histories fetched through the API by a client
without the codec, searched byte for byte for the tokens, the ExternalId and the plan's account ids; and a key
rotation under a run that waits at a gate."""

from __future__ import annotations

import concurrent.futures
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle

from activities.core.aws import AwsClients
from contracts.lifecycle import WORKFLOW_TYPE, LifecycleInput, LifecycleResult, RunStatus
from contracts.run_metadata import start_metadata
from contracts.search_attributes import start_search_attributes
from plans.model import Mode
from tests.cli_helpers import drctl
from tests.conftest import APP_ACCOUNT, HUB_ACCOUNT
from tests.identity_helpers import session_keys_file, token_for
from tests.lifecycle_helpers import INITIATOR, control, finish, make_plan, send, start_run, status_of, \
    wait_resource, wait_until
from tests.payload_history import clear_payloads, key_ids, opened, payloads_in, raw_history, serialized
from workers.encryption import EncryptionCodec, KeyRing, UnknownKey, data_converter, local_entry, write_key_file
from workers.main import ACTIVITY_THREADS, build_worker


def secret_plan(name: str, external_id: str, *layers: dict[str, Any]) -> Any:
    """A plan with a second account reached with an ExternalId; its resources run in the hub account (the
    sandbox's own), so that only the plan itself carries the second account."""
    return make_plan({"ACTIVATE": list(layers)}, name=name, accounts={
        "hub": {"id": HUB_ACCOUNT},
        "data": {"id": APP_ACCOUNT, "roleName": "DrOrchestratorTarget", "externalId": {"value": external_id}},
    }, defaults={"account": "hub"})


async def start_as_drctl(client: Client, task_queue: str, plan: Any, token: str) -> WorkflowHandle[Any, Any]:
    """A run started as `drctl drill start` starts it: search attributes, memo, static summary and details (the
    details list the plan's accounts) besides the input."""
    run_input = LifecycleInput(plan=plan, mode=Mode.DRILL, initiator=INITIATOR, token=token)
    return await client.start_workflow(
        WORKFLOW_TYPE, run_input, id=f"dr-{plan.name}-drill-{uuid.uuid4().hex[:10]}", task_queue=task_queue,
        result_type=LifecycleResult, search_attributes=start_search_attributes(run_input), **start_metadata(run_input))


def is_patch_marker(event: HistoryEvent) -> bool:
    if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
        return False
    marker = event.marker_recorded_event_attributes
    return marker.marker_name == "core_patch" and all(
        set(json.loads(p.data)) == {"id", "deprecated"} for p in payloads_in(marker))


def missing_zone(zone: str) -> dict[str, Any]:
    return {"name": "missing-zone", "action": "route53.record",
            "parameters": {"zoneName": zone, "recordName": f"www.{zone}", "recoveryValue": "elsewhere.example.com"}}


async def test_finished_gated_and_failed_runs_hold_no_secret_in_clear(worker, sandbox):
    session_ring = KeyRing.load(session_keys_file())
    external_id = f"xid-{uuid.uuid4().hex}"
    zone = f"sealed-{uuid.uuid4().hex[:8]}.example.com"  # named by the failed run's failure message
    tokens = [token_for(INITIATOR, ("admin",)) for _ in range(3)]
    approval = control("approver@example.com", roles=("admin",))
    layer = {"name": "l", "resources": [wait_resource("w")]}

    done = await start_as_drctl(worker.client, worker.task_queue, secret_plan("sealed-done", external_id, layer),
                                tokens[0])
    gated = await start_as_drctl(worker.client, worker.task_queue, secret_plan(
        "sealed-gated", external_id, {**layer, "approval": {}}), tokens[1])
    failed = await start_as_drctl(worker.client, worker.task_queue, secret_plan(
        "sealed-failed", external_id, {"name": "dns", "resources": [missing_zone(zone)]}), tokens[2])
    await wait_until(gated, lambda s: s.pending_gate() is not None)
    assert (await send(gated, "approve", approval)).accepted
    assert (await finish(done)).status is RunStatus.COMPLETED
    assert (await finish(gated)).status is RunStatus.COMPLETED
    with pytest.raises(Exception):
        await failed.result()
    failure = (await status_of(failed)).error or ""
    assert zone in failure, failure

    for handle, secrets in ((done, [tokens[0]]), (gated, [tokens[1], approval.token]), (failed, [tokens[2], zone])):
        history = await raw_history(worker.client, handle.id)
        types = {e.event_type for e in history.events}
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED in types  # a whole run, activities and all
        started = history.events[0]
        assert started.workflow_execution_started_event_attributes.memo.fields and started.user_metadata.details
        needles = [*secrets, external_id, APP_ACCOUNT, HUB_ACCOUNT]
        stored = serialized(history)
        assert [n for n in needles if n.encode() in stored] == [], handle.id
        # The same history opened with the key ring holds every one of them: the search above can fail.
        readable = opened(history, session_ring)
        assert [n for n in needles if n.encode() not in readable] == [], handle.id
        # No payload in clear but the SDK's own patch markers (workflow.patched ids, written by its core, not by the
        # converter): every other one is sealed, with the session's writing key.
        ours = [e for e in history.events if not is_patch_marker(e)]
        assert [(EventType.Name(e.event_type), where) for e in ours for where in clear_payloads(e)] == []
        assert set().union(*(key_ids(e) for e in ours)) == {session_ring.write_key}
    gated_events = (await raw_history(worker.client, gated.id)).events
    assert any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED for e in gated_events)
    failed_events = (await raw_history(worker.client, failed.id)).events
    assert failed_events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    # The failure's message and stack trace are moved into its sealed attributes: the stored message says nothing.
    assert failed_events[-1].workflow_execution_failed_event_attributes.failure.message == "Encoded failure"


async def test_a_run_started_under_key_1_finishes_and_reads_after_key_2_becomes_the_writing_key(
        worker, sandbox, tmp_path: Path):
    keys = tmp_path / "payload-keys.json"
    write_key_file(keys, [local_entry("key-1")], "key-1")
    queue = f"rotation-{uuid.uuid4().hex[:8]}"

    def client_with(ring: KeyRing) -> Client:
        return Client(worker.client.service_client, namespace=worker.client.namespace,
                      data_converter=data_converter(ring))

    first = client_with(KeyRing.load(keys))
    plan = make_plan({"ACTIVATE": [{"name": "gated", "approval": {}, "resources": [wait_resource("w")]}]},
                     name="rotation")
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(first, queue, AwsClients(), executor):
            handle = await start_run(first, queue, plan)
            await wait_until(handle, lambda s: s.pending_gate() is not None)

        # The operator's rotation, as documented: a new writing key, the old one kept; then the worker restarts.
        code, out, err = await drctl("keys", "rotate", "--file", str(keys), env={})
        assert code == 0, err
        rotated = KeyRing.load(keys)
        new_key = rotated.write_key
        assert new_key != "key-1" and set(rotated.keys) == {"key-1", new_key}
        assert f"writing key {new_key} (local)" in out and "1 older key(s) kept" in out
        second = client_with(rotated)
        async with build_worker(second, queue, AwsClients(), executor):
            resumed = second.get_workflow_handle(handle.id, result_type=LifecycleResult)
            assert (await send(resumed, "approve", control("approver@example.com"))).accepted
            assert (await finish(resumed)).status is RunStatus.COMPLETED

    history = await raw_history(worker.client, handle.id)
    events = history.events
    readable = opened(history, rotated)  # old and new events alike: nothing fails to open
    assert b"rotation" in readable and b"approver@example.com" in readable
    approved_at = next(i for i, e in enumerate(events)
                       if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    before = set().union(*(key_ids(e) for e in events[:approved_at] if not is_patch_marker(e)))
    after = set().union(*(key_ids(e) for e in events[approved_at:] if not is_patch_marker(e)))
    assert before == {"key-1"} and after == {new_key}
    # A ring without the old key cannot read the run's start: the old key must stay while such runs exist.
    started = next(payloads_in(events[0]))
    without_old = KeyRing(new_key, {new_key: rotated.keys[new_key]})
    with pytest.raises(UnknownKey, match="'key-1'"):
        EncryptionCodec(without_old).open(started)
    assert json.loads(keys.read_text())["writeKey"] == new_key
