"""Activity timeouts chosen for crash recovery: how long a lost worker may hold up a run.

Every activity call that can outlast a few seconds has a heartbeat timeout of HEARTBEAT; the worker heartbeats for
each running activity (activities.core.heartbeat), so when a worker dies its activities are retried elsewhere after
about HEARTBEAT, whatever their start-to-close timeout. Start-to-close is then sized to the operation: it only stops
a call that hangs on a live worker.

Runs recorded before this had no heartbeat timeout on these calls and other start-to-close timeouts:
`workflow.patched(HEARTBEATS_PATCH)` keeps them replaying as they ran (the patch is memoized per run, so every call
of one run agrees).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

HEARTBEAT = timedelta(seconds=20)
HEARTBEATS_PATCH = "activity-heartbeats"


def heartbeat(recorded: timedelta | None = None) -> timedelta | None:
    """The heartbeat timeout of a call that may take long: HEARTBEAT, or what a run recorded before it had."""
    return HEARTBEAT if workflow.patched(HEARTBEATS_PATCH) else recorded


def sized(timeout: timedelta, recorded: timedelta) -> timedelta:
    """The start-to-close timeout `timeout`, or `recorded` for a run recorded before timeouts were sized so."""
    return timeout if workflow.patched(HEARTBEATS_PATCH) else recorded
