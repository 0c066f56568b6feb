"""What the plain objects a workflow owns are given in place of workflow APIs they would otherwise call: a clock and a
way to run an activity. A run passes `workflow.now` and `workflow.execute_activity`; a unit test passes its own and
needs no Temporal server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from temporalio.common import RetryPolicy

Clock = Callable[[], datetime]


class ActivityRunner(Protocol):
    """Schedules an activity by name and answers its result (`workflow.execute_activity` in a run)."""

    def __call__(self, activity: str, arg: Any, *, result_type: type[Any], start_to_close_timeout: timedelta,
                 retry_policy: RetryPolicy, summary: str | None = None) -> Awaitable[Any]: ...
