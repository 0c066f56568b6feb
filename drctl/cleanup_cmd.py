"""`drctl drill cleanup RUN`: remove what an earlier drill left behind (a run terminated with its worker down, one
that failed with --keep-on-failure, one whose phases left out CLEANUP).

It starts a drill of the same plan that runs only CLEANUP, on the artefacts tagged with RUN's workflow id instead of
its own (RunOptions.cleanup_of). A run that is still open is refused: its cleanup would pull the instances from
under it (cancel it: a drill cancelled after ACTIVATE started cleans up after itself).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from drctl.errors import EXIT_FAILED, fail
from drctl.run_cmd import START_INITIATOR, START_TOKEN
from drctl.temporal_access import claimed_subject, connect_client, describe_run, guard, require_token


@click.command("cleanup")
@click.argument("workflow_id")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False), default=None,
              help="The plan to clean up with (default: the plan WORKFLOW_ID was started with, read from its "
                   "history).")
@START_TOKEN
@START_INITIATOR
@click.option("--wait", is_flag=True, help="Follow the cleanup and list what it removed; exit 0 only if it completed.")
def cleanup(workflow_id: str, plan_file: str | None, token: str | None, initiator: str | None, wait: bool) -> None:
    """Clean up after the drill WORKFLOW_ID (closed): terminate its DRS drill instances, delete its drill copies...
    everything its plan's CLEANUP phase removes, found by the run's tags. Prints the cleanup run's workflow id."""
    plan = _load(plan_file) if plan_file else None
    token = require_token(token)
    sys.exit(asyncio.run(guard(_cleanup(workflow_id, plan, token, initiator, wait), workflow_id)))


def _load(plan_file: str) -> Any:
    from activities.core.registry import catalogue
    from plans.errors import PlanError
    from plans.loader import load_plan

    try:
        return load_plan(plan_file, catalogue=catalogue())
    except PlanError as exc:
        click.echo(exc.render(), err=True)
        raise SystemExit(2) from None


async def _cleanup(workflow_id: str, plan: Any, token: str, initiator: str | None, wait: bool) -> int:
    from temporalio.client import WorkflowExecutionStatus

    from contracts.lifecycle import LifecycleInput, LifecycleState, RunOptions
    from drctl.run_cmd import launch
    from drctl.watch import watch_run
    from plans.model import Mode, Phase

    client, settings = await connect_client()
    description = await describe_run(client, workflow_id)
    if description.status is WorkflowExecutionStatus.RUNNING:
        fail(f"{workflow_id} is still running: a cleanup now would pull its drill instances from under it. Cancel "
             f"it (`drctl drill cancel {workflow_id}`): a drill cancelled after ACTIVATE started cleans up after "
             f"itself; or let it end, then clean up", EXIT_FAILED)
    earlier, unreadable = await _input_of(client, workflow_id)
    if earlier is not None and earlier.mode is not Mode.DRILL:
        fail(f"{workflow_id} was a {earlier.mode.value} run: only a drill's artefacts are cleaned up "
             f"(a real failover keeps what it recovered)", EXIT_FAILED)
    if earlier is not None and earlier.options.cleanup_of:
        fail(f"{workflow_id} is itself a cleanup of {earlier.options.cleanup_of}: clean up "
             f"{earlier.options.cleanup_of}", EXIT_FAILED)
    if plan is None:
        if earlier is None:
            fail(f"cannot read the plan {workflow_id} ran from its history ({unreadable}): give it with --plan FILE")
        plan = earlier.plan
    run_input = LifecycleInput(
        plan=plan, mode=Mode.DRILL, initiator=initiator or claimed_subject(token), token=token,
        options=RunOptions(phases=[Phase.CLEANUP], cleanup_of=workflow_id,
                           cleanup_of_started_at=description.start_time))
    handle, link = await launch(client, settings, run_input)
    if not wait:
        return 0
    code = await watch_run(client, handle, link)
    state = await handle.query("status", result_type=LifecycleState)
    click.echo(f"Cleanup of {workflow_id}:")
    for phase in state.phases:
        for layer in phase.layers:
            for r in layer.resources:
                click.echo(f"  {layer.name}/{r.name}: {r.status.value}: {r.error or r.message}")
    return code


async def _input_of(client: Any, workflow_id: str) -> tuple[Any, str]:
    """The input RUN was started with, from the first event of its history; (None, why) when it cannot be read."""
    from contracts.lifecycle import LifecycleInput

    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        payloads = list(event.workflow_execution_started_event_attributes.input.payloads)
        if not payloads:
            return None, "it was started without input"
        try:
            [value] = await client.data_converter.decode(payloads[:1], [LifecycleInput])
        except Exception as exc:  # noqa: BLE001 - whatever the converter says, the operator can pass --plan
            return None, f"its input is not a run's input: {' '.join(str(exc).split())[:300]}"
        return value, ""
    return None, "its history is empty"
