"""What every DRS building block shares: the error translation that lets Temporal's retry honour DRS's own backoff,
the model limits read from botocore, and the time format DRS filters take."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.core.aws import aws_errors, error_code

# DescribeJobs lists every job newest first and has no status filter; a job still active after this long is stuck
# beyond anything a wave would wait for, so scans for active jobs stop there instead of reading the whole history.
ACTIVE_JOB_LOOKBACK = timedelta(days=3)
# The worker's clock and DRS's may disagree; a lookup by creation time widens its window by this much.
CLOCK_SLACK = timedelta(minutes=5)
_DEFAULT_THROTTLE_DELAY = timedelta(seconds=1)
THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException"})


def throttled(exc: ClientError, what: str) -> ApplicationError:
    """A retryable error whose delay is the one DRS asked for, so Temporal's backoff does not hammer it sooner."""
    raw = exc.response.get("retryAfterSeconds") or exc.response.get("ResponseMetadata", {}).get(
        "HTTPHeaders", {}
    ).get("retry-after")
    try:
        delay = timedelta(seconds=max(int(float(raw)), 1)) if raw is not None else _DEFAULT_THROTTLE_DELAY
    except (TypeError, ValueError):
        delay = _DEFAULT_THROTTLE_DELAY
    return ApplicationError(f"{what}: throttled by DRS, retry after {delay.total_seconds():g}s",
                            type="Throttled", next_retry_delay=delay)


@contextmanager
def drs_errors(what: str) -> Iterator[None]:
    """`aws_errors`, plus throttling turned into an error that carries DRS's retryAfterSeconds."""
    with aws_errors(what):
        try:
            yield
        except ClientError as exc:
            if error_code(exc) in THROTTLING_CODES:
                raise throttled(exc, what) from exc
            raise


def list_max(client: Any, shape: str, default: int) -> int:
    """A list's maximum length from the client's own service model, so a newer model's limit is used as is."""
    try:
        return int(client.meta.service_model.shape_for(shape).metadata.get("max", default))
    except Exception:  # noqa: BLE001 -- an older model without the shape keeps the documented limit
        return default


def drs_time(moment: datetime) -> str:
    """The ISO-8601 form DRS date filters accept (UTC, whole seconds, `Z`)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


def chunks(ids: list[str], size: int) -> list[list[str]]:
    """Consecutive slices in the given order, so chunk N names the same servers on every retry."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


def paginate(client: Any, operation: str, what: str, **kwargs: Any) -> list[dict[str, Any]]:
    with drs_errors(what):
        return [item for page in client.get_paginator(operation).paginate(**kwargs) for item in page["items"]]
