"""`drctl audit WORKFLOW_ID`: the audit trail of a run (needs a token with view-audit)."""

from __future__ import annotations

import asyncio
import json

import click


@click.command("audit")
@click.argument("workflow_id")
@click.option("--token", envvar="DRCTL_TOKEN", show_envvar=True, default=None,
              help="Your signed identity token; auditor, recovery-manager or admin.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
def audit(workflow_id: str, token: str | None, as_json: bool) -> None:
    """Every decision on a run, denied attempts included: when, who (verified or claimed), roles, what, outcome."""
    from drctl.temporal_access import connect_client, guard, require_token
    from contracts.lifecycle import AuditEntry

    token = require_token(token)

    async def show() -> None:
        client, _ = await connect_client()
        entries = await client.get_workflow_handle(workflow_id).query("audit", token, result_type=list[AuditEntry])
        for entry in entries:
            if as_json:
                click.echo(json.dumps(entry.model_dump(mode="json")))
                continue
            who = entry.actor if entry.verified else f"{entry.actor} (unverified)"
            roles = f" [{', '.join(entry.roles)}]" if entry.roles else ""
            outcome = "allowed" if entry.accepted else "DENIED"
            why = f": {entry.reason}" if entry.reason else ""
            detail = f" ({entry.detail})" if entry.detail else ""
            # Which plan a start or a decision was about: what a change manager ties an approval to.
            decisive = entry.action.startswith(("start-", "approve", "reject"))
            plan = f" [plan {entry.plan_hash}]" if entry.plan_hash and decisive else ""
            click.echo(f"{entry.at:%Y-%m-%d %H:%M:%S}Z  {outcome:7}  {entry.action:24} {who}{roles}{why}{detail}"
                       f"{plan}")

    asyncio.run(guard(show(), workflow_id))
