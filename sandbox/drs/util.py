"""Small pieces the DRS emulator's models share: clock formatting, ids, ARNs."""

from __future__ import annotations

import hashlib
import random
import re
from datetime import UTC, datetime
from typing import Any

from sandbox.drs.exceptions import DrsError

_ARN = re.compile(r"^arn:aws:drs:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<kind>[a-z-]+)/(?P<id>[A-Za-z0-9-]+)$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """DRS's ISO8601DatetimeString pattern demands the `Z` suffix, not `+00:00`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DrsError("ValidationException", f"{field} is not an ISO-8601 date-time: {text!r}",
                       reason="fieldValidationFailed",
                       fieldList=[{"name": field, "message": "not an ISO-8601 date-time"}]) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time_part = f"{hours}H" * bool(hours) + f"{minutes}M" * bool(minutes) + f"{secs}S" * bool(secs or not (hours or minutes))
    return f"P{days}DT{time_part}" if days else f"PT{time_part}"


def hex_id(rng: random.Random, prefix: str, length: int = 17) -> str:
    return prefix + "".join(rng.choice("0123456789abcdef") for _ in range(length))


def stable_hex(prefix: str, *parts: object, length: int = 17) -> str:
    """Ids that must not depend on call order (snapshots regenerated on every read) hash their inputs instead."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return prefix + digest[:length]


def arn(region: str, account: str, kind: str, resource_id: str) -> str:
    return f"arn:aws:drs:{region}:{account}:{kind}/{resource_id}"


def parse_arn(text: str) -> tuple[str, str, str, str] | None:
    """(region, account, kind, id) of a DRS resource ARN, None if it is not one."""
    match = _ARN.match(text)
    if not match:
        return None
    return match["region"], match["account"], match["kind"], match["id"]



def prune(value: Any) -> Any:
    """Drop None members recursively: an absent member and a null one differ to strict clients."""
    if isinstance(value, dict):
        return {k: prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value
