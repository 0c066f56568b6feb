"""drctl's way to Temporal: one connection per command, and the server's refusals as one-line errors."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from drctl.errors import EXIT_FAILED, fail

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowExecutionDescription

    from workers.main import TemporalSettings

T = TypeVar("T")


async def connect_client() -> tuple[Client, TemporalSettings]:
    from workers.encryption import KeyRingError
    from workers.main import TemporalSettings, connect, payload_converter

    try:
        settings = TemporalSettings.from_env()
    except Exception as exc:  # an unreadable profile file, an unknown TEMPORAL_PROFILE: the operator's to fix
        fail(f"cannot read the Temporal connection configuration: {_one_line(exc)}", EXIT_FAILED)
    try:
        converter = payload_converter(settings)
    except KeyRingError as exc:  # no key file, a bad one, KMS refusing to unwrap: names the file and the entry
        fail(_one_line(exc), EXIT_FAILED)
    try:
        return await connect(settings, converter), settings
    except Exception as exc:  # an unreachable server is the operator's problem to fix, not a crash
        fail(f"cannot reach Temporal at {settings.address} (namespace {settings.namespace}): {_one_line(exc)}",
             EXIT_FAILED)


async def guard(coro: Awaitable[T], workflow_id: str | None = None) -> T:
    """Await `coro`; what the server or the run refuses ends drctl with `error: ...` and exit 1, not a traceback."""
    from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
    from temporalio.exceptions import ApplicationError, FailureError, WorkflowAlreadyStartedError
    from temporalio.service import RPCError, RPCStatusCode

    from contracts.lifecycle import PERMISSION_DENIED
    from workers.encryption import KeyRingError

    try:
        return await coro
    except KeyRingError as exc:  # a payload sealed with a key this ring lacks (removed too early, another ring's)
        fail(f"cannot open the run's payloads: {_one_line(exc)}", EXIT_FAILED)
    except WorkflowAlreadyStartedError as exc:  # an id given twice (drctl's own ids carry a random part)
        fail(f"a run with workflow id {exc.workflow_id!r} already exists", EXIT_FAILED)
    except WorkflowUpdateFailedError as exc:
        # The cause is what the update handler raised, as a FailureError (ApplicationError...) whose message is the
        # refusal; any other exception has no `message`, so it is printed whole.
        # A denial (PermissionDenied: token, roles, four-eyes) already reads "denied: ...", and is in the audit trail.
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == PERMISSION_DENIED:
            fail(cause.message, EXIT_FAILED)
        fail(f"refused: {cause.message if isinstance(cause, FailureError) else cause}", EXIT_FAILED)
    except WorkflowQueryFailedError as exc:
        fail(f"refused: {exc.message}", EXIT_FAILED)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND and workflow_id:
            fail(f"no workflow {workflow_id!r} in this namespace ({_one_line(exc.message)})", EXIT_FAILED)
        fail(_one_line(exc.message), EXIT_FAILED)


async def describe_run(client: Client, workflow_id: str) -> WorkflowExecutionDescription:
    """The run's description; an unknown id, or a workflow that is not a DR run, ends drctl with a clear error
    (rather than polling a query that can never answer)."""
    from contracts.lifecycle import WORKFLOW_TYPE

    description = await guard(client.get_workflow_handle(workflow_id).describe(), workflow_id)
    if description.workflow_type != WORKFLOW_TYPE:
        fail(f"{workflow_id} is a {description.workflow_type}, not a {WORKFLOW_TYPE} run", EXIT_FAILED)
    return description


def require_token(token: str | None) -> str:
    if not token:
        fail("no identity token: set DRCTL_TOKEN (or --token); in the sandbox, "
             "`export DRCTL_TOKEN=$(drctl auth token you@example.com --role operator)`")
    return token.strip()


def claimed_subject(token: str) -> str:
    """The token's subject, read without verification: only a label for the request; the run verifies."""
    import jwt

    try:
        return str(jwt.decode(token, options={"verify_signature": False}).get("sub") or "unknown")[:200]
    except jwt.PyJWTError:
        return "unknown"


def _one_line(error: object) -> str:
    # gRPC transport errors span lines; a one-line error is what scripts and operators can read.
    return " ".join(str(error).split())
