"""A wave's verdict from its servers, whatever ended each (a failed launch, a job DRS refused, the wave's timeout):
any critical server not launched fails the wave; optional ones may fail up to the wave's maxFailedPercent."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.drs_recovery import ServerRecord, ServerStatus, WaveStatus


def judge(servers: list[ServerRecord], max_failed_percent: float, summary: str) -> tuple[WaveStatus, str]:
    """(SUCCEEDED | PARTIAL | FAILED, the wave's message), the message starting with `summary`."""
    critical = [s for s in servers if s.impact == "critical" and s.status.failed]
    optional = [s for s in servers if s.impact == "optional"]
    optional_failed = [s for s in optional if s.status.failed]
    if critical:
        return WaveStatus.FAILED, f"{summary}; critical servers failed: {names(critical, why=True)}"
    if optional_failed and 100 * len(optional_failed) / len(optional) > max_failed_percent:
        return WaveStatus.FAILED, (f"{summary}; {len(optional_failed)}/{len(optional)} optional servers failed, "
                                   f"more than the {max_failed_percent:g}% allowed")
    if optional_failed:
        return WaveStatus.PARTIAL, f"{summary}; {len(optional_failed)} optional failed (allowed)"
    return WaveStatus.SUCCEEDED, summary


def names(servers: list[ServerRecord], limit: int = 5, why: bool = False) -> str:
    """The first servers' names; `why`: each with the reason it failed (a timed-out one's is said before)."""
    def name(s: ServerRecord) -> str:
        reason = s.detail if why and s.status is not ServerStatus.TIMED_OUT else None
        return f"{s.hostname or s.id} ({_short(reason)})" if reason else s.hostname or s.id
    return ", ".join(name(s) for s in servers[:limit]) + (" ..." if len(servers) > limit else "")


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def count(servers: list[ServerRecord]) -> str:
    """`1 optional server`, `2 critical servers`, `1 critical and 2 optional servers`."""
    by_impact = {impact: sum(s.impact == impact for s in servers) for impact in ("critical", "optional")}
    parts = " and ".join(f"{n} {impact}" for impact, n in by_impact.items() if n)
    return f"{parts} server{'s' if len(servers) > 1 else ''}"
