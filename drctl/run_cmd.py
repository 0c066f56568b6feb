"""`drctl worker` and `drctl drill ...`: run the worker, start and steer runs."""

from __future__ import annotations

import re
import secrets

import asyncio
import os
import sys
from datetime import UTC, datetime
from typing import Any

import click

from drctl.errors import EXIT_FAILED, fail
from drctl.output import output_option
from drctl.temporal_access import claimed_subject, connect_client, describe_run, guard, require_token
from plans.model import PHASE_ORDER, Mode, Phase

UI_URL = os.environ.get("TEMPORAL_UI_URL", "http://127.0.0.1:8233")


@click.command()
def worker() -> None:
    """Run the worker (workflows and AWS activities) until SIGTERM or Ctrl-C.

    Temporal: the `temporal` CLI's profile file and variables (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE,
    TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*), and TEMPORAL_TASK_QUEUE.
    AWS: the usual boto3 chain; AWS_ENDPOINT_URL for the sandbox.
    """
    from workers.main import main

    main()  # never returns: ends the process with os._exit


@click.group()
def drill() -> None:
    """Start runs of a plan, list them, follow and steer them (approve, pause, resume, cancel...)."""


# Who starts a run (`drill start`, `drill cleanup`).
START_TOKEN = click.option("--token", envvar="DRCTL_TOKEN", show_envvar=True, default=None,
                           help="Your signed identity token (JWT); the worker checks it may start this mode.")
START_INITIATOR = click.option("--initiator", default=None, show_default="the token's subject",
                               help="Who claims to start the run; the token's verified subject is what is recorded "
                                    "(DrInitiator).")


@drill.command("start")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--mode", type=click.Choice([m.value for m in Mode]), default=Mode.DRILL.value, show_default=True,
              help="drill never changes production; planned/disaster fail over for real; failback returns.")
@click.option("--phase", "phases", multiple=True, type=click.Choice([p.value for p in PHASE_ORDER]),
              help="Run only these phases (repeatable); default all four.")
@START_TOKEN
@START_INITIATOR
@click.option("--paused", is_flag=True, help="Start paused at the first boundary.")
@click.option("--wait", is_flag=True, help="Follow the run; exit 0 if COMPLETED, 3 if PARTIAL, 1 otherwise.")
@click.option("--keep-on-failure/--clean-up-on-failure", default=None,
              help="A drill that fails or is cancelled after ACTIVATE started: keep what it created for diagnosis, "
                   "or run its CLEANUP first (default: the plan's defaults.keepDrillOnFailure, else clean up).")
@click.option("--task-token", envvar="DRCTL_TASK_TOKEN", default=None, show_envvar=True,
              help="A Step Functions task token to answer when the run ends ('-': read it from stdin). "
                   "Prefer the environment variable: a command line is visible to other users.")
@click.option("--callback-region", default=None, help="Region of the state machine (default: the worker's).")
@click.option("--callback-account", default=None,
              help="Plan account whose role answers the token (default: the worker's own credentials).")
@click.option("--heartbeat-seconds", type=click.IntRange(1, 3600), default=None,
              help="SendTaskHeartbeat this often while the run is in progress.")
def start(file: str, mode: str, phases: tuple[str, ...], token: str | None, initiator: str | None, paused: bool,
          wait: bool, keep_on_failure: bool | None,
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
    if keep_on_failure is not None and mode != Mode.DRILL.value:
        fail("--keep-on-failure / --clean-up-on-failure are for drills: a real failover never cleans up on its own")
    token = require_token(token)
    run_input = LifecycleInput(plan=plan, mode=Mode(mode), initiator=initiator or claimed_subject(token),
                               token=token,
                               options=RunOptions(phases=[Phase(p) for p in phases] or None, start_paused=paused,
                                                  callback=callback, keep_on_failure=keep_on_failure))
    sys.exit(asyncio.run(guard(_start(run_input, wait))))


async def _start(run_input: Any, wait: bool) -> int:
    from drctl.watch import watch_run

    client, settings = await connect_client()
    handle, link = await launch(client, settings, run_input)
    if not wait:
        return 0
    return await watch_run(client, handle, link)


async def launch(client: Any, settings: Any, run_input: Any) -> tuple[Any, str]:
    """Start a run of `run_input`; print its workflow id (stdout) and UI link (stderr). (handle, link)."""
    from drctl.progress import ui_link
    from contracts.search_attributes import start_search_attributes
    from contracts.run_metadata import start_metadata
    from contracts.lifecycle import WORKFLOW_TYPE, workflow_id_for

    workflow_id = workflow_id_for(run_input.plan.name, run_input.mode, datetime.now(UTC), secrets.token_hex(3))
    handle = await client.start_workflow(
        WORKFLOW_TYPE, run_input, id=workflow_id, task_queue=settings.task_queue,
        search_attributes=start_search_attributes(run_input), **start_metadata(run_input),
    )
    click.echo(workflow_id)
    link = ui_link(UI_URL, settings.namespace, workflow_id)
    click.echo(f"  {link}", err=True)
    return handle, link


@drill.command("status")
@click.argument("workflow_id")
@output_option("table", "json", "yaml")
def status(workflow_id: str, output: str) -> None:
    """Where a run is: phases, layers, resources, DRS waves and servers, the pending gate, with timing and errors.

    -o json|yaml: {"run": the `status` query's state, "drs": {"PHASE/layer/resource": the DRS recovery's state}}.
    """
    from drctl.output import console, echo_document
    from drctl.progress import ui_link
    from drctl.run_view import document, render, snapshot

    async def show() -> None:
        client, settings = await connect_client()
        await describe_run(client, workflow_id)
        snap = await guard(snapshot(client, client.get_workflow_handle(workflow_id)), workflow_id)
        if output == "table":
            console().print(render(snap, ui_link(UI_URL, settings.namespace, workflow_id)))
        else:
            echo_document(document(snap), output)

    asyncio.run(show())


@drill.command("watch")
@click.argument("workflow_id")
def watch(workflow_id: str) -> None:
    """Follow a run, however it was started, until it ends: exit 0 if it completed, 3 if it ended PARTIAL (some
    steps failed within the plan's policy), 1 otherwise.

    On a terminal, a live view of phases, layers, resources, DRS waves and servers and the pending gate;
    otherwise one line per change.
    """
    from drctl.progress import ui_link
    from drctl.watch import watch_run

    async def run() -> int:
        client, settings = await connect_client()
        await describe_run(client, workflow_id)
        return await guard(watch_run(client, client.get_workflow_handle(workflow_id),
                                     ui_link(UI_URL, settings.namespace, workflow_id)), workflow_id)

    try:
        sys.exit(asyncio.run(run()))
    except KeyboardInterrupt:  # Ctrl-C ends the watching, not the run (click would say "Aborted!" and exit 1)
        click.echo(f"stopped watching; {workflow_id} goes on", err=True)
        sys.exit(130)


# Each control command takes only the options that mean something to it (as kubectl and `temporal` do): an option
# another command needs is a usage error here, not silently ignored.
_REASON = click.option("--reason", default="", help="Why (kept in the audit trail).")
_REASON_REQUIRED = click.option("--reason", required=True, help="Why (required; kept in the audit trail).")
_GATE = click.option("--gate", default=None, help="The gate id (`drill status` shows it; default: the pending one).")
_FORCE = click.option("--force", is_flag=True, help="Also stop in-flight operations instead of letting them finish.")
_STEP = click.option("--step", required=True, help="PHASE/layer or PHASE/layer/resource, not started yet.")


def _plan_hash(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
        raise click.BadParameter(f"{value[:80]!r} is not a plan hash (sha256: and 64 hex digits, as `drctl plan "
                                 "validate` prints it)")
    return value


_PLAN_HASH = click.option("--plan-hash", default=None, metavar="sha256:...", callback=_plan_hash,
                          help="The hash of the plan you reviewed (`drctl plan validate` prints it): the run denies "
                               "the decision if it runs another plan.")


def _control_command(update: str, help_text: str, *options: Any) -> click.Command:
    def command(workflow_id: str, reason: str, token: str | None, gate: str | None = None, force: bool = False,
                step: str | None = None, plan_hash: str | None = None) -> None:
        from contracts.lifecycle import ControlRequest, ControlResult

        token = require_token(token)

        async def send() -> None:
            client, _ = await connect_client()
            # Every request names its run: an approval or rejection must (the run denies one naming another run).
            request = ControlRequest(actor=claimed_subject(token), reason=reason, gate=gate, force=force,
                                     step=step, token=token, run=workflow_id, plan_hash=plan_hash)
            result = await guard(client.get_workflow_handle(workflow_id).execute_update(
                update, request, result_type=ControlResult), workflow_id)
            click.echo(f"{result.message} (run is {result.status.value})")
            if not result.accepted:
                raise SystemExit(EXIT_FAILED)

        asyncio.run(send())

    for option in reversed(options):
        command = option(command)
    command = click.option("--token", envvar="DRCTL_TOKEN", show_envvar=True, default=None,
                           help="Your signed identity token (JWT): the run checks your roles.")(command)
    command = click.argument("workflow_id")(command)
    return click.command(update.replace("_", "-"), help=help_text)(command)


for _name, _help, _options in (
    ("approve", "Approve the pending gate of a run (or --gate GATE).", (_GATE, _PLAN_HASH, _REASON)),
    ("reject", "Reject the pending gate (or --gate GATE); the run stops.", (_GATE, _PLAN_HASH, _REASON_REQUIRED)),
    ("pause", "Pause at the next boundary; running operations finish.", (_REASON,)),
    ("resume", "Resume a paused run.", (_REASON,)),
    ("cancel", "Cancel: nothing new starts (--force also stops running operations).", (_FORCE, _REASON)),
    ("skip", "Skip a layer or resource that has not started.", (_STEP, _REASON)),
    ("switch_ungraceful", "A planned failover goes on as a disaster recovery: resources started from now on "
                          "fail over ungracefully.", (_REASON_REQUIRED,)),
):
    drill.add_command(_control_command(_name, _help, *_options))
