"""Keep-alive heartbeats for every activity, from one place: the worker's activity interceptor.

A heartbeat timeout is how Temporal notices a lost worker (killed, partitioned) long before the start-to-close
timeout: after it, the activity is retried on another worker. Most of our activities spend their time in one
blocking call (a boto3 request with its own retries, a module's start) and could not heartbeat themselves without
sprinkling calls through every module. So while an activity whose call has a heartbeat timeout runs, this
interceptor heartbeats for it from the worker's event loop, a few times per timeout.

Each keep-alive re-sends the details of the activity's own latest heartbeat (or, before it sent any, those the
previous attempt left), so activities that keep progress in their details (a resource wait, launch settings) never
have it wiped by a bare keep-alive. What the activity is doing is not checked: a live worker whose call hangs is
stopped by the call's start-to-close timeout, which is therefore sized to the operation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

log = structlog.get_logger("dr.activities")

# Beats per heartbeat timeout: one lost or slow beat must not time the activity out.
BEATS_PER_TIMEOUT = 4

M = TypeVar("M", bound=BaseModel)


def resumed(model: type[M]) -> M:
    """The progress an earlier attempt of this activity heartbeated (its first detail, as `model`), or a fresh one."""
    details = activity.info().heartbeat_details
    if details:
        try:
            return model.model_validate(details[0])
        except ValidationError:
            log.warning("activity.heartbeat_details_unreadable", model=model.__name__)
    return model()


class KeepAlive(Interceptor):
    """Install on the worker (`Worker(..., interceptors=[KeepAlive()])`)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)


class _Outbound(ActivityOutboundInterceptor):
    """Remembers the details of the activity's own latest heartbeat, for the keep-alive to re-send."""

    def __init__(self, next: ActivityOutboundInterceptor) -> None:
        super().__init__(next)
        self.details: Sequence[Any] = ()

    def heartbeat(self, *details: Any) -> None:
        self.details = details
        super().heartbeat(*details)


class _Inbound(ActivityInboundInterceptor):
    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        self._outbound = _Outbound(outbound)
        super().init(self._outbound)

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        # Local activities cannot heartbeat; a call without a heartbeat timeout is never timed out by one.
        if info.is_local or not info.heartbeat_timeout:
            return await super().execute_activity(input)
        self._outbound.details = tuple(info.heartbeat_details)
        beats = asyncio.create_task(self._beat(info.heartbeat_timeout.total_seconds() / BEATS_PER_TIMEOUT))
        try:
            return await super().execute_activity(input)
        finally:
            beats.cancel()

    async def _beat(self, every: float) -> None:
        outbound = self._outbound
        while True:
            await asyncio.sleep(every)
            # Straight to the next interceptor: the details stay those the activity sent last.
            outbound.next.heartbeat(*outbound.details)
