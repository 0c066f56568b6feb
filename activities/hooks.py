"""Hooks as service modules: an SSM Automation runbook (`hook.ssm_automation`) or a Lambda function (`hook.lambda`),
run before or after a layer or a DRS wave by the workflow (workflows.hooks), or as plain resources of a layer.

SSM Automation is a long operation: StartAutomationExecution with a ClientToken derived from the execution, phase,
layer and hook, so a retried start (even after a crash between the call and its answer) finds the same execution
instead of starting a second one; then GetAutomationExecution until it ends. The hook's timeout is measured from the
execution's own start time and enforced here, by StopAutomationExecution, so a plain resource honours it too.

Lambda Invoke (RequestResponse) is synchronous and AWS cannot deduplicate it: the start activity invokes once, with
botocore's retries off and a read timeout of the hook's timeout, and the event carries `drContext.invocationId`
(the same for every attempt of this hook in this execution) for a function that must not act twice.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError
from pydantic import Field
from temporalio.exceptions import ApplicationError

from activities.core.context import ResourceContext
from activities.core.aws import aws_call, aws_errors, error_code
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, ServiceModule, register
from plans.hooks import (
    HOOK_MAX_SECONDS,
    LAMBDA_ACTION,
    LAMBDA_MAX_SECONDS,
    SSM_AUTOMATION_ACTION,
    SSM_AUTOMATION_STOP_ACTION,
    LambdaSpec,
    SsmAutomationSpec,
    substitute,
)
from plans.model import PHASE_ORDER

OUTPUT_LIMIT = 4096  # characters of a hook's output kept in the run's status (Temporal history is capped)
_POLL_SECONDS = 2.0
# A stable namespace for ClientTokens: the same execution/phase/layer/hook gives the same token on any worker.
_TOKEN_NAMESPACE = uuid.UUID("5b0c4f4e-2f1d-4a51-9a1e-7f3c2d0e8a61")
_RUNNING = {"Pending", "InProgress", "Waiting", "Cancelling", "PendingApproval", "Approved", "Scheduled",
            "RunbookInProgress", "PendingChangeCalendarOverride", "ChangeCalendarOverrideApproved"}
_SUCCEEDED = {"Success", "CompletedWithSuccess"}
# Errors of StartAutomationExecution / Invoke that no retry can fix (the generic list misses these).
_SSM_FATAL = {"InvalidAutomationExecutionParametersException", "IdempotentParameterMismatch", "InvalidTarget",
              "AutomationExecutionLimitExceededException"}
_LAMBDA_FATAL = {"InvalidRequestContentException", "RequestTooLargeException", "InvalidParameterValueException",
                 "InvalidRuntimeException", "UnsupportedMediaTypeException", "InvalidZipFileException"}


class SsmAutomationParameters(ModuleParameters, SsmAutomationSpec):
    timeout_seconds: int = Field(default=600, ge=1, le=HOOK_MAX_SECONDS)


class LambdaParameters(ModuleParameters, LambdaSpec):
    timeout_seconds: int = Field(default=600, ge=1, le=LAMBDA_MAX_SECONDS)


class StopAutomationParameters(ModuleParameters):
    automation_execution_id: str = Field(min_length=36, max_length=36)
    reason: str = ""


def run_context(ctx: ResourceContext) -> dict[str, str]:
    """What a hook may learn of the run: "${dr.mode}" in a parameter, `drContext` in a Lambda event."""
    call = ctx.call
    return {"executionId": call.execution_id, "plan": call.plan_name, "mode": call.mode.value,
            "phase": call.phase.value, "layer": call.layer, "hook": call.resource.name}


def idempotency_token(ctx: ResourceContext) -> str:
    call = ctx.call
    key = f"{call.execution_id}/{call.phase.value}/{call.layer}/{call.resource.name}"
    return str(uuid.uuid5(_TOKEN_NAMESPACE, key))


def clip(value: Any, limit: int = OUTPUT_LIMIT) -> Any:
    """`value` if its JSON is short enough for the status, else its first `limit` characters, marked as cut."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= limit:
        return value
    return {"truncated": True, "size": len(text), "head": text[:limit]}


def _failure(message: str, error_type: str, **details: Any) -> ApplicationError:
    # Details reach the workflow with the error, so a failed hook still shows what it produced.
    return ApplicationError(message, details, type=error_type, non_retryable=True)


@register
class SsmAutomationHook(ServiceModule):
    action = SSM_AUTOMATION_ACTION
    summary = "Run an SSM Automation runbook and wait for it (a hook, or a resource); stopped at its timeout"
    Parameters = SsmAutomationParameters
    phases = frozenset(PHASE_ORDER)

    def start(self, ctx: ResourceContext, params: SsmAutomationParameters) -> Operation:
        kwargs: dict[str, Any] = {"DocumentName": params.document_name, "ClientToken": idempotency_token(ctx),
                                  "Tags": ctx.tags()}
        if params.document_version:
            kwargs["DocumentVersion"] = params.document_version
        if params.parameters:
            kwargs["Parameters"] = substitute(dict(params.parameters), run_context(ctx))
        what = f"StartAutomationExecution {params.document_name}"
        with _fatal_codes(what, _SSM_FATAL), aws_errors(what):
            execution_id = _ssm(ctx).start_automation_execution(**kwargs)["AutomationExecutionId"]
        ctx.log.info("hook.automation_started", document=params.document_name, automation=execution_id)
        return self.poll(ctx, params, {"automationExecutionId": execution_id, "region": ctx.call.region})

    def poll(self, ctx: ResourceContext, params: SsmAutomationParameters, handle: dict[str, Any]) -> Operation:
        execution_id = handle["automationExecutionId"]
        with aws_errors(f"GetAutomationExecution {execution_id}"):
            found = _ssm(ctx).get_automation_execution(AutomationExecutionId=execution_id)["AutomationExecution"]
        status = found["AutomationExecutionStatus"]
        outputs = _automation_outputs(found)
        name = f"automation {params.document_name} ({execution_id})"
        if status in _SUCCEEDED:
            return Operation(done=True, handle=handle, outputs=outputs, message=f"{name}: {status}")
        if status not in _RUNNING:
            reason = found.get("FailureMessage") or _failed_step(found) or status
            raise _failure(f"{name} ended {status}: {reason}", "HookFailed", outputs=outputs)
        started = found.get("ExecutionStartTime") or datetime.now(UTC)
        if datetime.now(UTC) >= started + timedelta(seconds=params.timeout_seconds):
            self.stop(ctx, execution_id)
            raise _failure(f"{name} did not finish within {params.timeout_seconds} s (at step "
                           f"{found.get('CurrentStepName', '?')}): stopped", "HookTimeout", outputs=outputs)
        step = found.get("CurrentStepName")
        detail = f" at step {step} ({found.get('CurrentAction', '?')})" if step else ""
        return Operation(done=False, handle=handle, outputs=outputs, message=f"{name}: {status}{detail}",
                         poll_interval_seconds=_POLL_SECONDS)

    @staticmethod
    def stop(ctx: ResourceContext, execution_id: str) -> None:
        # Tolerated: it already ended (between our look and the stop), which is what a stop wants.
        aws_call(f"StopAutomationExecution {execution_id}", _ssm(ctx).stop_automation_execution,
                 tolerate=("InvalidAutomationStatusUpdateException",), AutomationExecutionId=execution_id,
                 Type="Cancel")
        ctx.log.warning("hook.automation_stopped", automation=execution_id)

    def status(self, ctx: ResourceContext, params: SsmAutomationParameters) -> dict[str, Any]:
        """Whether the runbook is there to run (readiness), and how its latest executions ended."""
        kwargs = {"Name": params.document_name}
        if params.document_version and params.document_version.isdigit():
            kwargs["DocumentVersion"] = params.document_version
        with aws_errors(f"DescribeDocument {params.document_name}"):
            document = _ssm(ctx).describe_document(**kwargs)["Document"]
        with aws_errors(f"DescribeAutomationExecutions {params.document_name}"):
            found = _ssm(ctx).describe_automation_executions(
                Filters=[{"Key": "DocumentNamePrefix", "Values": [params.document_name]}], MaxResults=5)
        return {"documentStatus": document.get("Status"), "documentType": document.get("DocumentType"),
                "documentVersion": document.get("DocumentVersion"),
                "recent": [{"id": e["AutomationExecutionId"], "status": e["AutomationExecutionStatus"]}
                           for e in found.get("AutomationExecutionMetadataList", [])]}


@register
class StopSsmAutomation(ServiceModule):
    """What the workflow runs when a hook is cancelled: the generic activities are its only way to AWS."""

    action = SSM_AUTOMATION_STOP_ACTION
    summary = "Stop an SSM Automation execution (the hook runner uses it when a run is cancelled)"
    Parameters = StopAutomationParameters
    phases = frozenset(PHASE_ORDER)

    def start(self, ctx: ResourceContext, params: StopAutomationParameters) -> Operation:
        SsmAutomationHook.stop(ctx, params.automation_execution_id)
        return Operation(done=True, message=f"automation {params.automation_execution_id} stopped"
                         + (f" ({params.reason})" if params.reason else ""))


@register
class LambdaHook(ServiceModule):
    action = LAMBDA_ACTION
    summary = "Invoke a Lambda function synchronously (a hook, or a resource); its answer goes into the status"
    Parameters = LambdaParameters
    phases = frozenset(PHASE_ORDER)

    def start(self, ctx: ResourceContext, params: LambdaParameters) -> Operation:
        context = run_context(ctx)
        event = {**substitute(dict(params.payload), context),
                 "drContext": {**context, "drill": ctx.is_drill, "invocationId": idempotency_token(ctx)}}
        kwargs: dict[str, Any] = {"FunctionName": params.function_name, "InvocationType": "RequestResponse",
                                  "LogType": "Tail", "Payload": json.dumps(event).encode()}
        if params.qualifier:
            kwargs["Qualifier"] = params.qualifier
        name = params.function_name + (f":{params.qualifier}" if params.qualifier else "")
        ctx.log.info("hook.lambda_invoke", function=name, invocation=event["drContext"]["invocationId"])
        try:
            with _fatal_codes(f"Invoke {name}", _LAMBDA_FATAL), aws_errors(f"Invoke {name}"):
                answer = _lambda(ctx, params.timeout_seconds).invoke(**kwargs)
        except ReadTimeoutError:
            raise _failure(f"lambda {name} did not answer within {params.timeout_seconds} s (it may still be "
                           "running until its own timeout)", "HookTimeout") from None
        body = answer["Payload"].read().decode("utf-8", errors="replace")
        try:
            payload: Any = json.loads(body) if body else None
        except ValueError:
            payload = body
        outputs = {"statusCode": answer.get("StatusCode"), "executedVersion": answer.get("ExecutedVersion"),
                   "payload": clip(payload)}
        log_tail = _log_tail(answer.get("LogResult"))
        if log_tail:
            outputs["logTail"] = log_tail
        if answer.get("FunctionError"):
            error = payload.get("errorMessage") if isinstance(payload, dict) else None
            raise _failure(f"lambda {name} failed ({answer['FunctionError']}): {error or clip(body, 300)}",
                           "HookFailed", outputs=outputs)
        return Operation(done=True, outputs=outputs, message=f"lambda {name} answered (version "
                                                             f"{answer.get('ExecutedVersion', '?')})")


@contextmanager
def _fatal_codes(what: str, codes: set[str]) -> Iterator[None]:
    """Make these error codes non-retryable (they name the request, not the service's health)."""
    try:
        yield
    except ClientError as exc:
        if error_code(exc) not in codes:
            raise
        message = exc.response.get("Error", {}).get("Message", "")
        raise _failure(f"{what}: {error_code(exc)}: {message}", error_code(exc)) from exc


def _ssm(ctx: ResourceContext) -> Any:
    return ctx.client("ssm")


def _lambda(ctx: ResourceContext, timeout_seconds: int) -> Any:
    """A Lambda client that waits as long as the hook may take and never re-sends an invoke by itself."""
    config = Config(read_timeout=timeout_seconds, connect_timeout=10,
                    retries={"mode": "standard", "total_max_attempts": 1})
    return ctx.aws.client("lambda", ctx.call.account, ctx.call.region, config=config)


def _automation_outputs(found: dict[str, Any]) -> dict[str, Any]:
    outputs: dict[str, Any] = {"automationExecutionId": found["AutomationExecutionId"],
                               "status": found["AutomationExecutionStatus"]}
    steps = found.get("StepExecutions") or []
    if steps:
        outputs["steps"] = {s["StepName"]: s.get("StepStatus") for s in steps[:50]}
    if found.get("Outputs"):
        outputs["outputs"] = clip(found["Outputs"])
    return outputs


def _failed_step(found: dict[str, Any]) -> str | None:
    for step in found.get("StepExecutions") or []:
        if step.get("StepStatus") not in _SUCCEEDED | _RUNNING:
            return f"step {step['StepName']}: {step.get('FailureMessage') or step.get('StepStatus')}"
    return None


def _log_tail(encoded: str | None, limit: int = 1000) -> str | None:
    if not encoded:
        return None
    text = base64.b64decode(encoded).decode("utf-8", errors="replace")
    return text[-limit:]
