"""Which source servers a protection group means right now: tags and explicit names resolved against live DRS,
and whether each one can be recovered."""

from __future__ import annotations

import re
from typing import Any

import structlog
from pydantic import BaseModel

from activities.core.aws import fatal
from activities.drs.common import paginate

log = structlog.get_logger("dr.drs")

HEALTHY_STATES = frozenset({"CONTINUOUS"})
# Recoverable, but from older data or not for long: a plan has to allow them explicitly.
WITH_CARE_STATES = frozenset({"INITIAL_SYNC", "RESCAN", "BACKLOG"})

_DURATION = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


class ServerInfo(BaseModel):
    source_server_id: str
    hostname: str | None = None
    arn: str | None = None
    replication_state: str | None = None
    lag_seconds: int | None = None
    tags: dict[str, str] = {}
    replication_direction: str | None = None
    last_launch_job_id: str | None = None
    recovery_instance_id: str | None = None
    origin_region: str | None = None
    origin_account: str | None = None
    reversed_arn: str | None = None  # the server on the other side of reverse replication

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> ServerInfo:
        replication = item.get("dataReplicationInfo") or {}
        cloud = item.get("sourceCloudProperties") or {}
        hints = (item.get("sourceProperties") or {}).get("identificationHints") or {}
        last_launch = ((item.get("lifeCycle") or {}).get("lastLaunch") or {}).get("initiated") or {}
        return cls(
            source_server_id=item["sourceServerID"],
            hostname=hints.get("hostname"),
            arn=item.get("arn"),
            replication_state=replication.get("dataReplicationState"),
            lag_seconds=parse_duration(replication.get("lagDuration")),
            tags=dict(item.get("tags") or {}),
            replication_direction=item.get("replicationDirection"),
            last_launch_job_id=last_launch.get("jobID"),
            recovery_instance_id=item.get("recoveryInstanceId"),
            origin_region=cloud.get("originRegion"),
            origin_account=cloud.get("originAccountID"),
            reversed_arn=item.get("reversedDirectionSourceServerArn"),
        )


def parse_duration(value: str | None) -> int | None:
    """Whole seconds of an ISO-8601 duration such as PT1H2M3S; None when absent or not a duration."""
    if not value:
        return None
    match = _DURATION.match(value.strip())
    if match is None or value.strip() in ("P", "PT"):
        return None
    return int(sum(float(n) * _UNIT_SECONDS[unit] for unit, n in match.groupdict().items() if n))


def format_lag(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs and not hours else ""]
    return "".join(parts) or "0s"


def recoverability(server: ServerInfo, allow_with_care: bool = False) -> str | None:
    """None when the server can be recovered now; otherwise why not, in words an operator acts on."""
    state = server.replication_state or "UNKNOWN"
    if state in HEALTHY_STATES or (allow_with_care and state in WITH_CARE_STATES):
        return None
    lag = f" (lag {format_lag(server.lag_seconds)})" if server.lag_seconds else ""
    care = ": recoverable only with care, not allowed by the plan" if state in WITH_CARE_STATES else ""
    return f"replication {state}{lag}{care}"


def list_source_servers(drs: Any) -> list[ServerInfo]:
    return [ServerInfo.from_wire(item) for item in paginate(drs, "describe_source_servers", "DescribeSourceServers")]


def _tags_match(tags: dict[str, str], wanted: dict[str, str | list[str]]) -> bool:
    for key, allowed in wanted.items():
        values = [allowed] if isinstance(allowed, str) else list(allowed)
        if key not in tags or tags[key] not in values:
            return False
    return True


def resolve_failback_selection(
    drs: Any,
    tags: dict[str, str | list[str]] | None = None,
    source_server_ids: list[str] | None = None,
    hostnames: list[str] | None = None,
    listing: list[ServerInfo] | None = None,
) -> list[ServerInfo]:
    """For a failback: the reversed servers (replicationDirection FAILBACK, in the original region) standing for what
    the selection means. The plan names the original servers, so an explicit id is matched through the reversed
    server's link back to its original (reversedDirectionSourceServerArn)."""
    tags, ids, names = tags or {}, list(source_server_ids or []), list(hostnames or [])
    servers = [s for s in (listing if listing is not None else list_source_servers(drs))
               if s.replication_direction == "FAILBACK"]
    original = {s.source_server_id: (s.reversed_arn or "").rsplit("/", 1)[-1] for s in servers}
    chosen = [s for s in servers
              if original[s.source_server_id] in ids or s.source_server_id in ids or s.hostname in names
              or (tags and _tags_match(s.tags, tags))]
    found_ids = {original[s.source_server_id] for s in chosen} | {s.source_server_id for s in chosen}
    missing = [f"source server {i}" for i in ids if i not in found_ids]
    missing += [f"hostname {h}" for h in names if h not in {s.hostname for s in chosen}]
    if missing:
        raise fatal("failback selection: " + "; ".join(f"{m} has no reversed (FAILBACK) server here: was reverse "
                                                        "replication started for it?" for m in missing),
                    "SourceServersNotFound")
    log.info("drs.failback_selection", matched=len(chosen), scanned=len(servers))
    return chosen


def resolve_selection(
    drs: Any,
    tags: dict[str, str | list[str]] | None = None,
    source_server_ids: list[str] | None = None,
    hostnames: list[str] | None = None,
    include_failback: bool = False,
    listing: list[ServerInfo] | None = None,
) -> list[ServerInfo]:
    """The servers a selection means now, in DRS's listing order: one DescribeSourceServers scan, tags matched here
    (DRS has no tag filter), unioned with the named servers; a named server that is not there is an error.
    `listing` (from `list_source_servers`) lets several selections in one account-region share one scan."""
    tags, ids, names = tags or {}, list(source_server_ids or []), list(hostnames or [])
    servers = listing if listing is not None else list_source_servers(drs)
    found_ids = {s.source_server_id for s in servers}
    found_names = {s.hostname for s in servers if s.hostname}
    missing = [f"source server {i}" for i in ids if i not in found_ids]
    missing += [f"hostname {h}" for h in names if h not in found_names]
    wanted_ids, wanted_names = set(ids), set(names)
    chosen, named_failback = [], []
    for server in servers:
        named = server.source_server_id in wanted_ids or server.hostname in wanted_names
        if not named and not (tags and _tags_match(server.tags, tags)):
            continue
        if server.replication_direction == "FAILBACK" and not include_failback:
            # A reversed server shares its hostname with the original: only an explicit id is a mistake to report.
            if server.source_server_id in wanted_ids:
                named_failback.append(server.source_server_id)
            continue
        chosen.append(server)
    if missing or named_failback:
        problems = [f"{m} not found in DRS" for m in missing]
        problems += [f"source server {i} replicates in the FAILBACK direction" for i in named_failback]
        raise fatal("selection: " + "; ".join(problems), "SourceServersNotFound")
    # A hostname matched only by failback servers is not there for a failover.
    unmatched = [h for h in names if h not in {s.hostname for s in chosen}]
    if unmatched:
        raise fatal("selection: " + "; ".join(f"hostname {h} not found in DRS (only a FAILBACK server has it)"
                                              for h in unmatched), "SourceServersNotFound")
    log.info("drs.selection", matched=len(chosen), scanned=len(servers))
    return chosen
