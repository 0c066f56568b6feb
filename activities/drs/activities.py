"""The DRS activities DrsRecoveryWorkflow calls: each covers one account+region and many servers, built from the
blocks in `activities.drs`. All are sync (boto3 blocks) and idempotent, so Temporal may retry any of them freely.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.core.aws import AwsClients, fatal
from activities.core.heartbeat import resumed
from activities.drs.common import drs_errors, drs_time
from contracts.drs import (
    DRS_APPLY_LAUNCH,
    DRS_CLEANUP_DRILL,
    DRS_QUOTAS,
    DRS_REREAD_JOBS,
    DRS_RESOLVE,
    DRS_REVERSE,
    DRS_START_JOB,
    DRS_WATCH_JOBS,
    ApplyLaunchResult,
    ChunkJob,
    CleanupRequest,
    CleanupResult,
    DrsTarget,
    InstanceDetail,
    GroupRequest,
    JobState,
    LaunchedInstance,
    LaunchRequest,
    QuotaLimits,
    RereadRequest,
    RereadResult,
    ResolvedServer,
    ResolveRequest,
    ResolveResult,
    ReverseRequest,
    ReverseResult,
    ServerLaunchState,
    StartJobRequest,
    StartJobResult,
    WatchJobsRequest,
    WatchJobsResult,
)
from activities.drs.launch import LaunchProgress, apply_launch_settings, desired_for
from activities.drs import (
    active_jobs_holding,
    active_launch_jobs_of,
    JobKey,
    JobProgress,
    ServerInfo,
    active_usage,
    describe_jobs,
    drill_instances_of,
    drs_quotas,
    find_jobs,
    last_log_events,
    launched_by,
    list_source_servers,
    recoverability,
    recovery_details,
    recovery_instances_of,
    sources_of,
    resolve_failback_selection,
    resolve_selection,
    reverse_replication,
    start_or_find_job,
    terminate_recovery_instances,
)

log = structlog.get_logger("dr.drs")

# Snapshot lookups are one call per server: heartbeat every so many, so a large group does not look hung.
_SNAPSHOT_HEARTBEAT_EVERY = 25


class DrsActivities:
    """Holds the process-wide AWS client cache; one instance per worker."""

    def __init__(self, aws: AwsClients) -> None:
        self.aws = aws

    def all(self) -> list[Any]:
        return [self.quotas, self.resolve, self.start_job, self.watch_jobs, self.reread_jobs, self.cleanup_drill,
                self.reverse, self.apply_launch]

    def _drs(self, target: DrsTarget) -> Any:
        return self.aws.client("drs", target.account, target.region)

    @activity.defn(name=DRS_QUOTAS)
    def quotas(self, target: DrsTarget) -> QuotaLimits:
        limits = drs_quotas(self.aws.client("service-quotas", target.account, target.region))
        jobs, servers = active_usage(self._drs(target))
        log.info("drs.quotas", target=target.key, active_jobs=jobs, servers_in_use=servers)
        return QuotaLimits(**limits.model_dump(), active_jobs_in_use=jobs, servers_in_use=servers)

    @activity.defn(name=DRS_RESOLVE)
    def resolve(self, request: ResolveRequest) -> ResolveResult:
        by_target: dict[str, list[GroupRequest]] = defaultdict(list)
        for group in request.groups:
            by_target[group.target.key].append(group)
        resolved: list[ResolvedServer] = []
        for n, groups in enumerate(by_target.values()):
            activity.heartbeat({"targets_done": n})
            resolved += self._resolve_target(groups, request.point_in_time, request.execution_id)
        return ResolveResult(servers=resolved)

    def _resolve_target(self, groups: list[GroupRequest], point_in_time: datetime | None,
                        execution_id: str | None = None) -> list[ResolvedServer]:
        target = groups[0].target
        drs = self._drs(target)
        listing = list_source_servers(drs)
        chosen: dict[str, tuple[ServerInfo, GroupRequest]] = {}
        clashes: dict[str, list[str]] = {}
        for group in groups:
            sel = group.selection
            select = resolve_failback_selection if group.failback else resolve_selection
            for server in select(drs, tags=dict(sel.tags), source_server_ids=sel.source_server_ids,
                                 hostnames=sel.hostnames, listing=listing):
                sid = server.source_server_id
                if sid in chosen and chosen[sid][1].group != group.group:
                    clashes.setdefault(sid, [chosen[sid][1].group]).append(group.group)
                chosen.setdefault(sid, (server, group))
        if clashes:
            # A server in two groups would be launched twice (or by the wrong wave): the plan must say which.
            named = "; ".join(f"{sid} ({_hostname(chosen[sid][0])}) in groups {', '.join(gs)}"
                              for sid, gs in clashes.items())
            raise fatal(f"source servers selected by more than one protection group in {target.key}: {named}",
                        "ServerInTwoGroups")
        busy = active_jobs_holding(drs, list(chosen))
        servers = [
            ResolvedServer(
                id=sid, hostname=info.hostname, group=group.group, impact=group.impact, target_key=target.key,
                replication_state=info.replication_state or "UNKNOWN", lag_seconds=info.lag_seconds,
                problem=None if group.allow_unhealthy else recoverability(info),
            )
            for sid, (info, group) in chosen.items()
        ]
        # A server another run (or a console user) is recovering right now would only meet a ConflictException.
        for resolved in servers:
            holder = busy.get(resolved.id)
            if holder and holder[1] != execution_id:
                who = f"execution {holder[1]}" if holder[1] else "started outside this orchestrator"
                resolved.problem = f"in active DRS job {holder[0]} ({who})"
        if point_in_time is not None:
            self._choose_snapshots(drs, servers, point_in_time)
        log.info("drs.resolved", target=target.key, groups=len(groups), servers=len(servers),
                 problems=sum(1 for s in servers if s.problem))
        return servers

    def _choose_snapshots(self, drs: Any, servers: list[ResolvedServer], point_in_time: datetime) -> None:
        until = drs_time(point_in_time)
        # Servers that cannot be recovered anyway are not worth a call each.
        for n, server in enumerate(s for s in servers if s.problem is None):
            if n and n % _SNAPSHOT_HEARTBEAT_EVERY == 0:
                activity.heartbeat({"snapshots_looked_up": n})
            snapshot_id = _latest_snapshot_before(drs, server.id, until)
            if snapshot_id is None:
                server.problem = f"no snapshot before {until}"
            server.snapshot_id = snapshot_id

    @activity.defn(name=DRS_START_JOB)
    def start_job(self, request: StartJobRequest) -> StartJobResult:
        key = JobKey(execution_id=request.execution_id, wave=request.wave, chunk=request.chunk)
        wanted = set(request.server_ids)
        snapshots = {sid: snap for sid, snap in request.snapshot_ids.items() if sid in wanted}
        job = start_or_find_job(self._drs(request.target), key, request.server_ids, request.is_drill,
                                since=request.since, snapshot_ids=snapshots)
        return StartJobResult(job_id=job["jobID"])

    @activity.defn(name=DRS_WATCH_JOBS)
    def watch_jobs(self, request: WatchJobsRequest) -> WatchJobsResult:
        drs = self._drs(request.target)
        deadline = time.monotonic() + request.max_wait_seconds
        polls = 0
        while True:
            states = [_job_state(job) for job in describe_jobs(drs, request.job_ids)]
            polls += 1
            changed = [s for s in states if request.known.get(s.job_id) != s.signature()]
            if len(states) < len(set(request.job_ids)):
                found = {s.job_id for s in states}
                log.warning("drs.watch.jobs_missing", missing=[j for j in request.job_ids if j not in found])
            activity.heartbeat({"polls": polls, "changed": len(changed)})
            remaining = deadline - time.monotonic()
            if changed or remaining <= 0:
                for state in changed:
                    if state.settled or any(s.launch_status == "FAILED" for s in state.servers.values()):
                        state.last_events = _events(drs, state.job_id)
                self._describe_instances(request.target, drs, changed)
                log.info("drs.watch.returned", jobs=len(states), changed=len(changed), polls=polls)
                return WatchJobsResult(jobs=states)
            activity.wait_for_cancelled_sync(timedelta(seconds=min(request.poll_seconds, remaining)))
            if activity.is_cancelled():
                log.warning("drs.watch.cancelled", polls=polls)
                raise CancelledError("watch cancelled; the DRS jobs themselves keep running")

    @activity.defn(name=DRS_REREAD_JOBS)
    def reread_jobs(self, request: RereadRequest) -> RereadResult:
        """The chunks' jobs found again by their tags (an id the workflow holds may be stale or gone) and the
        recovery instances they launched: after losing track, servers are judged by what DRS says now."""
        drs = self._drs(request.target)
        keys = [JobKey(execution_id=request.execution_id, wave=c.wave, chunk=c.chunk) for c in request.chunks]
        tagged = find_jobs(drs, keys, request.since)
        # A job the workflow knows but that the tags do not find (retagged, or older than `since`): read by its id.
        known = [c.job_id for c in request.chunks if c.job_id and (c.wave, c.chunk) not in tagged]
        by_id = {j.job_id: j for j in describe_jobs(drs, known)} if known else {}
        found: list[ChunkJob] = []
        for chunk in request.chunks:
            wire = tagged.get((chunk.wave, chunk.chunk))
            progress = JobProgress.from_wire(wire) if wire else by_id.get(chunk.job_id or "")
            if progress is not None:
                state = _job_state(progress)
                if state.settled or any(s.launch_status == "FAILED" for s in state.servers.values()):
                    state.last_events = _events(drs, state.job_id)
                found.append(ChunkJob(wave=chunk.wave, chunk=chunk.chunk, job=state))
        self._describe_instances(request.target, drs, [c.job for c in found])
        job_ids = {c.job.job_id for c in found} | {c.job_id for c in request.chunks if c.job_id}
        ec2 = self.aws.client("ec2", request.target.account, request.target.region)
        instances = {sid: LaunchedInstance(recovery_instance_id=d.recovery_instance_id, job_id=d.job_id,
                                           ec2_instance_id=d.ec2_instance_id, private_ip=d.private_ip)
                     for sid, d in launched_by(drs, ec2, [s for c in request.chunks for s in c.server_ids],
                                               job_ids).items()}
        log.info("drs.reread", target=request.target.key, chunks=len(request.chunks), jobs=len(found),
                 instances=len(instances))
        return RereadResult(jobs=found, instances=instances)

    def _describe_instances(self, target: DrsTarget, drs: Any, states: list[JobState]) -> None:
        """EC2 instance and private IP of the servers that launched, for the status query (only on a change)."""
        launched = {launch.recovery_instance_id: (state, sid) for state in states
                    for sid, launch in state.servers.items()
                    if launch.launch_status == "LAUNCHED" and launch.recovery_instance_id}
        if not launched:
            return
        ec2 = self.aws.client("ec2", target.account, target.region)
        for rid, detail in recovery_details(drs, ec2, list(launched)).items():
            state, sid = launched[rid]
            state.instances[sid] = InstanceDetail(ec2_instance_id=detail.ec2_instance_id, private_ip=detail.private_ip)

    @activity.defn(name=DRS_CLEANUP_DRILL)
    def cleanup_drill(self, request: CleanupRequest) -> CleanupResult:
        drs = self._drs(request.target)
        # Read first: a launch that completes between the two reads is found by the next cleanup round.
        launching = active_launch_jobs_of(drs, request.execution_id, request.since)
        ids = drill_instances_of(drs, request.execution_id)
        # An instance whose source server is still in one of the execution's running LAUNCH jobs (a stuck server
        # keeps the job, and so every server in it, busy): DRS would refuse the whole terminate request. Those wait
        # for the job; the others go now.
        busy = {sid: job.job_id for job in launching for sid in job.server_ids}
        held = {rid: busy[sid] for rid, sid in sources_of(drs, ids).items() if sid in busy}
        ids = [rid for rid in ids if rid not in held]
        jobs = terminate_recovery_instances(drs, ids, request.since)
        log.info("drs.cleanup", target=request.target.key, execution=request.execution_id, instances=len(ids),
                 terminate_jobs=jobs, launching=[j.job_id for j in launching])
        return CleanupResult(recovery_instance_ids=ids, terminate_job_ids=jobs,
                             active_launch_job_ids=[j.job_id for j in launching], active_launches=launching,
                             held=held)

    @activity.defn(name=DRS_REVERSE)
    def reverse(self, request: ReverseRequest) -> ReverseResult:
        drs = self._drs(request.target)
        # Only what this execution recovered for real: drills have nothing to fail back.
        ids = recovery_instances_of(drs, request.execution_id, is_drill=False)
        outcomes = reverse_replication(drs, ids)
        result = ReverseResult(
            reversed={rid: o.reversed_source_server_arn for rid, o in outcomes.items() if o.reversed_source_server_arn},
            needs_failback_client=[rid for rid, o in outcomes.items() if o.needs_failback_client],
            errors={rid: o.error for rid, o in outcomes.items() if o.error},
        )
        log.info("drs.reverse", target=request.target.key, execution=request.execution_id,
                 reversed=len(result.reversed), failback_client=len(result.needs_failback_client),
                 errors=len(result.errors))
        return result

    @activity.defn(name=DRS_APPLY_LAUNCH)
    def apply_launch(self, request: LaunchRequest) -> ApplyLaunchResult:
        """Group by group, server by server (activities.drs.launch). A permanent error on a server (a static
        address outside its subnet) fails that server's group alone, naming the server. Progress goes into the
        heartbeat details, so a retried attempt continues where the last one stopped."""
        target = request.target
        drs, ec2 = self._drs(target), self.aws.client("ec2", target.account, target.region)
        progress = resumed(LaunchProgress)
        if progress.done or progress.failed:
            log.info("drs.launch.resumed", target=target.key, done=len(progress.done), failed=len(progress.failed))

        def report() -> None:
            activity.heartbeat(progress.model_dump(mode="json"))

        for group in request.groups:
            if group.group in progress.failed:
                continue
            try:
                apply_launch_settings(drs, ec2, [(s, desired_for(s, group.settings)) for s in group.servers],
                                      progress, report, _pause)
            except ApplicationError as err:
                if not err.non_retryable:
                    raise
                progress.failed[group.group] = err.message
                report()
        groups = {server.id: group.group for group in request.groups for server in group.servers}
        for change in progress.changes:
            change.group = groups[change.server_id]
        log.info("drs.launch", target=target.key, servers=len(groups), changed=len(progress.changes),
                 failed_groups=sorted(progress.failed))
        return ApplyLaunchResult(changes=progress.changes, unchanged=len(progress.done) - len(progress.changes),
                                 failed=progress.failed)


def _pause(seconds: float) -> None:
    """Sleep, unless the activity is cancelled meanwhile (then stop)."""
    activity.wait_for_cancelled_sync(timedelta(seconds=seconds))
    if activity.is_cancelled():
        raise CancelledError("cancelled while waiting to try a throttled server again")


def _hostname(server: ServerInfo) -> str:
    return server.hostname or "no hostname"


def _latest_snapshot_before(drs: Any, server_id: str, until: str) -> str | None:
    # One small page is enough: newest first, so the answer is at its head (the max guards against DRS ordering by
    # the expected rather than the actual time).
    with drs_errors(f"DescribeRecoverySnapshots {server_id}"):
        page = drs.describe_recovery_snapshots(sourceServerID=server_id, order="DESC", maxResults=5,
                                               filters={"toDateTime": until})
    items = [i for i in page.get("items") or [] if i.get("timestamp")]
    return max(items, key=lambda i: i["timestamp"])["snapshotID"] if items else None


def _job_state(job: JobProgress) -> JobState:
    return JobState(
        job_id=job.job_id, status=job.status, settled=job.settled,
        servers={sid: ServerLaunchState(launch_status=s.status, recovery_instance_id=s.recovery_instance_id)
                 for sid, s in job.servers.items()},
    )


def _events(drs: Any, job_id: str) -> dict[str, str]:
    events: dict[str, str] = {}
    for sid, event in last_log_events(drs, job_id).items():
        text = str(event.get("event") or "?")
        events[sid] = f"{text}: {event['rawError']}" if event.get("rawError") else text
    return events

