"""Control steps that touch no AWS service: a timed wait between layers (DNS TTL expiry, application warm-up).

DrLifecycleWorkflow runs `control.wait` as a workflow timer (see workflows/lifecycle_wait.py): the module stays
registered for plan validation, `drctl plan actions` and manifests, and its start/poll serve runs whose history
began before the timer (the `control-wait-timer` patch keeps them on the activity path until they end).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.activities import WAIT_ACTION, Operation, WaitParameters
from activities.core.context import ResourceContext
from activities.core.registry import ServiceModule, register
from plans.model import PHASE_ORDER


@register
class Wait(ServiceModule):
    action = WAIT_ACTION
    summary = "Wait a fixed time (e.g. for a DNS TTL to expire); pause and cancel reach it"
    Parameters = WaitParameters
    phases = frozenset(PHASE_ORDER)

    def start(self, ctx: ResourceContext, params: WaitParameters) -> Operation:
        until = datetime.now(UTC) + timedelta(seconds=params.seconds)
        return self._at(until, params)

    def poll(self, ctx: ResourceContext, params: WaitParameters, handle: dict[str, Any]) -> Operation:
        return self._at(datetime.fromisoformat(handle["until"]), params)

    @staticmethod
    def _at(until: datetime, params: WaitParameters) -> Operation:
        remaining = (until - datetime.now(UTC)).total_seconds()
        done = remaining <= 0
        why = f" ({params.reason})" if params.reason else ""
        return Operation(
            done=done,
            handle={"until": until.isoformat()},
            message=f"waited {params.seconds} s{why}" if done else f"waiting {params.seconds} s{why}",
            poll_interval_seconds=min(max(remaining, 0.2), 5.0),
        )
