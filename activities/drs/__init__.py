"""The AWS side of DRS recovery, as plain functions over boto3 clients that the DRS activities call.

Everything here works in batches (per job, per account and region), never per server, and every result is a
JSON-serializable model so it can cross an activity boundary. The code lives in `common`, `select`, `jobs` and
`instances`; this package's namespace is the one place callers import from.
"""

from __future__ import annotations

from activities.drs.common import ACTIVE_JOB_LOOKBACK, chunks, drs_errors, throttled
from activities.drs.instances import (
    RecoveryDetail,
    ReverseOutcome,
    drill_instances_of,
    sources_of,
    launched_by,
    recovery_details,
    recovery_instances_of,
    reverse_replication,
    terminate_recovery_instances,
)
from activities.drs.jobs import (
    active_jobs_holding,
    active_launch_jobs_of,
    QUOTA_CODES,
    TAG_CHUNK,
    TAG_WAVE,
    JobKey,
    JobProgress,
    Quotas,
    ServerLaunch,
    active_usage,
    describe_jobs,
    drs_quotas,
    find_job,
    find_jobs,
    job_done,
    last_log_events,
    server_outcome,
    start_or_find_job,
)
from activities.drs.select import (
    ServerInfo,
    format_lag,
    list_source_servers,
    parse_duration,
    recoverability,
    resolve_failback_selection,
    resolve_selection,
)

__all__ = [
    "active_jobs_holding", "active_launch_jobs_of",
    "ACTIVE_JOB_LOOKBACK", "QUOTA_CODES", "TAG_CHUNK", "TAG_WAVE", "JobKey", "JobProgress", "Quotas",
    "RecoveryDetail", "ReverseOutcome", "ServerInfo", "ServerLaunch", "active_usage", "chunks", "describe_jobs",
    "drill_instances_of", "sources_of", "drs_errors", "drs_quotas", "find_job", "find_jobs", "launched_by", "format_lag", "job_done", "last_log_events",
    "list_source_servers", "parse_duration", "recoverability", "recovery_details", "recovery_instances_of",
    "resolve_failback_selection", "resolve_selection", "reverse_replication", "server_outcome", "start_or_find_job",
    "terminate_recovery_instances", "throttled",
]
