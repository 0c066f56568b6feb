"""The DRS jobs of a recovery: started within the quotas of each account+region, watched per account+region (never
per server), and each server judged by its own launchStatus. A plain object the engine (workflows.drs_waves) owns;
same determinism rules: no I/O, time from `workflow.now()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from workflows.drs_options import HEARTBEAT, RETRY, SHORT, WATCH_SECONDS
from workflows.timeouts import heartbeat

with workflow.unsafe.imports_passed_through():
    from contracts.drs import (
        DRS_REREAD_JOBS,
        DRS_START_JOB,
        DRS_WATCH_JOBS,
        ChunkKey,
        DrsTarget,
        JobState,
        RereadRequest,
        RereadResult,
        StartJobRequest,
        StartJobResult,
        WatchJobsRequest,
        WatchJobsResult,
    )
    from contracts.drs_recovery import ChunkRecord, DrsRecoveryInput, DrsRecoveryState, ServerStatus, WaveStatus
    from plans.model import Mode

LOST_TRACK_PATCH = "drs-rereads-after-lost-track"
# A watch gives up after a few attempts (about half a minute): the workflow then backs off and reads the jobs again
# itself, until the wave's timeout, so a long outage costs no more retries than a short one and loses nothing.
WATCH_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                          maximum_interval=timedelta(seconds=10), maximum_attempts=4)
# A reading again must answer soon: a wave's timeout waits for it before judging.
REREAD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                           maximum_interval=timedelta(seconds=5), maximum_attempts=3)
LOST_FIRST_LOOK, LOST_LAST_LOOK = 5.0, 60.0  # seconds before looking again after losing track, doubling


class Jobs:
    def __init__(self, input: DrsRecoveryInput, state: DrsRecoveryState, wake: Callable[[], None],
                 look_again: Callable[[], None]) -> None:
        self.input = input
        self.state = state
        self._wake = wake  # something changed that the main loop must look at
        self._look_again = look_again  # the same, for a path that did not wake the loop before a patch
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._lost: dict[str, int] = {}  # account+region -> watches in a row that ran out of retries
        self.unreadable: dict[str, str] = {}  # account+region -> why DRS could not be read there, while it cannot

    def target(self, key: str) -> DrsTarget:
        return self.input.targets()[key]

    def cancel(self) -> None:
        for task in self._watchers.values():
            task.cancel()

    async def dispatch(self) -> None:
        """Start queued jobs, oldest wave first, while each account+region has room under its quotas."""
        for chunk in self.state.chunks:
            if chunk.job_id is not None or self.state.wave(chunk.wave).status is not WaveStatus.RUNNING:
                continue
            quota = self.state.quotas[chunk.target_key]
            active = [c for c in self.state.chunks if c.active and c.target_key == chunk.target_key]
            jobs_free = quota.concurrent_jobs - quota.active_jobs_in_use - len(active)
            servers_free = quota.servers_in_active_jobs - quota.servers_in_use - sum(len(c.server_ids) for c in active)
            if jobs_free < 1 or servers_free < len(chunk.server_ids):
                continue
            target = self.target(chunk.target_key)
            try:
                started = await workflow.execute_activity(
                    DRS_START_JOB, StartJobRequest(
                        target=target, execution_id=self.input.execution_id, wave=chunk.wave, chunk=chunk.chunk,
                        server_ids=chunk.server_ids, is_drill=self.input.mode is Mode.DRILL,
                        since=self.input.since,
                        snapshot_ids={s: self.state.servers[s].snapshot_id for s in chunk.server_ids
                                      if self.state.servers[s].snapshot_id}),
                    result_type=StartJobResult, start_to_close_timeout=SHORT, heartbeat_timeout=heartbeat(),
                    retry_policy=RETRY,
                    summary=f"wave {chunk.wave}: start a DRS {'drill' if self.input.mode is Mode.DRILL else 'recovery'}"
                            f" job for {len(chunk.server_ids)} server(s) in {chunk.target_key}")
            except ActivityError as err:
                # E.g. a server already in another execution's job: these servers fail, the others go on.
                chunk.job_id, chunk.started_at, chunk.settled_at = "", workflow.now(), workflow.now()
                holders = _holders(err)
                blocker = next((self._name(sid) + " " + self._holder_text(h) for sid, h in sorted(holders.items())),
                               None)
                for sid in chunk.server_ids:
                    self.fail_servers([sid], self._holder_text(holders[sid]) if sid in holders else
                                      f"not started: DRS refused its job because {blocker}" if blocker else
                                      f"job not started: {err.cause or err}")
                self._look_again()  # its wave may be over now: no watch will wake the loop for it
                continue
            chunk.job_id, chunk.started_at = started.job_id, workflow.now()
            for sid in chunk.server_ids:
                record = self.state.servers[sid]
                record.status, record.job_id = ServerStatus.LAUNCHING, started.job_id
                record.started_at = chunk.started_at

    def _name(self, server_id: str) -> str:
        record = self.state.servers.get(server_id)
        return (record.hostname if record else None) or server_id

    def _holder_text(self, holder: dict[str, Any]) -> str:
        job, execution = holder.get("job_id") or "?", holder.get("execution_id")
        if not execution:
            return f"in DRS job {job} (started outside this orchestrator)"
        if execution == self.input.execution_id:
            return f"in DRS job {job} of this run"
        return f"in DRS job {job} of run {execution} (started by another execution)"

    def watch_active(self) -> None:
        """A watch for each account+region with active jobs that has none running."""
        # Sorted: str hashes differ between worker processes, and watches must start in one order on every worker.
        for key in sorted({c.target_key for c in self.state.chunks if c.active}):
            if key not in self._watchers:
                self._watchers[key] = asyncio.create_task(self._watch(key))

    async def _watch(self, target_key: str) -> None:
        """One watch of one account+region's active jobs; the main loop starts the next, with any new jobs."""
        # Runs recorded before this failed every server of a watch that ran out of retries, and gave up on a job
        # missing from DescribeJobs, without asking DRS again.
        rereads = workflow.patched(LOST_TRACK_PATCH)
        try:
            chunks = {c.job_id: c for c in self.state.chunks if c.active and c.target_key == target_key}
            # CLEANUP's TERMINATE jobs (no servers) have no wave timeout to bound looking again: their watch keeps
            # its long retries.
            retry = WATCH_RETRY if rereads and all(c.server_ids for c in chunks.values()) else RETRY
            try:
                result = await workflow.execute_activity(
                    DRS_WATCH_JOBS, WatchJobsRequest(target=self.target(target_key), job_ids=sorted(chunks),
                                                     known={j: c.signature for j, c in chunks.items()},
                                                     max_wait_seconds=WATCH_SECONDS),
                    result_type=WatchJobsResult, start_to_close_timeout=timedelta(minutes=10),
                    heartbeat_timeout=HEARTBEAT, retry_policy=retry,
                    summary=f"follow {len(chunks)} DRS job(s) in {target_key} until they change")
            except ActivityError as err:
                reason = str(err.cause or err)
                if not rereads:
                    # DRS cannot be read for this account+region after every retry: fail its servers.
                    for chunk in chunks.values():
                        chunk.settled_at = workflow.now()
                        self.fail_servers(chunk.server_ids, f"job {chunk.job_id} could not be followed: {reason}")
                    return
                if isinstance(err.cause, CancelledError):
                    return  # the recovery is ending and cancelled its watches: nothing to look at again
                await self._lost_track(target_key, list(chunks.values()), reason)
                return
            self._lost.pop(target_key, None)
            self.unreadable.pop(target_key, None)
            seen = {job.job_id for job in result.jobs}
            gone = []
            for job_id, chunk in chunks.items():
                assert chunk.started_at is not None  # set with its job id
                # DRS no longer lists the job (deleted by someone, or not yet listed just after its start).
                if job_id not in seen and (workflow.now() - chunk.started_at).total_seconds() > 60:
                    gone.append(chunk)
            for job in result.jobs:
                self._apply(chunks[job.job_id], job)
            if gone and rereads:
                await self.reread(target_key, gone, gone=True)
            for chunk in gone if not rereads else []:
                chunk.settled_at = workflow.now()
                self.fail_servers(chunk.server_ids, f"job {chunk.job_id} disappeared from DRS")
        finally:
            self._watchers.pop(target_key, None)
            self._wake()

    async def _lost_track(self, target_key: str, chunks: list[ChunkRecord], reason: str) -> None:
        """The watch ran out of retries (a long DRS outage): DRS may launch the servers all the same, so nothing
        is judged now. Look again later, backing off; the wave's timeout bounds the wait (the main loop closes the
        wave then, after one more reading)."""
        for chunk in chunks:
            if not chunk.server_ids:  # a CLEANUP TERMINATE job, which no wave timeout bounds: given up as before
                chunk.settled_at = workflow.now()
        waiting = [c for c in chunks if c.server_ids]
        if not waiting:
            return
        failures = self._lost.get(target_key, 0) + 1
        self._lost[target_key] = failures
        self.unreadable[target_key] = reason
        delay = min(LOST_FIRST_LOOK * 2 ** (failures - 1), LOST_LAST_LOOK)
        await workflow.sleep(delay, summary=f"DRS in {target_key} could not be read: look again in {delay:g} s")
        await self.reread(target_key, [c for c in waiting if c.active])

    async def reread(self, target_key: str, chunks: list[ChunkRecord], gone: bool = False) -> bool:
        """Read `chunks`' jobs again by their tags, and the recovery instances they launched, and judge their servers
        by that; False (nothing judged) when DRS cannot be read. `gone`: DRS stopped listing these jobs, so a server
        that neither a job nor a recovery instance shows as launched has failed."""
        if not chunks:
            return True
        try:
            result = await workflow.execute_activity(
                DRS_REREAD_JOBS, RereadRequest(
                    target=self.target(target_key), execution_id=self.input.execution_id, since=self.input.since,
                    chunks=[ChunkKey(wave=c.wave, chunk=c.chunk, server_ids=c.server_ids, job_id=c.job_id or None)
                            for c in chunks]),
                result_type=RereadResult, start_to_close_timeout=SHORT, heartbeat_timeout=HEARTBEAT,
                retry_policy=REREAD_RETRY,
                summary=f"read {len(chunks)} DRS job(s) in {target_key} again by their tags, and what they launched")
        except ActivityError as err:
            self.unreadable[target_key] = str(err.cause or err)
            return False
        self.unreadable.pop(target_key, None)
        found = {(c.wave, c.chunk): c.job for c in result.jobs}
        for chunk in chunks:
            job = found.get((chunk.wave, chunk.chunk))
            if job is not None:
                if job.job_id != chunk.job_id:  # the job its tags name is the one its servers are in
                    chunk.job_id = job.job_id
                    for sid in chunk.server_ids:
                        self.state.servers[sid].job_id = job.job_id
                self._apply(chunk, job)
            # The job's launchStatus is DRS's word on a server; without the job, what it launched still is.
            for sid in chunk.server_ids if job is None else []:
                record, instance = self.state.servers[sid], result.instances.get(sid)
                if instance is not None and record.status is ServerStatus.LAUNCHING:
                    record.status, record.ended_at = ServerStatus.LAUNCHED, workflow.now()
                    record.recovery_instance_id = instance.recovery_instance_id
                    record.ec2_instance_id, record.private_ip = instance.ec2_instance_id, instance.private_ip
                    record.detail = f"launched (recovery instance {instance.recovery_instance_id} of job " \
                                    f"{instance.job_id})"
            if job is None and gone:
                chunk.settled_at = workflow.now()
                self.fail_servers(chunk.server_ids, f"job {chunk.job_id} disappeared from DRS, and DRS has no "
                                                    "recovery instance of this server from it")
            elif job is None and all(self.state.servers[s].status is not ServerStatus.LAUNCHING
                                     for s in chunk.server_ids):
                chunk.settled_at = workflow.now()
        self._wake()
        return True

    def _apply(self, chunk: ChunkRecord, job: JobState) -> None:
        """Judge each server of `chunk` by its own launchStatus in `job`, as DRS reports it."""
        chunk.signature = job.signature()
        if job.settled and chunk.settled_at is None:
            chunk.settled_at = workflow.now()
        for sid, launch in job.servers.items():
            record = self.state.servers.get(sid)
            if record is None or record.job_id != job.job_id or record.status is ServerStatus.TIMED_OUT:
                continue
            record.launch_status = launch.launch_status
            record.recovery_instance_id = launch.recovery_instance_id or record.recovery_instance_id
            record.detail = job.last_events.get(sid, record.detail)
            if sid in job.instances:
                record.ec2_instance_id = job.instances[sid].ec2_instance_id
                record.private_ip = job.instances[sid].private_ip
            previous = record.status
            if launch.launch_status == "LAUNCHED":
                record.status = ServerStatus.LAUNCHED
            elif launch.launch_status == "FAILED" or (job.settled and launch.launch_status != "LAUNCHED"):
                record.status = ServerStatus.FAILED
            if record.status is not previous:
                record.ended_at = workflow.now()

    def fail_servers(self, server_ids: list[str], detail: str) -> None:
        for sid in server_ids:
            record = self.state.servers[sid]
            if record.status in (ServerStatus.PENDING, ServerStatus.LAUNCHING):
                record.status, record.detail = ServerStatus.FAILED, detail


def _holders(err: ActivityError) -> dict[str, dict[str, Any]]:
    """Server id -> the job holding it and the execution that started that job, when the start activity was refused
    because servers are in another active job (its ServerInActiveJob error carries them)."""
    cause = err.cause
    if not isinstance(cause, ApplicationError) or cause.type != "ServerInActiveJob" or not cause.details:
        return {}
    details = cause.details[0]
    holders = details.get("holders") if isinstance(details, dict) else None
    return {str(k): v for k, v in holders.items() if isinstance(v, dict)} if isinstance(holders, dict) else {}
