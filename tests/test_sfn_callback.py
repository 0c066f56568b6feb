"""The Step Functions callback against a real state machine in the sandbox: a Task state sends its token to an SQS
queue (`sqs:sendMessage.waitForTaskToken`) and waits; the test reads the token, starts a run with it, and checks how
the execution ended."""

from __future__ import annotations

import asyncio
import json
import os
import sysconfig
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Replayer

from activities.core.aws import AwsClients
from activities.callback import CallbackActivities
from tests.identity_helpers import token_for, session_converter
from tests.conftest import APP_ACCOUNT, HUB_ACCOUNT, TEST_TASK_QUEUE, account_session
from tests.lifecycle_helpers import (
    control,
    finish,
    make_plan,
    resource,
    send,
    start_run,
    status_of,
    wait_resource,
    wait_until,
)
from workers.main import workflow_runner
from contracts.callback import (
    CALLBACK_SEND,
    CAUSE_MAX,
    OUTPUT_MAX_BYTES,
    CallbackReply,
    CallbackOptions,
    CallbackRequest,
    CallbackStatus,
    clip,
    failure_error,
    fit_json,
    token_hint,
    utf8_len,
)
from workflows.lifecycle import DrLifecycleWorkflow
from contracts.lifecycle import LifecycleState, RunOptions, RunStatus, StepStatus

REGION = "us-east-1"
MISSING_ZONE = {"name": "missing-zone", "action": "route53.record",
                "parameters": {"zoneName": "no-such-zone.example.com", "recordName": "www.no-such-zone.example.com",
                               "recoveryValue": "elsewhere.example.com"}}


class Caller:
    """A state machine that hands its task token to an SQS queue and waits for the answer."""

    def __init__(self, task: dict[str, Any] | None = None, session: boto3.Session | None = None) -> None:
        # moto's state machines send their SQS messages with the default account's credentials, so the queue is
        # the hub's whichever account the state machine is in.
        self.sfn = (session or boto3).client("stepfunctions", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        name = f"dr-caller-{uuid.uuid4().hex[:8]}"
        self.queue = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        definition = {"StartAt": "RunDr", "States": {"RunDr": {
            "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl": self.queue,
                           "MessageBody": {"taskToken.$": "$$.Task.Token", "plan.$": "$.plan"}},
            "End": True, **(task or {})}}}
        self.machine = self.sfn.create_state_machine(
            name=name, definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{APP_ACCOUNT if session else HUB_ACCOUNT}:role/dr-caller")["stateMachineArn"]
        self.execution = ""

    async def start(self, plan: str = "test-plan") -> str:
        """Start an execution; the token it hands out."""
        self.execution = self.sfn.start_execution(stateMachineArn=self.machine,
                                                  input=json.dumps({"plan": plan}))["executionArn"]
        for _ in range(100):
            messages = self.sqs.receive_message(QueueUrl=self.queue, WaitTimeSeconds=0).get("Messages", [])
            if messages:
                body = json.loads(messages[0]["Body"])
                assert body["plan"] == plan
                return body["taskToken"]
            await asyncio.sleep(0.1)
        raise AssertionError("the state machine never sent its task token")

    async def ended(self, timeout: float = 30) -> dict[str, Any]:
        for _ in range(int(timeout * 10)):
            described = self.sfn.describe_execution(executionArn=self.execution)
            if described["status"] != "RUNNING":
                return described
            await asyncio.sleep(0.1)
        raise AssertionError(f"execution {self.execution} still RUNNING after {timeout} s")

    def failure(self) -> dict[str, Any]:
        events = self.sfn.get_execution_history(executionArn=self.execution)["events"]
        return next(e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed")


def callback(token: str, **fields: Any) -> RunOptions:
    return RunOptions(callback=CallbackOptions(task_token=token, region=REGION, **fields))


async def test_completed_run_answers_success_with_a_summary(worker):
    caller = Caller()
    token = await caller.start("sfn-ok")
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("w", 1)]}]}, name="sfn-ok")
    handle = await start_run(worker.client, worker.task_queue, plan, options=callback(token))
    result = await finish(handle)

    execution = await caller.ended()
    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert output["workflowId"] == handle.id and output["status"] == "COMPLETED" and output["plan"] == "sfn-ok"
    assert output["resources"] == {"SUCCEEDED": 1} and output["failedResources"] == []
    assert "ACTIVATE" in output["phaseDurationsSeconds"]
    state = await status_of(handle)
    assert result.status is RunStatus.COMPLETED
    assert state.callback.status is CallbackStatus.DELIVERED and state.callback.outcome == "success"
    # The token is a bearer secret: the status query shows only its hint.
    assert state.callback.token == token_hint(token)
    assert token not in state.model_dump_json()


async def test_failed_run_answers_failure_with_error_and_cause(worker, sandbox):
    caller = Caller()
    token = await caller.start("sfn-fail")
    plan = make_plan({"ACTIVATE": [{"name": "dns", "resources": [MISSING_ZONE]}]}, name="sfn-fail")
    handle = await start_run(worker.client, worker.task_queue, plan, options=callback(token))
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    assert (await caller.ended())["status"] == "FAILED"
    failed = caller.failure()
    assert failed["error"] == "DrRunFailed"
    cause = json.loads(failed["cause"])
    assert cause["status"] == "FAILED" and cause["workflowId"] == handle.id
    assert "missing-zone" in cause["failedResources"][0] and "no-such-zone" in cause["message"]
    state = await status_of(handle)
    assert state.callback.status is CallbackStatus.DELIVERED
    assert (state.callback.outcome, state.callback.error) == ("failure", "DrRunFailed")


async def test_partial_run_answers_success_with_status_partial(worker, sandbox):
    """Failures within the plan's policy: the Task succeeds (the plan accepted this outcome), and its output says
    PARTIAL and what failed, so a Choice state can branch on it."""
    caller = Caller()
    token = await caller.start("sfn-partial")
    plan = make_plan({"ACTIVATE": [{"name": "tolerant", "continueOnError": True,
                                    "resources": [wait_resource("w", 1), MISSING_ZONE]}]}, name="sfn-partial")
    handle = await start_run(worker.client, worker.task_queue, plan, options=callback(token))
    assert (await finish(handle)).status is RunStatus.PARTIAL

    execution = await caller.ended()
    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert output["status"] == "PARTIAL" and output["resources"] == {"SUCCEEDED": 1, "FAILED": 1}
    assert output["message"].startswith("drill of sfn-partial partial: ACTIVATE/tolerant/missing-zone: ")
    assert len(output["failedResources"]) == 1 and "missing-zone" in output["failedResources"][0]
    assert output["partialResources"] == []
    state = await status_of(handle)
    assert state.callback.status is CallbackStatus.DELIVERED and state.callback.outcome == "success"


async def test_a_plan_account_answers_through_its_role(worker):
    """The state machine lives in the application account: the answer goes with that account's role."""
    caller = Caller(session=account_session(APP_ACCOUNT))
    token = await caller.start("sfn-app")
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("w", 2)]}]}, name="sfn-app",
                     accounts={"hub": {"id": HUB_ACCOUNT}, "app": {"id": APP_ACCOUNT, "roleName": "dr-orchestrator"}},
                     defaults={"account": "hub"})
    handle = await start_run(worker.client, worker.task_queue, plan,
                             options=callback(token, account="app", heartbeat_seconds=1))
    await finish(handle)
    # Executions are per account: only a call signed for the application account can find this token.
    assert caller.execution.split(":")[4] == APP_ACCOUNT
    assert (await caller.ended())["status"] == "SUCCEEDED"
    state = await status_of(handle)
    assert state.callback.status is CallbackStatus.DELIVERED and state.callback.account == "app"
    assert state.callback.heartbeats >= 1


async def test_heartbeats_keep_the_waiting_task_alive_while_a_wait_step_runs(worker):
    # Without a heartbeat every 3 s the task times out; the run's 6 s wait would lose its caller.
    caller = Caller({"HeartbeatSeconds": 3})
    token = await caller.start("sfn-heartbeat")
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("slow", 6)]}]}, name="sfn-heartbeat")
    handle = await start_run(worker.client, worker.task_queue, plan, options=callback(token, heartbeat_seconds=1))
    running = await wait_until(handle, lambda s: s.callback is not None and s.callback.heartbeats >= 2)
    assert running.status is RunStatus.RUNNING  # sent while the wait step was still in progress
    await finish(handle)

    assert (await caller.ended())["status"] == "SUCCEEDED"
    state = await status_of(handle)
    assert state.callback.heartbeats >= 4 and state.callback.status is CallbackStatus.DELIVERED
    # The heartbeat loop (timers, local activities, cancelled at the end) replays deterministically.
    history = await handle.fetch_history()
    replayed = await Replayer(workflows=[DrLifecycleWorkflow], data_converter=session_converter(),
                        workflow_runner=workflow_runner()).replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
    # ~6 events per heartbeat: the cost the docs promise.
    assert len(history.events) < 60 + 8 * state.callback.heartbeats


async def test_caller_gone_is_recorded_and_the_run_still_completes(worker):
    caller = Caller({"TimeoutSeconds": 2})
    token = await caller.start("sfn-gone")
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("slow", 4)]}]}, name="sfn-gone")
    handle = await start_run(worker.client, worker.task_queue, plan, options=callback(token, heartbeat_seconds=1))

    execution = await caller.ended()
    assert execution["status"] == "FAILED"  # States.Timeout: the caller gave up on us
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED
    state = await status_of(handle)
    assert state.callback.status is CallbackStatus.CALLER_GONE
    assert state.callback.detail.startswith("heartbeat: InvalidToken")
    assert state.callback.outcome is None  # nothing more was sent once Step Functions said so


async def test_an_unknown_token_at_the_end_is_caller_gone_not_a_failed_run(worker):
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("w", 1)]}]}, name="sfn-unknown")
    handle = await start_run(worker.client, worker.task_queue, plan, options=callback("not-a-real-token"))
    assert (await finish(handle)).status is RunStatus.COMPLETED
    state = await status_of(handle)
    assert state.callback.status is CallbackStatus.CALLER_GONE and state.callback.outcome == "success"
    assert state.callback.detail.startswith("InvalidToken")


async def test_cancel_through_temporal_answers_failure(worker):
    caller = Caller()
    token = await caller.start("sfn-cancel")
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("long", 8)]}]}, name="sfn-cancel")
    # Heartbeating too: the loop must stop cleanly although the run's own task was cancelled.
    handle = await start_run(worker.client, worker.task_queue, plan, options=callback(token, heartbeat_seconds=1))
    await wait_until(handle, lambda s: resource(s, "ACTIVATE", "l", "long").status is StepStatus.RUNNING)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    assert (await caller.ended())["status"] == "FAILED"
    failed = caller.failure()
    assert failed["error"] == "DrRunCancelled"
    assert json.loads(failed["cause"])["status"] == "CANCELLED"


async def test_rejected_gate_answers_failure(worker):
    caller = Caller()
    token = await caller.start("sfn-reject")
    plan = make_plan({"ACTIVATE": [{"name": "switch", "approvalRequired": True, "resources": [wait_resource("s")]}]},
                     name="sfn-reject")
    handle = await start_run(worker.client, worker.task_queue, plan, options=callback(token))
    await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL)
    await send(handle, "reject", control(reason="not tonight"))
    assert (await finish(handle)).status is RunStatus.REJECTED

    assert (await caller.ended())["status"] == "FAILED"
    failed = caller.failure()
    assert failed["error"] == "DrRunRejected" and "not tonight" in json.loads(failed["cause"])["message"]


async def test_a_retried_final_send_finds_the_task_closed(worker):
    """A worker that dies after Step Functions took the answer: the retry must not count as a failure."""
    caller = Caller()
    token = await caller.start("sfn-retry")
    activities = CallbackActivities(AwsClients())
    request = CallbackRequest(kind="success", options=CallbackOptions(task_token=token, region=REGION),
                              output=json.dumps({"status": "COMPLETED"}))
    first = ActivityEnvironment().run(activities.send, request)
    assert first.accepted
    assert (await caller.ended())["status"] == "SUCCEEDED"
    again = ActivityEnvironment().run(activities.send, request)
    # AWS answers TaskTimedOut for a closed task; moto's parser says InvalidToken. Either is "gone", not an error.
    assert not again.accepted and again.code in ("TaskTimedOut", "InvalidToken")
    assert token not in repr(request)


async def test_a_worker_lost_after_delivering_does_not_answer_twice(worker, temporal_env):
    """The final send reaches Step Functions, then its worker dies before reporting: Temporal retries the same
    activity, which finds the task closed. The run records CLOSED and the caller saw exactly one answer."""
    import concurrent.futures

    from temporalio import activity
    from temporalio.worker import Worker

    from activities.core.runtime import DrActivities

    real = CallbackActivities(worker.aws)
    calls: list[tuple[str, int]] = []

    @activity.defn(name=CALLBACK_SEND)
    def flaky_send(request: CallbackRequest) -> CallbackReply:
        reply = real.send(request)
        calls.append((request.kind, activity.info().attempt))
        if request.kind != "heartbeat" and activity.info().attempt == 1:
            raise RuntimeError("worker lost before it could report")  # retryable, like a crash after the call
        return reply

    caller = Caller()
    token = await caller.start("sfn-crash")
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("w", 1)]}]}, name="sfn-crash")
    queue = f"sfn-crash-{uuid.uuid4().hex[:6]}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(temporal_env.client, task_queue=queue, workflows=[DrLifecycleWorkflow],
                          activities=[*DrActivities(worker.aws).all(), flaky_send], activity_executor=executor,
                          workflow_runner=workflow_runner()):
            handle = await start_run(worker.client, queue, plan, options=callback(token))
            assert (await finish(handle)).status is RunStatus.COMPLETED
            state = await status_of(handle)

    assert calls == [("success", 1), ("success", 2)]
    assert (await caller.ended())["status"] == "SUCCEEDED"
    assert state.callback.status is CallbackStatus.CLOSED and state.callback.outcome == "success"


def test_what_is_sent_fits_the_service_limits():
    huge = {"status": "FAILED", "message": "x" * 100, "failedResources": [f"ACTIVATE/l/r{i}: " + "e" * 500
                                                                          for i in range(500)]}
    cause = fit_json(huge, CAUSE_MAX)
    assert utf8_len(cause) <= CAUSE_MAX
    parsed = json.loads(cause)  # still JSON the state machine can parse
    assert parsed["failedResourcesOmitted"] + len(parsed["failedResources"]) == 500
    partial = {"status": "PARTIAL", "failedResources": ["ACTIVATE/l/r: boom"],
               "partialResources": [f"ACTIVATE/drs/s{i}: wave w: " + "e" * 900 for i in range(400)]}
    parsed = json.loads(fit_json(partial, OUTPUT_MAX_BYTES))
    assert parsed["failedResources"] == ["ACTIVATE/l/r: boom"] and "failedResourcesOmitted" not in parsed
    assert 0 < len(parsed["partialResources"]) < 400
    assert parsed["partialResourcesOmitted"] + len(parsed["partialResources"]) == 400
    assert utf8_len(clip("é" * 300, 256)) <= 256 and clip("short", 256) == "short"
    assert failure_error("CANCELLED") == "DrRunCancelled"
    assert "secret" not in repr(CallbackOptions(task_token="secret"))


# ---- drctl ------------------------------------------------------------------------------------------------------

DRCTL = os.path.join(sysconfig.get_path("scripts"), "drctl")

PLAN = """\
name: sfn-cli
accounts: {hub: {id: "123456789012"}}
regions: {primary: us-east-1, recovery: us-west-2}
phases:
  ACTIVATE:
    layers:
      - name: only
        resources:
          - {name: pause, action: control.wait, parameters: {seconds: 3}}
"""


async def test_drill_start_passes_the_task_token_through(worker, temporal_env, tmp_path: Path):
    caller = Caller()
    token = await caller.start("sfn-cli")
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    env = {**os.environ, "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
           "TEMPORAL_TASK_QUEUE": TEST_TASK_QUEUE, "DRCTL_TASK_TOKEN": token,
           "DRCTL_TOKEN": token_for("sfn-caller@example.com", ["operator"])}
    process = await asyncio.create_subprocess_exec(
        DRCTL, "drill", "start", str(plan), "--wait", "--heartbeat-seconds", "1", "--callback-region", REGION,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert token not in out.decode() + err.decode()

    execution = await caller.ended()
    assert execution["status"] == "SUCCEEDED"
    workflow_id = out.decode().splitlines()[0]
    assert json.loads(execution["output"])["workflowId"] == workflow_id
    state = await worker.client.get_workflow_handle(workflow_id).query("status", result_type=LifecycleState)
    assert state.callback.region == REGION and state.callback.heartbeats >= 1


async def test_drill_start_refuses_callback_options_without_a_token(tmp_path: Path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    env = {**{k: v for k, v in os.environ.items() if k != "DRCTL_TASK_TOKEN"},
           "DRCTL_TOKEN": token_for("sfn-caller@example.com", ["operator"])}
    process = await asyncio.create_subprocess_exec(
        DRCTL, "drill", "start", str(plan), "--heartbeat-seconds", "5", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2 and "need --task-token" in err.decode()
