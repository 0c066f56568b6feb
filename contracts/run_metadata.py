"""What a starter puts on a run for the Temporal UI: its static summary and details (User Metadata, shown at the top of
the run page and in the workflow list) and its memo. drctl and the demo use it; anyone starting a run with the
`temporal` CLI or an SDK can pass the same (`--static-summary`, `--static-details`, `--memo`). The workflow upserts
the memo itself, so runs started without it have one too."""

from __future__ import annotations

from typing import Any

from contracts.lifecycle import LifecycleInput


def run_memo(run_input: LifecycleInput) -> dict[str, str]:
    """The run's memo, the same whether the starter sets it or the run upserts it: plan, its hash, mode."""
    return {"plan": run_input.plan.name, "planHash": run_input.plan.digest(), "mode": run_input.mode.value}


def start_metadata(run_input: LifecycleInput) -> dict[str, Any]:
    """Keyword arguments for `Client.start_workflow`: static_summary, static_details and memo."""
    plan = run_input.plan
    accounts = ", ".join(f"{key} ({account.id})" for key, account in plan.accounts.items())
    phases = ", ".join(p.value for p in run_input.options.phases) if run_input.options.phases else "all four"
    memo = run_memo(run_input)
    details = [
        f"**Plan** `{plan.name}` {memo['planHash']}" + (f": {plan.description}" if plan.description else ""),
        f"**Mode** {run_input.mode.value}; **phases** {phases}",
        f"**Started by** {run_input.initiator} (the token's subject is what the run records)",
        f"**Accounts** {accounts}",
        "Current details (beside this) say where the run is now; the `status` query gives the whole state.",
    ]
    cleanup_of = run_input.options.cleanup_of
    if cleanup_of:
        details.insert(2, f"**Cleans up after** `{cleanup_of}`: its drill artefacts, found by their tags")
    return {
        "static_summary": f"{run_input.mode.value} of {plan.name} by {run_input.initiator}"
                          + (f": cleanup of {cleanup_of}" if cleanup_of else ""),
        "static_details": "\n\n".join(details),
        "memo": memo,
    }
