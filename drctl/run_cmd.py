"""`drctl worker` and `drctl drill ...`: run the worker, start and steer runs."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from typing import Any

import click

from drctl.errors import EXIT_FAILED, fail
from plans.model import PHASE_ORDER, Mode, Phase

UI_URL = os.environ.get("TEMPORAL_UI_URL", "http://127.0.0.1:8233")


@click.command()
def worker() -> None:
    """Run the worker (workflows and AWS activities) until SIGTERM or Ctrl-C.

    Temporal: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE, TEMPORAL_TLS_CERT/KEY/CA,
    TEMPORAL_API_KEY. AWS: the usual boto3 chain; AWS_ENDPOINT_URL for the sandbox.
    """
    from workers.main import main

    main()  # never returns: ends the process with os._exit


@click.group()
def drill() -> None:
    """Start a run of a plan and steer it (approve, pause, resume, cancel)."""


@drill.command("start")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--mode", type=click.Choice([m.value for m in Mode]), default=Mode.DRILL.value, show_default=True,
              help="drill never changes production; planned/disaster fail over for real; failback returns.")
@click.option("--phase", "phases", multiple=True, type=click.Choice([p.value for p in PHASE_ORDER]),
              help="Run only these phases (repeatable); default all four.")
@click.option("--token", envvar="DRCTL_TOKEN", show_envvar=True, default=None,
              help="Your signed identity token (JWT); the worker checks it may start this mode.")
@click.option("--initiator", default=None, show_default="the token's subject",
              help="Who claims to start the run; the token's verified subject is what is recorded (DrInitiator).")
@click.option("--paused", is_flag=True, help="Start paused at the first boundary.")
@click.option("--wait", is_flag=True, help="Follow the run; exit 0 only if it completed.")
@click.option("--task-token", envvar="DRCTL_TASK_TOKEN", default=None, show_envvar=True,
              help="A Step Functions task token to answer when the run ends ('-': read it from stdin). "
                   "Prefer the environment variable: a command line is visible to other users.")
@click.option("--callback-region", default=None, help="Region of the state machine (default: the worker's).")
@click.option("--callback-account", default=None,
              help="Plan account whose role answers the token (default: the worker's own credentials).")
@click.option("--heartbeat-seconds", type=click.IntRange(1, 3600), default=None,
              help="SendTaskHeartbeat this often while the run is in progress.")
def start(file: str, mode: str, phases: tuple[str, ...], token: str | None, initiator: str | None, paused: bool,
          wait: bool,
          task_token: str | None, callback_region: str | None, callback_account: str | None,
          heartbeat_seconds: int | None) -> None:
    """Validate FILE and start a run of it; prints the workflow id."""
    from pydantic import ValidationError

    from plans.errors import PlanError
    from activities.core.registry import catalogue
    from contracts.callback import CallbackOptions
    from contracts.lifecycle import LifecycleInput, RunOptions
    from plans.loader import load_plan

    try:
        plan = load_plan(file, catalogue=catalogue())
    except PlanError as exc:
        click.echo(exc.render(), err=True)
        raise SystemExit(2) from None
    callback = None
    if task_token == "-":
        task_token = sys.stdin.readline().strip()
    if task_token:
        if callback_account is not None and callback_account not in plan.accounts:
            fail(f"--callback-account {callback_account!r} is not an account of the plan "
                 f"({', '.join(plan.accounts)})")
        try:
            callback = CallbackOptions(task_token=task_token, region=callback_region, account=callback_account,
                                       heartbeat_seconds=heartbeat_seconds)
        except ValidationError as exc:  # never echo the token itself
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            fail(f"invalid callback options: {problems}")
    elif callback_region or callback_account or heartbeat_seconds:
        fail("--callback-region, --callback-account and --heartbeat-seconds need --task-token")
    token = _require_token(token)
    run_input = LifecycleInput(plan=plan, mode=Mode(mode), initiator=initiator or _claimed_subject(token),
                               token=token,
                               options=RunOptions(phases=[Phase(p) for p in phases] or None, start_paused=paused,
                                                  callback=callback))
    sys.exit(asyncio.run(_start(run_input, wait)))


async def _start(run_input: Any, wait: bool) -> int:
    from drctl.progress import follow, summary, ui_link, exit_code_for
    from contracts.search_attributes import start_search_attributes
    from contracts.lifecycle import WORKFLOW_TYPE, workflow_id_for

    client, settings = await _client()
    workflow_id = workflow_id_for(run_input.plan.name, run_input.mode, datetime.now(UTC))
    handle = await client.start_workflow(
        WORKFLOW_TYPE, run_input, id=workflow_id, task_queue=settings.task_queue,
        search_attributes=start_search_attributes(run_input),
    )
    click.echo(workflow_id)
    click.echo(f"  {ui_link(UI_URL, settings.namespace, workflow_id)}", err=True)
    if not wait:
        return 0
    state = await follow(handle)
    for line in summary(state):
        click.echo(line)
    return exit_code_for(state)


@drill.command("status")
@click.argument("workflow_id")
def status(workflow_id: str) -> None:
    """Print where a run is: phase, layer, resource, with timing and errors."""
    from drctl.progress import ProgressPrinter, summary
    from contracts.lifecycle import LifecycleState

    async def show() -> None:
        client, _ = await _client()
        state = await client.get_workflow_handle(workflow_id).query("status", result_type=LifecycleState)
        printer = ProgressPrinter()
        printer.update(state)
        for line in summary(state):
            click.echo(line)

    asyncio.run(_guard(show()))


def _control_command(update: str, needs_reason: bool, help_text: str) -> click.Command:
    @click.command(update.replace("_", "-"), help=help_text)
    @click.argument("workflow_id")
    @click.option("--reason", default="", required=needs_reason, help="Why (kept in the audit trail).")
    @click.option("--token", envvar="DRCTL_TOKEN", show_envvar=True, default=None,
                  help="Your signed identity token (JWT): the run checks your roles.")
    @click.option("--gate", default=None, help="approve/reject: the gate id (default: the pending one).")
    @click.option("--force", is_flag=True, help="cancel: also stop in-flight operations.")
    @click.option("--step", default=None, help="skip: PHASE/layer or PHASE/layer/resource, not started yet.")
    def command(workflow_id: str, reason: str, token: str | None, gate: str | None, force: bool,
                step: str | None) -> None:
        from contracts.lifecycle import ControlRequest, ControlResult

        token = _require_token(token)

        async def send() -> None:
            client, _ = await _client()
            request = ControlRequest(actor=_claimed_subject(token), reason=reason, gate=gate, force=force,
                                     step=step, token=token)
            result = await client.get_workflow_handle(workflow_id).execute_update(
                update, request, result_type=ControlResult)
            click.echo(f"{result.message} (run is {result.status.value})")
            if not result.accepted:
                raise SystemExit(EXIT_FAILED)

        asyncio.run(_guard(send()))

    return command


for _name, _needs_reason, _help in (
    ("approve", False, "Approve the pending gate of a run."),
    ("reject", True, "Reject the pending gate; the run stops."),
    ("pause", False, "Pause at the next boundary; running operations finish."),
    ("resume", False, "Resume a paused run."),
    ("cancel", False, "Cancel: nothing new starts (--force also stops running operations)."),
    ("skip", False, "Skip a layer or resource that has not started (--step PHASE/layer[/resource])."),
    ("switch_ungraceful", True, "A planned failover goes on as a disaster recovery: resources started from now on "
                                "fail over ungracefully."),
):
    drill.add_command(_control_command(_name, _needs_reason, _help))


def _require_token(token: str | None) -> str:
    if not token:
        fail("no identity token: set DRCTL_TOKEN (or --token); in the sandbox, "
             "`export DRCTL_TOKEN=$(drctl auth token you@example.com --role operator)`")
    return token.strip()


def _claimed_subject(token: str) -> str:
    """The token's subject, read without verification: only a label for the request; the run verifies."""
    import jwt

    try:
        return str(jwt.decode(token, options={"verify_signature": False}).get("sub") or "unknown")[:200]
    except jwt.PyJWTError:
        return "unknown"


async def _client() -> Any:
    from workers.main import TemporalSettings, connect

    settings = TemporalSettings.from_env()
    try:
        return await connect(settings), settings
    except Exception as exc:  # an unreachable server is the operator's problem to fix, not a crash
        fail(f"cannot reach Temporal at {settings.address} (namespace {settings.namespace}): {exc}", EXIT_FAILED)


async def _guard(coro: Any) -> None:
    from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
    from temporalio.exceptions import ApplicationError, FailureError
    from temporalio.service import RPCError

    from contracts.lifecycle import PERMISSION_DENIED

    try:
        await coro
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
        fail(exc.message, EXIT_FAILED)
