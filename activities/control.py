"""Control steps that touch no AWS service: a timed wait between layers (DNS TTL expiry, application warm-up)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from activities.contract import Operation
from activities.registry import ModuleParameters, ServiceModule, register
from plans.model import PHASE_ORDER


class WaitParameters(ModuleParameters):
    seconds: int = Field(ge=1, le=24 * 3600)
    reason: str = ""


@register
class Wait(ServiceModule):
    action = "control.wait"
    summary = "Wait a fixed time (e.g. for a DNS TTL to expire); pause and cancel reach it"
    Parameters = WaitParameters
    phases = frozenset(PHASE_ORDER)

    def start(self, ctx: Any, params: WaitParameters) -> Operation:
        until = datetime.now(UTC) + timedelta(seconds=params.seconds)
        return self._at(until, params)

    def poll(self, ctx: Any, params: WaitParameters, handle: dict[str, Any]) -> Operation:
        return self._at(datetime.fromisoformat(handle["until"]), params)

    def status(self, ctx: Any, params: WaitParameters) -> dict[str, Any]:
        return {"seconds": params.seconds}

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
