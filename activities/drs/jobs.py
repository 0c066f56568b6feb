"""DRS jobs: started at most once per (execution, wave, chunk) however often an activity is retried, read back in
batches, and judged per server."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import structlog
from botocore.exceptions import ClientError
from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from activities.core.aws import error_code
from activities.core.context import TAG_EXECUTION
from contracts.drs import ActiveLaunch
from activities.drs.common import (
    ACTIVE_JOB_LOOKBACK,
    CLOCK_SLACK,
    chunks,
    drs_errors,
    drs_time,
    list_max,
    paginate,
    utcnow,
)

log = structlog.get_logger("dr.drs")

TAG_WAVE = "dr:wave"
TAG_CHUNK = "dr:chunk"
_JOB_IDS_FILTER_MAX = 1000  # DescribeJobsRequestFiltersJobIDs in the 2020-02-26 model

Outcome = Literal["ok", "failed", "running"]


class JobKey(BaseModel):
    execution_id: str
    wave: str
    chunk: int

    def tags(self) -> dict[str, str]:
        return {TAG_EXECUTION: self.execution_id, TAG_WAVE: self.wave, TAG_CHUNK: str(self.chunk)}

    def matches(self, job: dict[str, Any]) -> bool:
        job_tags = job.get("tags") or {}
        return all(job_tags.get(k) == v for k, v in self.tags().items())


def _jobs_since(drs: Any, since: datetime) -> list[dict[str, Any]]:
    return paginate(drs, "describe_jobs", "DescribeJobs", filters={"fromDate": drs_time(since - CLOCK_SLACK)})


def find_job(drs: Any, key: JobKey, since: datetime) -> dict[str, Any] | None:
    """The job a previous attempt started for `key`, if any. `since` must not be later than the first attempt (the
    execution's start time is safe): the lookup reads jobs created from then on."""
    return find_jobs(drs, [key], since).get((key.wave, key.chunk))


def find_jobs(drs: Any, keys: list[JobKey], since: datetime) -> dict[tuple[str, int], dict[str, Any]]:
    """(wave, chunk) -> the job started for that key, by its tags, from one read of the jobs created since `since`."""
    jobs = _jobs_since(drs, since)
    chosen: dict[tuple[str, int], dict[str, Any]] = {}
    for key in keys:
        found = [job for job in jobs if key.matches(job)]
        if len(found) > 1:
            log.warning("drs.job.duplicates", key=key.tags(), jobs=[j["jobID"] for j in found])
        if found:
            # DRS lists newest first: the oldest is the one every earlier attempt would have found too.
            chosen[(key.wave, key.chunk)] = found[-1]
    return chosen


def start_or_find_job(
    drs: Any,
    key: JobKey,
    server_ids: list[str],
    is_drill: bool,
    *,
    since: datetime,
    snapshot_ids: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The job for `key`: found if an earlier attempt started it, started otherwise. Never a second job."""
    existing = find_job(drs, key, since)
    if existing is not None:
        log.info("drs.job.found", job=existing["jobID"], key=key.tags())
        return existing
    snapshot_ids = snapshot_ids or {}
    servers = [{"sourceServerID": sid, **({"recoverySnapshotID": snapshot_ids[sid]} if sid in snapshot_ids else {})}
               for sid in server_ids]
    what = f"StartRecovery {key.wave}/{key.chunk}"
    try:
        with drs_errors(what):
            job = drs.start_recovery(sourceServers=servers, isDrill=is_drill, tags=key.tags())["job"]
    except ClientError as exc:
        code = error_code(exc)
        if code == "ConflictException":
            # The earlier attempt may have started the job and died before returning it.
            existing = find_job(drs, key, since)
            if existing is not None:
                log.info("drs.job.found_after_conflict", job=existing["jobID"], key=key.tags())
                return existing
            raise _in_active_job(drs, exc, server_ids, what) from exc
        if code == "ServiceQuotaExceededException":
            quota = exc.response.get("quotaCode", "?")
            # The scheduler should have kept below the quotas; capacity frees as jobs finish, so a later try of the
            # concurrency quotas can pass. Servers per job is a fixed size this chunk already exceeds (the quota
            # is lower than Service Quotas said): no retry can pass, so its servers are settled at once.
            static = quota == QUOTA_CODES["servers_per_job"]
            raise ApplicationError(f"{what}: DRS quota {quota} exceeded: "
                                   f"{exc.response.get('Error', {}).get('Message', '')}",
                                   {"quotaCode": quota}, type="DrsQuotaExceeded", non_retryable=static) from exc
        raise
    log.info("drs.job.started", job=job["jobID"], key=key.tags(), servers=len(server_ids), drill=is_drill)
    return job


def _in_active_job(drs: Any, exc: ClientError, server_ids: list[str], what: str) -> ApplicationError:
    """DRS refused the job because a server is in another active job. Its ConflictException names at most the
    server (resourceId), never the job: the jobs are read to say which job holds each server and which execution
    started it (its dr:execution tag), so the run can say who holds them. Not retryable: the other job may run for
    an hour, far beyond any retry, and the wave must judge its servers now."""
    busy = active_jobs_holding(drs, server_ids)
    if not busy and exc.response.get("resourceId"):
        busy = {exc.response["resourceId"]: ("?", None)}
    named = ", ".join(f"{sid} (job {job}" + (f" of {execution})" if execution else ")")
                      for sid, (job, execution) in sorted(busy.items())) or "unknown servers"
    holders = {sid: {"job_id": job, "execution_id": execution} for sid, (job, execution) in busy.items()}
    return ApplicationError(f"{what}: source servers already in an active DRS job: {named}", {"holders": holders},
                            type="ServerInActiveJob", non_retryable=True)


def active_launch_jobs_of(drs: Any, execution_id: str, since: datetime) -> list[ActiveLaunch]:
    """The LAUNCH jobs tagged with `execution_id`, created from `since` on, that have not completed."""
    return [ActiveLaunch(job_id=job["jobID"], wave=(job.get("tags") or {}).get(TAG_WAVE),
                         created_at=job["creationDateTime"],
                         server_ids=[p["sourceServerID"] for p in job.get("participatingServers") or []])
            for job in _jobs_since(drs, since)
            if job.get("type") == "LAUNCH" and job.get("status") != "COMPLETED"
            and (job.get("tags") or {}).get(TAG_EXECUTION) == execution_id]


def active_jobs_holding(drs: Any, server_ids: list[str],
                        since: datetime | None = None) -> dict[str, tuple[str, str | None]]:
    """Which of `server_ids` an active job holds: that job's id and the execution that started it (its
    dr:execution tag; None when something other than this orchestrator started it)."""
    wanted = set(server_ids)
    busy: dict[str, tuple[str, str | None]] = {}
    for job in _jobs_since(drs, since or utcnow() - ACTIVE_JOB_LOOKBACK):
        if job.get("status") == "COMPLETED":
            continue
        for server in job.get("participatingServers") or []:
            if server.get("sourceServerID") in wanted:
                busy.setdefault(server["sourceServerID"], (job["jobID"], (job.get("tags") or {}).get(TAG_EXECUTION)))
    return busy


class ServerLaunch(BaseModel):
    status: str
    recovery_instance_id: str | None = None


class JobProgress(BaseModel):
    job_id: str
    status: str
    type: str | None = None
    created: str | None = None
    ended: str | None = None
    servers: dict[str, ServerLaunch] = {}

    @classmethod
    def from_wire(cls, job: dict[str, Any]) -> JobProgress:
        return cls(
            job_id=job["jobID"], status=job.get("status", "PENDING"), type=job.get("type"),
            created=job.get("creationDateTime"), ended=job.get("endDateTime"),
            servers={p["sourceServerID"]: ServerLaunch(status=p.get("launchStatus", "PENDING"),
                                                       recovery_instance_id=p.get("recoveryInstanceID"))
                     for p in job.get("participatingServers") or []},
        )

    def outcomes(self) -> dict[str, Outcome]:
        return {sid: server_outcome(s.status) for sid, s in self.servers.items()}

    @property
    def settled(self) -> bool:
        """Nothing more will change: the job is done and no server is still launching."""
        return job_done(self) and all(o != "running" for o in self.outcomes().values())


def job_done(job: JobProgress | dict[str, Any]) -> bool:
    """The job itself has finished; it says nothing about its servers' success (see `server_outcome`)."""
    status = job.status if isinstance(job, JobProgress) else job.get("status")
    return status == "COMPLETED"


def server_outcome(launch_status: str) -> Outcome:
    """A server's result, from its own launchStatus: a COMPLETED job can still hold failed or launching servers."""
    if launch_status in ("LAUNCHED", "TERMINATED"):
        return "ok"
    if launch_status == "FAILED":
        return "failed"
    return "running"


def describe_jobs(drs: Any, job_ids: list[str], batch_size: int | None = None) -> list[JobProgress]:
    """Many jobs in few calls: DescribeJobs by id, as many ids per call as the model allows; in the order asked.
    A job DRS no longer knows is left out."""
    size = batch_size or list_max(drs, "DescribeJobsRequestFiltersJobIDs", _JOB_IDS_FILTER_MAX)
    unique = list(dict.fromkeys(job_ids))
    seen: dict[str, JobProgress] = {}
    for batch in chunks(unique, size):
        for job in paginate(drs, "describe_jobs", "DescribeJobs", filters={"jobIDs": batch}):
            seen[job["jobID"]] = JobProgress.from_wire(job)
    return [seen[j] for j in unique if j in seen]


def last_log_events(drs: Any, job_id: str) -> dict[str, dict[str, Any]]:
    """The newest job-log event of each server in a job: what it is doing, or why it failed."""
    latest: dict[str, dict[str, Any]] = {}
    for item in paginate(drs, "describe_job_log_items", f"DescribeJobLogItems {job_id}", jobID=job_id):
        data = item.get("eventData") or {}
        server_id = data.get("sourceServerID")
        if not server_id:
            continue
        at = item.get("logDateTime")
        previous = latest.get(server_id)
        # Items come oldest first; equal timestamps keep the later item, which DRS wrote after.
        if previous is not None and at is not None and previous["at"] is not None and str(at) < previous["at"]:
            continue
        event: dict[str, Any] = {"event": item.get("event"), "at": str(at) if at is not None else None}
        if data.get("rawError"):
            event["rawError"] = data["rawError"]
        latest[server_id] = event
    return latest


class Quotas(BaseModel):
    concurrent_jobs: int = 20
    servers_per_job: int = 100
    servers_in_active_jobs: int = 500


QUOTA_CODES = {"concurrent_jobs": "L-D88FAC3A", "servers_per_job": "L-B827C881",
               "servers_in_active_jobs": "L-05AFA8C6"}


def drs_quotas(service_quotas: Any) -> Quotas:
    """The account-region's DRS quotas from Service Quotas; the documented default for any it cannot give."""
    values: dict[str, int] = {}
    for name, code in QUOTA_CODES.items():
        try:
            values[name] = int(service_quotas.get_service_quota(ServiceCode="drs", QuotaCode=code)["Quota"]["Value"])
        except ClientError as exc:
            log.info("drs.quota.default", quota=code, reason=error_code(exc))
        except (KeyError, TypeError, ValueError):
            log.info("drs.quota.default", quota=code, reason="no value")
    return Quotas(**values)


def active_usage(drs: Any, since: datetime | None = None) -> tuple[int, int]:
    """(jobs in progress, source servers in them) in the client's account-region, as the quotas count them."""
    jobs = [j for j in _jobs_since(drs, since or utcnow() - ACTIVE_JOB_LOOKBACK) if j.get("status") != "COMPLETED"]
    return len(jobs), sum(len(j.get("participatingServers") or []) for j in jobs)


