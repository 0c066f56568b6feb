"""Recovery instances: what was launched (with EC2's view of it), which drill instances are this execution's, their
termination, and reverse replication for failback."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from botocore.exceptions import ClientError
from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from activities.core.aws import error_code, is_permanent
from activities.core.context import TAG_EXECUTION
from activities.drs.common import (
    ACTIVE_JOB_LOOKBACK,
    CLOCK_SLACK,
    THROTTLING_CODES,
    chunks,
    drs_errors,
    drs_time,
    list_max,
    paginate,
    throttled,
    utcnow,
)

log = structlog.get_logger("dr.drs")

_RECOVERY_IDS_MAX = 200  # DescribeRecoveryInstances filter and TerminateRecoveryInstances, 2020-02-26 model
_EC2_FILTER_VALUES = 200  # EC2 accepts at most 200 values in one filter
_GONE_STATES = frozenset({"TERMINATED", "SHUTTING-DOWN"})


class RecoveryDetail(BaseModel):
    recovery_instance_id: str
    source_server_id: str | None = None
    job_id: str | None = None
    is_drill: bool = False
    ec2_instance_id: str | None = None
    ec2_instance_state: str | None = None
    private_ip: str | None = None
    point_in_time: str | None = None


class ReverseOutcome(BaseModel):
    reversed_source_server_arn: str | None = None
    needs_failback_client: bool = False
    error: str | None = None


def _recovery_instances(drs: Any, ids: list[str] | None = None) -> list[dict[str, Any]]:
    if ids is None:
        return paginate(drs, "describe_recovery_instances", "DescribeRecoveryInstances")
    size = list_max(drs, "RecoveryInstanceIDs", _RECOVERY_IDS_MAX)
    found: list[dict[str, Any]] = []
    for batch in chunks(list(dict.fromkeys(ids)), size):
        found += paginate(drs, "describe_recovery_instances", "DescribeRecoveryInstances",
                          filters={"recoveryInstanceIDs": batch})
    return found


def _private_ips(ec2: Any, instance_ids: list[str]) -> dict[str, str | None]:
    ips: dict[str, str | None] = {}
    for batch in chunks(list(dict.fromkeys(instance_ids)), _EC2_FILTER_VALUES):
        # A filter rather than InstanceIds: one instance gone does not fail the whole batch.
        with drs_errors("DescribeInstances"):
            pages = ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": batch}])
            for page in pages:
                for reservation in page["Reservations"]:
                    for instance in reservation["Instances"]:
                        ips[instance["InstanceId"]] = instance.get("PrivateIpAddress")
    return ips


def recovery_details(drs: Any, ec2: Any, recovery_instance_ids: list[str]) -> dict[str, RecoveryDetail]:
    """What each recovery instance is, with its private IP from EC2; instances DRS no longer knows are left out."""
    items = _recovery_instances(drs, recovery_instance_ids) if recovery_instance_ids else []
    ips = _private_ips(ec2, [i["ec2InstanceID"] for i in items if i.get("ec2InstanceID")])
    return {
        i["recoveryInstanceID"]: RecoveryDetail(
            recovery_instance_id=i["recoveryInstanceID"], source_server_id=i.get("sourceServerID"),
            job_id=i.get("jobID"), is_drill=bool(i.get("isDrill")), ec2_instance_id=i.get("ec2InstanceID"),
            ec2_instance_state=i.get("ec2InstanceState"), private_ip=ips.get(i.get("ec2InstanceID", "")),
            point_in_time=i.get("pointInTimeSnapshotDateTime"),
        )
        for i in items
    }


def launched_by(drs: Any, ec2: Any, server_ids: list[str], job_ids: set[str]) -> dict[str, RecoveryDetail]:
    """Source server id -> its live recovery instance that one of `job_ids` launched: what DRS launched for these
    servers, also when the job itself can no longer be read."""
    size = list_max(drs, "SourceServerIDs", _RECOVERY_IDS_MAX)
    ids: list[str] = []
    for batch in chunks(list(dict.fromkeys(server_ids)), size):
        ids += [i["recoveryInstanceID"] for i in paginate(
            drs, "describe_recovery_instances", "DescribeRecoveryInstances", filters={"sourceServerIDs": batch})
            if i.get("jobID") in job_ids and str(i.get("ec2InstanceState", "")).upper() not in _GONE_STATES]
    details = recovery_details(drs, ec2, ids)
    return {d.source_server_id: d for d in details.values() if d.source_server_id}


def drill_instances_of(drs: Any, execution_id: str) -> list[str]:
    """This execution's drill instances: launched by a job tagged with its id. Never another execution's, whatever
    their names or sources say."""
    return recovery_instances_of(drs, execution_id, is_drill=True)


def recovery_instances_of(drs: Any, execution_id: str, is_drill: bool | None = None) -> list[str]:
    """This execution's live recovery instances (drills only, recoveries only, or both when `is_drill` is None):
    launched by a job tagged with its id, so another execution's are never included."""
    live = [i for i in _recovery_instances(drs) if i.get("jobID")
            and (is_drill is None or bool(i.get("isDrill")) == is_drill)
            and (i.get("ec2InstanceState") or "").upper() not in _GONE_STATES]
    ours = _jobs_tagged(drs, list(dict.fromkeys(i["jobID"] for i in live)), execution_id)
    return [i["recoveryInstanceID"] for i in live if i["jobID"] in ours]


def sources_of(drs: Any, ids: list[str]) -> dict[str, str]:
    """Recovery instance id -> its source server id."""
    return {i["recoveryInstanceID"]: i.get("sourceServerID", "") for i in _recovery_instances(drs, ids)} if ids else {}


def _jobs_tagged(drs: Any, job_ids: list[str], execution_id: str) -> set[str]:
    size = list_max(drs, "DescribeJobsRequestFiltersJobIDs", 1000)
    tagged: set[str] = set()
    for batch in chunks(job_ids, size):
        for job in paginate(drs, "describe_jobs", "DescribeJobs", filters={"jobIDs": batch}):
            if (job.get("tags") or {}).get(TAG_EXECUTION) == execution_id:
                tagged.add(job["jobID"])
    return tagged


def _terminate_jobs_holding(drs: Any, ids: set[str], since: datetime) -> dict[str, str]:
    """Recovery instance id -> the active TERMINATE job that already holds it (a previous attempt's)."""
    held: dict[str, str] = {}
    jobs = paginate(drs, "describe_jobs", "DescribeJobs", filters={"fromDate": drs_time(since - CLOCK_SLACK)})
    for job in jobs:
        if job.get("type") != "TERMINATE" or job.get("status") == "COMPLETED":
            continue
        for server in job.get("participatingServers") or []:
            rid = server.get("recoveryInstanceID")
            if rid in ids:
                held.setdefault(rid, job["jobID"])
    return held


def terminate_recovery_instances(drs: Any, ids: list[str], since: datetime | None = None) -> list[str]:
    """Terminate recovery instances, ≤200 per TERMINATE job; returns the jobs to wait for. A retry skips instances
    already gone and finds the TERMINATE jobs an earlier attempt started instead of starting them again."""
    since = since or utcnow() - ACTIVE_JOB_LOOKBACK
    if not ids:
        return []
    # Gone instances either drop out of DescribeRecoveryInstances or linger in a terminated state: skip both.
    live = [i["recoveryInstanceID"] for i in _recovery_instances(drs, ids)
            if (i.get("ec2InstanceState") or "").upper() not in _GONE_STATES]
    if not live:
        return []
    held = _terminate_jobs_holding(drs, set(live), since)
    job_ids = list(dict.fromkeys(held.values()))
    todo = [rid for rid in live if rid not in held]
    size = list_max(drs, "RecoveryInstancesForTerminationRequest", _RECOVERY_IDS_MAX)
    for batch in chunks(todo, size):
        try:
            with drs_errors("TerminateRecoveryInstances"):
                job = drs.terminate_recovery_instances(recoveryInstanceIDs=batch)["job"]
        except ClientError as exc:
            if error_code(exc) != "ConflictException":
                raise
            # Another job holds one of them (a launch that replaces it, or a terminate we did not see yet): that
            # job ends, so a later attempt can pass.
            raise ApplicationError(f"TerminateRecoveryInstances: {exc.response.get('Error', {}).get('Message', '')}",
                                   type="ServerInActiveJob") from exc
        job_ids.append(job["jobID"])
        log.info("drs.terminate.started", job=job["jobID"], instances=len(batch))
    if held:
        log.info("drs.terminate.found", jobs=sorted(set(held.values())), instances=len(held))
    return job_ids


def reverse_replication(drs: Any, recovery_instance_ids: list[str]) -> dict[str, ReverseOutcome]:
    """Start replication back to the origin for each EC2-origin recovery instance; an on-premises origin needs the
    failback client and is reported as such rather than tried."""
    instances = {i["recoveryInstanceID"]: i for i in _recovery_instances(drs, recovery_instance_ids)}
    results: dict[str, ReverseOutcome] = {}
    for rid in recovery_instance_ids:
        instance = instances.get(rid)
        if instance is None:
            results[rid] = ReverseOutcome(error="recovery instance not found")
        elif instance.get("originEnvironment") != "AWS":
            results[rid] = ReverseOutcome(needs_failback_client=True)
        else:
            results[rid] = _reverse_one(drs, rid, instance.get("sourceServerID"))
    return results


def _reverse_one(drs: Any, rid: str, source_server_id: str | None) -> ReverseOutcome:
    try:
        arn = drs.reverse_replication(recoveryInstanceID=rid)["reversedDirectionSourceServerArn"]
    except ClientError as exc:
        code = error_code(exc)
        if code in THROTTLING_CODES:
            raise throttled(exc, f"ReverseReplication {rid}") from exc
        # An earlier attempt may have reversed it already; the source server then names its reversed twin.
        existing = _reversed_arn(drs, source_server_id)
        if existing:
            return ReverseOutcome(reversed_source_server_arn=existing)
        if not (is_permanent(code) or code == "ConflictException"):
            raise
        # One instance that cannot be reversed is reported, not allowed to hide the others' results.
        return ReverseOutcome(error=f"{code}: {exc.response.get('Error', {}).get('Message', '')}")
    log.info("drs.reverse.started", recovery_instance=rid)
    return ReverseOutcome(reversed_source_server_arn=arn)


def _reversed_arn(drs: Any, source_server_id: str | None) -> str | None:
    if not source_server_id:
        return None
    items = paginate(drs, "describe_source_servers", "DescribeSourceServers",
                     filters={"sourceServerIDs": [source_server_id]})
    return items[0].get("reversedDirectionSourceServerArn") if items else None
