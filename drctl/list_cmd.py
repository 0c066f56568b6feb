"""`drctl drill list`: the runs of DrLifecycleWorkflow, from Temporal's visibility store (the query the Temporal UI
and `temporal workflow list --query` run), filtered by the runs' search attributes.

`-o json` prints a list of objects, in the visibility store's order (open runs first, then the most recently closed),
with these keys (a stable contract; absent values are null):
workflow_id, run_id, plan, mode, phase, status (DrStatus), initiator, started_at, ended_at (ISO 8601, UTC),
duration_seconds (so far, for a run still open), execution_status (Temporal's: RUNNING, COMPLETED, FAILED,
TERMINATED...).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import click

from contracts.lifecycle import RunStatus
from drctl.output import output_option
from plans.model import Mode

# A plan name, as plans.model.Plan accepts it: anything else could not match, and could break the query's quoting.
_PLAN_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")
# Runs that ended without the workflow saying so keep their last DrStatus: the table says what Temporal saw.
_ENDED_FROM_OUTSIDE = ("TERMINATED", "TIMED_OUT", "CANCELED")


def _plan_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _PLAN_NAME.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a plan name (lowercase letters, digits and '-')")
    return value


@click.command("list")
@click.option("--plan", callback=_plan_name, help="Only runs of this plan (DrPlan).")
@click.option("--mode", type=click.Choice([m.value for m in Mode]), help="Only runs in this mode (DrMode).")
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), help="Only runs in this state (DrStatus).")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True, help="At most this many runs.")
@output_option("table", "json")
def list_runs(plan: str | None, mode: str | None, status: str | None, limit: int, output: str) -> None:
    """Runs of DrLifecycleWorkflow, however they were started: open ones first, then the most recently closed."""
    from drctl.output import echo_document
    from drctl.temporal_access import connect_client, guard

    async def find() -> list[dict[str, Any]]:
        client, _ = await connect_client()
        runs = client.list_workflows(visibility_query(plan, mode, status), limit=limit)
        return [row(execution) async for execution in runs]

    rows = asyncio.run(guard(find()))
    if output == "json":
        echo_document(rows, output)
    else:
        _print_table(rows)


def visibility_query(plan: str | None, mode: str | None, status: str | None) -> str:
    from contracts.lifecycle import WORKFLOW_TYPE

    terms = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
    for key, value in (("DrPlan", plan), ("DrMode", mode), ("DrStatus", status)):
        if value is not None:
            terms.append(f"{key} = '{value}'")
    # No ORDER BY: only Elasticsearch visibility supports it; every store lists open runs first, then the newest.
    return " AND ".join(terms)


def row(execution: Any) -> dict[str, Any]:
    from contracts.search_attributes import DR_INITIATOR, DR_MODE, DR_PHASE, DR_PLAN, DR_STATUS

    attributes = execution.typed_search_attributes
    started, ended = execution.start_time, execution.close_time
    return {
        "workflow_id": execution.id,
        "run_id": execution.run_id,
        "plan": attributes.get(DR_PLAN),
        "mode": attributes.get(DR_MODE),
        "phase": attributes.get(DR_PHASE),
        "status": attributes.get(DR_STATUS),
        "initiator": attributes.get(DR_INITIATOR),
        "started_at": started.astimezone(UTC).isoformat() if started else None,
        "ended_at": ended.astimezone(UTC).isoformat() if ended else None,
        "duration_seconds": round(((ended or datetime.now(UTC)) - started).total_seconds(), 1) if started else None,
        "execution_status": execution.status.name if execution.status is not None else None,
    }


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from drctl.output import console as stdout

    console = stdout()
    if not rows:
        console.print("no runs match", style="dim")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("WORKFLOW ID", "PLAN", "MODE", "PHASE", "STATUS", "INITIATOR", "STARTED", "DURATION"):
        table.add_column(column, no_wrap=column == "WORKFLOW ID")
    for r in rows:
        status = r["status"] or "-"
        if r["execution_status"] in _ENDED_FROM_OUTSIDE:
            status = f"{status} (workflow {r['execution_status']})"
        started = r["started_at"][:19].replace("T", " ") + "Z" if r["started_at"] else "-"
        took = r["duration_seconds"]
        table.add_row(r["workflow_id"], r["plan"] or "-", r["mode"] or "-", r["phase"] or "-", status,
                      r["initiator"] or "-", started, "-" if took is None else _duration(took))
    console.print(table)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
