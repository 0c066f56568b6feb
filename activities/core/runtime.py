"""The Temporal activities: a thin, generic bridge from the workflow to the module registry.

`start` runs a module's idempotent start; `wait` polls with heartbeats and returns when the operation is done or its
state changed (so the workflow's status query shows progress), resuming from its last heartbeat after a retry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError, NoCredentialsError
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.core import registry
from activities.core.aws import AwsClients, aws_errors, error_code
from activities.core.context import ResourceContext
from activities.core.heartbeat import resumed
from contracts.activities import (
    RESOURCE_RESOLVE,
    RESOURCE_START,
    RESOURCE_WAIT,
    VALIDATE_PLAN,
    Operation,
    PlanIssue,
    ResourceCall,
    WaitProgress,
    WaitRequest,
)
from activities.core.references import resolve_resource
from plans.model import Plan, Resource

# Caps how long a wait sleeps between looks whatever a module asks for. Unset in production (modules know their
# service's pace); the sandbox, whose operations finish in seconds, sets it low so local runs are not paced by it.
POLL_CAP_ENV = "DR_POLL_CAP_SECONDS"


class DrActivities:
    """Holds the process-wide AWS client cache; one instance per worker."""

    def __init__(self, aws: AwsClients, poll_cap_seconds: float | None = None) -> None:
        self.aws = aws
        cap = poll_cap_seconds if poll_cap_seconds is not None else os.environ.get(POLL_CAP_ENV)
        self.poll_cap_seconds = float(cap) if cap else None

    def all(self) -> list[Any]:
        from activities.identity import load_trust

        return [self.validate_plan, self.start_resource, self.wait_resource, self.resolve_references, load_trust]

    @activity.defn(name=VALIDATE_PLAN)
    def validate_plan(self, plan: Plan) -> list[PlanIssue]:
        """The workflow may be started by any client (`temporal workflow start`), so it re-checks the plan against
        the registry of the worker that will run it."""
        from plans.validation import validate_plan

        return validate_plan(plan, registry.catalogue())

    @activity.defn(name=RESOURCE_START)
    def start_resource(self, call: ResourceCall) -> Operation:
        ctx, module, params = self._prepare(call)
        ctx.log.info("resource.start")
        with _module_errors(ctx):
            operation = module.start(ctx, params)
        ctx.log.info("resource.started", done=operation.done, message=operation.message)
        return operation

    @activity.defn(name=RESOURCE_WAIT)
    def wait_resource(self, request: WaitRequest) -> Operation:
        ctx, module, params = self._prepare(request.call)
        progress = resumed(WaitProgress)
        operation = progress.last or request.operation
        entry_message = request.operation.message
        while True:
            with _module_errors(ctx):
                operation = module.poll(ctx, params, operation.handle)
            progress.polls += 1
            progress.last = operation
            activity.heartbeat(progress.model_dump(mode="json"))
            if operation.done or operation.message != entry_message:
                ctx.log.info("resource.progress", done=operation.done, message=operation.message,
                             polls=progress.polls)
                return operation
            interval = operation.poll_interval_seconds
            if self.poll_cap_seconds is not None:
                interval = min(interval, self.poll_cap_seconds)
            activity.wait_for_cancelled_sync(timedelta(seconds=interval))
            if activity.is_cancelled():
                ctx.log.warning("resource.wait_cancelled", polls=progress.polls)
                raise CancelledError("wait cancelled; the AWS operation itself may still be running")

    @activity.defn(name=RESOURCE_RESOLVE)
    def resolve_references(self, call: ResourceCall) -> Resource:
        """The resource with its `!Import` / `resolve:ssm:` values in place, looked up in its account and region."""
        ctx = ResourceContext(call=call, aws=self.aws)
        with _module_errors(ctx):
            return resolve_resource(ctx)

    def _prepare(self, call: ResourceCall) -> tuple[ResourceContext, registry.ServiceModule, Any]:
        module = registry.get(call.resource.action)
        if module is None:
            raise ApplicationError(
                f"this worker has no module for action {call.resource.action!r}",
                type="UnknownAction",
                non_retryable=True,
            )
        try:
            params = module.Parameters.model_validate(call.resource.parameters)
        except ValidationError as exc:
            raise ApplicationError(
                f"invalid parameters for {call.resource.name}: {exc}", type="InvalidParameters", non_retryable=True
            ) from None
        return ResourceContext(call=call, aws=self.aws), module, params


@contextmanager
def _module_errors(ctx: ResourceContext) -> Iterator[None]:
    """Around any module call: AWS errors no retry can fix fail the resource at once (activities.core.aws decides
    which); so do a module's own gaps. Everything else is retried by Temporal's policy."""
    try:
        with aws_errors(f"{ctx.call.resource.action} {ctx.call.resource.name}"):
            yield
    except (NoCredentialsError, NotImplementedError) as exc:
        raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from None
    except ClientError as exc:
        ctx.log.warning("resource.aws_error", code=error_code(exc), message=str(exc))
        raise
