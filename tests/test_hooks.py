"""Hooks: SSM Automation and Lambda before/after a layer or a DRS wave, on the sandbox and the Temporal dev server."""

from __future__ import annotations

import io
import json
import time
import zipfile
from typing import Any

import boto3
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from activities import hooks as hook_modules
from drctl.progress import ProgressPrinter
from tests.identity_helpers import session_converter
from tests.plan_loading import load_plan_text
from plans.model import Mode, Phase
from tests.aws_helpers import drive, make_ctx, unique
from tests.conftest import APP_ACCOUNT, HUB_ACCOUNT, account_session
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
from workflows.lifecycle import DrLifecycleWorkflow
from contracts.lifecycle import RunStatus, StepStatus

REGION = "us-west-2"

GREETING_DOC = {  # sleeps, then a script whose declared output the sandbox reads from its InputPayload
    "schemaVersion": "0.3",
    "parameters": {"Who": {"type": "String"}, "Mode": {"type": "String", "default": "unknown"}},
    "mainSteps": [
        {"name": "settle", "action": "aws:sleep", "inputs": {"Duration": "PT1S"}},
        {"name": "greet", "action": "aws:executeScript",
         "inputs": {"Runtime": "python3.11", "Handler": "handler", "Script": "def handler(e, c): return e",
                    "InputPayload": {"greeting": "hello {{ Who }} ({{ Mode }})"}},
         "outputs": [{"Name": "Greeting", "Selector": "$.Payload.greeting", "Type": "String"}]},
    ],
    "outputs": ["greet.Greeting"],
}
FAILING_DOC = {"schemaVersion": "0.3", "mainSteps": [
    {"name": "read", "action": "aws:executeAwsApi",
     "inputs": {"Service": "ssm", "Api": "GetParameter", "Name": "/dr/hooks/no-such-parameter"}}]}
PAUSED_DOC = {"schemaVersion": "0.3", "mainSteps": [{"name": "hold", "action": "aws:pause", "inputs": {}}]}

HANDLER = '''
import json, os, time
def handler(event, context):
    print("event", json.dumps(event))
    if event.get("fail"):
        raise RuntimeError("the application refused: " + event["fail"])
    time.sleep(event.get("sleep", 0))
    return {"checked": event.get("check"), "function": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
            "context": event["drContext"]}
'''


def _session(account: str) -> boto3.Session:
    return boto3.Session() if account == HUB_ACCOUNT else account_session(account)


def automation_document(content: dict[str, Any], account: str = HUB_ACCOUNT) -> str:
    name = unique("dr-hook")
    _session(account).client("ssm", region_name=REGION).create_document(
        Name=name, Content=json.dumps(content), DocumentType="Automation")
    return name


def lambda_function(account: str = HUB_ACCOUNT, timeout: int = 10) -> str:
    session, name = _session(account), unique("dr-hook-fn")
    iam = session.client("iam")
    try:
        iam.create_role(RoleName="dr-hook-lambda", AssumeRolePolicyDocument="{}")
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", HANDLER)
    session.client("lambda", region_name=REGION).create_function(
        FunctionName=name, Runtime="python3.11", Handler="app.handler", Timeout=timeout,
        Code={"ZipFile": code.getvalue()}, Role=f"arn:aws:iam::{account}:role/dr-hook-lambda")
    return name


def automation(execution_id: str, account: str = HUB_ACCOUNT) -> dict[str, Any]:
    client = _session(account).client("ssm", region_name=REGION)
    return client.get_automation_execution(AutomationExecutionId=execution_id)["AutomationExecution"]


# ---- the modules ------------------------------------------------------------------------------------------------

def test_an_automation_runs_once_per_execution_and_reports_its_outputs(sandbox):
    document = automation_document(GREETING_DOC, APP_ACCOUNT)
    params = {"documentName": document, "parameters": {"Who": "ops", "Mode": "${dr.mode}"}, "timeoutSeconds": 60}
    ctx, p = make_ctx(hook_modules.SsmAutomationHook(), params, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    steps = drive(hook_modules.SsmAutomationHook(), ctx, p, max_polls=400)
    assert [s.done for s in steps][-1] and not steps[0].done  # it took a while, in steps
    final = steps[-1].outputs
    assert final["status"] == "Success" and final["outputs"] == {"greet.Greeting": ["hello ops (drill)"]}
    assert final["steps"] == {"settle": "Success", "greet": "Success"}
    found = automation(final["automationExecutionId"], APP_ACCOUNT)
    assert found["AutomationExecutionStatus"] == "Success" and found["Parameters"]["Mode"] == ["drill"]
    # A retried start (say after a crash before its answer was recorded) finds the same execution.
    again = hook_modules.SsmAutomationHook().start(ctx, p)
    assert again.done and again.outputs["automationExecutionId"] == final["automationExecutionId"]
    listed = _session(APP_ACCOUNT).client("ssm", region_name=REGION).describe_automation_executions(
        Filters=[{"Key": "DocumentNamePrefix", "Values": [document]}])["AutomationExecutionMetadataList"]
    assert len(listed) == 1
    status = hook_modules.SsmAutomationHook().status(ctx, p)
    assert status["documentStatus"] == "Active" and status["recent"][0]["status"] == "Success"


def test_a_failed_step_fails_the_hook_and_a_missing_document_is_named(sandbox):
    failing = automation_document(FAILING_DOC, APP_ACCOUNT)
    ctx, p = make_ctx(hook_modules.SsmAutomationHook(), {"documentName": failing}, mode=Mode.PLANNED,
                      phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as failed:
        drive(hook_modules.SsmAutomationHook(), ctx, p, max_polls=400)
    assert failed.value.non_retryable and failed.value.type == "HookFailed"
    assert "ParameterNotFound" in failed.value.message and "Failed" in failed.value.message
    ctx, p = make_ctx(hook_modules.SsmAutomationHook(), {"documentName": "no-such-runbook"}, mode=Mode.DRILL,
                      phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as missing:
        hook_modules.SsmAutomationHook().start(ctx, p)
    assert missing.value.non_retryable and "no-such-runbook" in missing.value.message
    assert missing.value.type == "AutomationDefinitionNotFoundException"


def test_an_automation_past_its_timeout_is_stopped(sandbox):
    document = automation_document(PAUSED_DOC, APP_ACCOUNT)
    ctx, p = make_ctx(hook_modules.SsmAutomationHook(), {"documentName": document, "timeoutSeconds": 1},
                      mode=Mode.DRILL, phase=Phase.ACTIVATE)
    first = hook_modules.SsmAutomationHook().start(ctx, p)
    assert not first.done and "Waiting" in first.message
    with pytest.raises(ApplicationError) as timed_out:
        drive(hook_modules.SsmAutomationHook(), ctx, p, max_polls=1000)
    assert timed_out.value.type == "HookTimeout" and timed_out.value.non_retryable
    assert automation(first.handle["automationExecutionId"], APP_ACCOUNT)["AutomationExecutionStatus"] == "Cancelled"


def test_a_lambda_hook_gets_the_run_in_its_event_and_answers_into_the_outputs(sandbox):
    function = lambda_function(APP_ACCOUNT)
    params = {"functionName": function, "payload": {"check": "${dr.phase} of ${dr.plan}"}, "timeoutSeconds": 30}
    ctx, p = make_ctx(hook_modules.LambdaHook(), params, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    first = hook_modules.LambdaHook().start(ctx, p)
    assert first.done and first.outputs["statusCode"] == 200
    payload = first.outputs["payload"]
    assert payload["checked"] == "ACTIVATE of test-plan" and payload["function"] == function
    assert payload["context"]["executionId"] == ctx.call.execution_id and payload["context"]["drill"] is True
    assert "START RequestId" in first.outputs["logTail"]
    # AWS cannot deduplicate an invoke: a retry carries the same invocation id, for the function to check.
    second = hook_modules.LambdaHook().start(ctx, p)
    assert second.outputs["payload"]["context"]["invocationId"] == payload["context"]["invocationId"]


def test_a_lambda_error_or_timeout_fails_the_hook_and_a_missing_function_is_named(sandbox):
    function = lambda_function(APP_ACCOUNT, timeout=10)
    module = hook_modules.LambdaHook()
    ctx, p = make_ctx(module, {"functionName": function, "payload": {"fail": "maintenance"}}, mode=Mode.PLANNED,
                      phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as failed:
        module.start(ctx, p)
    assert failed.value.type == "HookFailed" and "the application refused: maintenance" in failed.value.message
    assert failed.value.details[0]["outputs"]["payload"]["errorType"] == "RuntimeError"
    ctx, p = make_ctx(module, {"functionName": function, "payload": {"sleep": 4}, "timeoutSeconds": 1},
                      mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as timed_out:
        module.start(ctx, p)
    assert timed_out.value.type == "HookTimeout" and timed_out.value.non_retryable
    ctx, p = make_ctx(module, {"functionName": "no-such-function"}, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as missing:
        module.start(ctx, p)
    assert missing.value.non_retryable and "no-such-function" in missing.value.message


def test_the_sandbox_runs_aws_api_steps_and_honours_on_failure(sandbox):
    """The sandbox's Automation: a failed step with onFailure Continue goes on; an action it cannot run fails."""
    name = f"/dr/hooks/{unique('flag')}"
    put = {"Service": "ssm", "Api": "PutParameter", "Name": name, "Value": "{{ Value }}", "Type": "String"}
    document = automation_document({"schemaVersion": "0.3", "parameters": {"Value": {"type": "String"}},
                                    "mainSteps": [
        {"name": "put", "action": "aws:executeAwsApi", "inputs": put},
        {"name": "again", "action": "aws:executeAwsApi", "inputs": put, "onFailure": "Continue"},
        {"name": "read", "action": "aws:executeAwsApi", "inputs": {"Service": "ssm", "Api": "GetParameter",
                                                                    "Name": name},
         "outputs": [{"Name": "Value", "Selector": "$.Parameter.Value", "Type": "String"}], "isEnd": True},
        {"name": "never", "action": "aws:approve", "inputs": {}}], "outputs": ["read.Value"]})
    ssm = boto3.client("ssm", region_name=REGION)
    started = ssm.start_automation_execution(DocumentName=document, Parameters={"Value": ["on"]})
    for _ in range(100):
        found = automation(started["AutomationExecutionId"])
        if found["AutomationExecutionStatus"] != "InProgress":
            break
        time.sleep(0.2)
    assert found["AutomationExecutionStatus"] == "Success" and found["Outputs"] == {"read.Value": ["on"]}
    steps = {s["StepName"]: s for s in found["StepExecutions"]}
    assert steps["again"]["StepStatus"] == "Failed" and "ParameterAlreadyExists" in steps["again"]["FailureMessage"]
    assert "never" not in steps  # isEnd
    approve = automation_document({"schemaVersion": "0.3", "mainSteps": [
        {"name": "ask", "action": "aws:approve", "inputs": {"Approvers": ["x"]}}]})
    started = ssm.start_automation_execution(DocumentName=approve)
    time.sleep(1.2)
    found = automation(started["AutomationExecutionId"])
    assert found["AutomationExecutionStatus"] == "Failed" and "does not run aws:approve" in found["FailureMessage"]
    with pytest.raises(ssm.exceptions.InvalidAutomationStatusUpdateException):
        ssm.stop_automation_execution(AutomationExecutionId=started["AutomationExecutionId"])


def test_hook_plan_errors_name_their_line():
    text = """
apiVersion: dr.orchestrator/v1
name: hooks
accounts: {hub: {id: "123456789012"}}
regions: {primary: us-east-1, recovery: us-west-2}
phases:
  ACTIVATE:
    layers:
      - name: app
        preHooks:
          - name: both
            ssmAutomation: {documentName: quiesce}
            lambda: {functionName: quiesce}
        postHooks:
          - name: slow
            lambda: {functionName: smoke}
            timeoutSeconds: 1200
            account: elsewhere
        resources: [{name: w, action: control.wait, parameters: {seconds: 1}}]
"""
    with pytest.raises(Exception) as error:
        load_plan_text(text, "hooks.yaml")
    rendered = str(error.value)
    assert "hooks.yaml:11: phases.ACTIVATE.layers.0.preHooks.0: a hook has exactly one of ssmAutomation or lambda" \
        in rendered
    assert "hooks.yaml:15: phases.ACTIVATE.layers.0.postHooks.0: a lambda hook's timeoutSeconds is at most 900" \
        in rendered
    assert "hooks.yaml:18: phases.ACTIVATE.layers.0.postHooks.0.account: 'elsewhere' is not one of" in rendered


# ---- in the lifecycle -------------------------------------------------------------------------------------------

def layer(name: str, pre: list[dict[str, Any]] | None = None, post: list[dict[str, Any]] | None = None,
          **extra: Any) -> dict[str, Any]:
    return {"name": name, "resources": [wait_resource(f"{name}-work", 1)], "preHooks": pre or [],
            "postHooks": post or [], **extra}


async def test_a_layers_pre_and_post_hooks_show_their_outputs_in_the_status(worker):
    document, function = automation_document(GREETING_DOC), lambda_function()
    plan = make_plan({"ACTIVATE": [layer("app", pre=[
        {"name": "quiesce", "ssmAutomation": {"documentName": document, "parameters": {"Who": "app"}},
         "timeoutSeconds": 60}], post=[
        {"name": "smoke-test", "lambda": {"functionName": function, "payload": {"check": "health"}},
         "timeoutSeconds": 30},
        {"name": "fence-old-primary", "lambda": {"functionName": function, "payload": {"fail": "not in a drill"}},
         "modes": ["planned", "disaster"]}])]}, name="hooks-layer")
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED, result.message
    state = await status_of(handle)
    app = state.phase(Phase.ACTIVATE).layers[0]
    pre, post, work = app.pre_hooks[0], app.post_hooks[0], app.resources[0]
    assert (pre.status, post.status, app.status) == (StepStatus.SUCCEEDED,) * 3
    assert pre.kind == "ssmAutomation" and pre.target == document and pre.account == HUB_ACCOUNT
    assert pre.outputs["outputs"] == {"greet.Greeting": ["hello app (unknown)"]}
    assert automation(pre.outputs["automationExecutionId"])["AutomationExecutionStatus"] == "Success"
    assert post.outputs["payload"]["checked"] == "health"
    assert post.outputs["payload"]["context"]["executionId"] == handle.id
    assert pre.ended_at <= work.started_at and work.ended_at <= post.started_at <= post.ended_at
    fence = app.post_hooks[1]  # acts on production: the plan leaves it out of drills
    assert fence.status is StepStatus.SKIPPED and not fence.runs and "not run in a drill run" in fence.message
    lines: list[str] = []
    ProgressPrinter(echo=lines.append).update(state)
    assert any(f"✔ pre-hook quiesce [ssmAutomation {document} @ {HUB_ACCOUNT}/us-west-2]" in line
               and '"greet.Greeting": ["hello app (unknown)"]' in line for line in lines), lines
    assert any("✔ post-hook smoke-test [lambda" in line and '"checked": "health"' in line for line in lines), lines
    # Hooks are workflow code too: the recorded history replays without nondeterminism.
    replayer = Replayer(workflows=[DrLifecycleWorkflow], data_converter=session_converter(),
                        workflow_runner=workflow_runner())
    replay = await replayer.replay_workflow(await handle.fetch_history(), raise_on_replay_failure=False)
    assert replay.replay_failure is None, replay.replay_failure


async def test_a_failing_pre_hook_fails_the_layer_and_a_continue_policy_does_not(worker):
    failing = automation_document(FAILING_DOC)
    hook = {"name": "check", "ssmAutomation": {"documentName": failing}, "timeoutSeconds": 60}
    plan = make_plan({"ACTIVATE": [layer("tolerant", pre=[{**hook, "onFailure": "continue"}]),
                                   layer("strict", pre=[hook, {**hook, "name": "never"}]),
                                   layer("after")]}, name="hooks-failing")
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED)
    with pytest.raises(Exception):
        await handle.result()
    state = await status_of(handle)
    tolerant, strict, after = state.phase(Phase.ACTIVATE).layers
    assert tolerant.status is StepStatus.PARTIAL and tolerant.pre_hooks[0].status is StepStatus.FAILED
    assert tolerant.resources[0].status is StepStatus.SUCCEEDED  # the layer went on
    assert strict.status is StepStatus.FAILED and strict.resources[0].status is StepStatus.SKIPPED
    assert [h.status for h in strict.pre_hooks] == [StepStatus.FAILED, StepStatus.SKIPPED]
    assert "ParameterNotFound" in strict.pre_hooks[0].error and strict.pre_hooks[0].error_type == "HookFailed"
    assert after.status is StepStatus.SKIPPED
    assert state.status is RunStatus.FAILED and "pre-hook check" in (state.error or "")


async def test_a_hook_past_its_timeout_fails_and_its_automation_is_stopped(worker):
    document = automation_document(PAUSED_DOC)
    plan = make_plan({"ACTIVATE": [layer("app", post=[
        {"name": "approve", "ssmAutomation": {"documentName": document}, "timeoutSeconds": 2}])]},
        name="hooks-timeout")
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    with pytest.raises(Exception):
        await handle.result()
    hook = (await status_of(handle)).phase(Phase.ACTIVATE).layers[0].post_hooks[0]
    assert hook.status is StepStatus.FAILED and hook.error_type == "HookTimeout"
    assert "did not finish within 2 s" in hook.error
    stopped = automation(hook.outputs["automationExecutionId"])
    assert stopped["AutomationExecutionStatus"] == "Cancelled"


async def test_a_forced_cancel_stops_a_running_automation(worker):
    document = automation_document(PAUSED_DOC)
    plan = make_plan({"ACTIVATE": [layer("app", pre=[
        {"name": "hold", "ssmAutomation": {"documentName": document}, "timeoutSeconds": 600}])]},
        name="hooks-cancel")
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    running = await wait_until(handle, lambda s: s.phase(Phase.ACTIVATE).layers[0].pre_hooks[0].handle != {})
    execution_id = running.phase(Phase.ACTIVATE).layers[0].pre_hooks[0].handle["automationExecutionId"]
    assert (await send(handle, "cancel", control(force=True, reason="drill aborted"))).accepted
    result = await finish(handle)
    assert result.status is RunStatus.CANCELLED
    app = (await status_of(handle)).phase(Phase.ACTIVATE).layers[0]
    assert app.pre_hooks[0].status is StepStatus.CANCELLED and app.resources[0].status is StepStatus.SKIPPED
    assert "stopped" in app.pre_hooks[0].message
    assert automation(execution_id)["AutomationExecutionStatus"] == "Cancelled"


async def test_wave_hooks_run_before_the_first_job_and_after_the_servers_launched(worker, world):
    from tests.test_drs_recovery import child_state, drs_plan, estate

    app = estate(world, {"db": 2, "app": 2})
    document, function = automation_document(GREETING_DOC), lambda_function()
    plan = drs_plan("drs-hooks", app, waves=[
        {"name": "db", "protectionGroups": ["db"], "preHooks": [
            {"name": "stop-writes", "lambda": {"functionName": function, "payload": {"check": "db"}},
             "timeoutSeconds": 30}]},
        {"name": "app", "protectionGroups": ["app"], "dependsOn": ["db"], "postHooks": [
            {"name": "warm-up", "ssmAutomation": {"documentName": document, "parameters": {"Who": "${dr.layer}"}},
             "timeoutSeconds": 60}]},
    ], groups={"db": {"tags": {"Tier": "db"}}, "app": {"tags": {"Tier": "app"}}}, cleanup=False)
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED, result.message
    assert resource(await status_of(handle), "ACTIVATE", "servers", "servers").outputs["launched"] == 4
    child = await child_state(worker, handle.id, "ACTIVATE")
    waves = {w.name: w for w in child.waves}
    pre, post = waves["db"].pre_hooks[0], waves["app"].post_hooks[0]
    assert pre.status is StepStatus.SUCCEEDED and pre.outputs["payload"]["checked"] == "db"
    assert pre.outputs["payload"]["context"]["layer"] == "servers/wave:db"
    assert pre.ended_at <= waves["db"].started_at
    assert post.status is StepStatus.SUCCEEDED
    assert post.outputs["outputs"] == {"greet.Greeting": ["hello servers/wave:app (unknown)"]}
    assert waves["app"].status.value == "SUCCEEDED" and post.ended_at <= waves["app"].ended_at
    lines: list[str] = []
    ProgressPrinter(echo=lines.append).drs("ACTIVATE/servers/servers", child)
    assert any("✔ pre-hook stop-writes [lambda" in line for line in lines), lines
    assert any("✔ post-hook warm-up [ssmAutomation" in line for line in lines), lines


async def test_a_failing_wave_pre_hook_fails_the_wave_before_any_job(worker, world):
    from tests.test_drs_recovery import child_state, drs_plan, estate, jobs_of

    app = estate(world, {"db": 1, "app": 1})
    function = lambda_function()
    plan = drs_plan("drs-hooks-fail", app, waves=[
        {"name": "db", "protectionGroups": ["db"], "preHooks": [
            {"name": "fence", "lambda": {"functionName": function, "payload": {"fail": "primary still up"}},
             "timeoutSeconds": 30}]},
        {"name": "app", "protectionGroups": ["app"], "dependsOn": ["db"]},
    ], groups={"db": {"tags": {"Tier": "db"}}, "app": {"tags": {"Tier": "app"}}}, cleanup=False)
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    with pytest.raises(Exception):
        await handle.result()
    child = await child_state(worker, handle.id, "ACTIVATE")
    waves = {w.name: w for w in child.waves}
    assert (waves["db"].status.value, waves["app"].status.value) == ("FAILED", "SKIPPED")
    assert "pre-hook fence failed" in waves["db"].message and "primary still up" in waves["db"].message
    assert waves["db"].pre_hooks[0].error_type == "HookFailed" and not child.servers
    assert jobs_of(boto3.client("drs", region_name=REGION), handle.id) == []


def test_the_estate_of_the_every_module_plan(sandbox):
    from activities.core import registry
    from plans.model import PHASE_ORDER
    from tests.estates.hooks import build

    for mode in (Mode.DRILL, Mode.PLANNED):
        estate = build(unique("est"))
        execution = unique("exec")
        for phase in PHASE_ORDER:
            for spec in estate.resources:
                module = registry.get(spec["action"])
                ctx, params = make_ctx(module, spec["parameters"], mode=mode, phase=phase, execution_id=execution)
                steps = drive(module, ctx, params, max_polls=400)
                assert steps[-1].done
            estate.check(phase, mode)
