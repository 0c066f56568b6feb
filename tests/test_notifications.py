"""Notifications through the plan's SNS topic, read back from an SQS queue subscribed to it on the sandbox."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3

from plans.model import Mode
from tests.lifecycle_helpers import control, make_plan, send, start_run, status_of, wait_resource, wait_until
from contracts.lifecycle import RunStatus

REGION = "us-east-1"


def topic_with_queue() -> tuple[str, Any, str]:
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name=f"dr-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"dr-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, sqs, queue_url


def received(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    messages = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        messages += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
    return messages


def event_of(message: dict[str, Any]) -> str:
    return message["MessageAttributes"]["event"]["Value"]


async def test_approval_needed_paused_and_completed_reach_the_topic(worker):
    topic, sqs, queue = topic_with_queue()
    plan = make_plan({"ACTIVATE": [{"name": "gated", "approvalRequired": True,
                                    "resources": [wait_resource("work", 1)]}]}, name="notify-ok",
                     notifications={"topicArn": topic})
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED)
    await wait_until(handle, lambda s: s.pending_gate() is not None and bool(s.notifications)
                     and s.notifications[0].message_id is not None)
    [needed] = received(sqs, queue)
    assert event_of(needed) == "approval-needed" and needed["Subject"] == "Approval needed: notify-ok ACTIVATE/gated"
    # The instructions name the run and the plan's hash: an approval so sent is bound to both.
    digest = plan.digest()
    assert f"Plan notify-ok {digest}: approve only the plan you reviewed" in needed["Message"]
    assert f"drctl drill approve {handle.id} --gate 'ACTIVATE/gated' --plan-hash {digest}" in needed["Message"]
    update_input = json.dumps({"run": handle.id, "gate": "ACTIVATE/gated", "plan_hash": digest,
                               "token": "<your token>", "reason": "<why>"})
    assert (f"temporal workflow update execute --workflow-id {handle.id} --name approve --input "
            f"'{update_input}'") in needed["Message"]
    assert (f"temporal workflow signal --workflow-id {handle.id} --name approve --input "
            f"'{update_input}'") in needed["Message"]
    assert "tester@example.com" in needed["Message"]  # the initiator, who cannot approve

    await send(handle, "pause", control("ops@example.com", reason="checking DNS"))
    await send(handle, "approve", control("boss@example.com", roles=("recovery-manager",)))
    await send(handle, "resume", control("ops@example.com"))
    assert (await handle.result()).status is RunStatus.COMPLETED
    messages = received(sqs, queue)
    assert [event_of(m) for m in messages] == ["paused", "completed"]
    assert "paused by ops@example.com: checking DNS" in messages[0]["Message"]
    assert f"of plan notify-ok {digest})" in messages[0]["Message"]
    assert messages[1]["Subject"] == "COMPLETED: planned of notify-ok"
    assert f"planned of plan notify-ok {digest}, started by" in messages[1]["Message"]
    assert "ACTIVATE SUCCEEDED" in messages[1]["Message"]
    state = await status_of(handle)
    assert [(n.event, bool(n.message_id), n.error) for n in state.notifications] == [
        ("approval-needed", True, None), ("paused", True, None), ("completed", True, None)]


async def test_a_failed_run_is_announced_with_what_failed(worker):
    topic, sqs, queue = topic_with_queue()
    plan = make_plan({"ACTIVATE": [{"name": "broken", "resources": [
        {"name": "no-such-record", "action": "route53.record",
         "parameters": {"zoneName": "nowhere.example.com", "recordName": "www.nowhere.example.com",
                        "recoveryValue": "x.example.com"}}]}]},
        name="notify-fail", notifications={"topicArn": topic, "events": ["failed"]})
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED)
    # The outcome is announced after the run's state says it ended: wait for the notification itself.
    await wait_until(handle, lambda s: any(n.message_id for n in s.notifications), timeout=60)
    [failed] = received(sqs, queue)
    assert event_of(failed) == "failed" and failed["Subject"] == "FAILED: planned of notify-fail"
    assert "Failed: ACTIVATE/broken/no-such-record" in failed["Message"]


async def test_an_undeliverable_notification_never_stops_the_run(worker):
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("w", 1)]}]}, name="notify-gone",
                     notifications={"topicArn": "arn:aws:sns:us-east-1:123456789012:no-such-topic"})
    handle = await start_run(worker.client, worker.task_queue, plan)
    assert (await handle.result()).status is RunStatus.COMPLETED
    [record] = (await status_of(handle)).notifications
    assert record.event == "completed" and record.message_id is None and "NotFound" in (record.error or "")


async def test_a_partial_run_is_announced_as_partial_naming_what_failed(worker, sandbox):
    """A plan that lists only "completed" (as plans did before "partial" existed) still hears of a PARTIAL run."""
    topic, sqs, queue = topic_with_queue()
    plan = make_plan({"ACTIVATE": [{"name": "tolerant", "continueOnError": True, "resources": [
        wait_resource("work", 1),
        {"name": "no-such-record", "action": "route53.record",
         "parameters": {"zoneName": "nowhere.example.com", "recordName": "www.nowhere.example.com",
                        "recoveryValue": "x.example.com"}}]}]},
        name="notify-partial", notifications={"topicArn": topic, "events": ["completed"]})
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED)
    assert (await handle.result()).status is RunStatus.PARTIAL
    await wait_until(handle, lambda s: any(n.message_id for n in s.notifications), timeout=60)
    [partial] = received(sqs, queue)
    assert event_of(partial) == "partial" and partial["Subject"] == "PARTIAL: planned of notify-partial"
    assert "ended PARTIAL (every phase ran; some steps failed within the plan's policy)" in partial["Message"]
    assert "planned of notify-partial partial: ACTIVATE/tolerant/no-such-record: " in partial["Message"]
    assert "Failed within policy: ACTIVATE/tolerant/no-such-record" in partial["Message"]
    assert "ACTIVATE PARTIAL" in partial["Message"]
