"""The engine of DrsRecoveryWorkflow (workflows.drs_recovery): the recovery's state and what every phase shares (DRS
targets, job watches, ending waves and the recovery), and ACTIVATE, which runs the waves as a DAG.

A wave starts when every wave it depends on succeeded, its servers are resolved from their protection groups at that
moment, split per account+region into jobs no larger than the per-job quota, and started only while the
account+region has room under its concurrent-jobs and servers-in-jobs quotas (shared by every wave running at once).
Jobs are polled per account+region, never per server; each server is judged by its own launchStatus.

A plain object the workflow owns (same determinism rules: no I/O, time from `workflow.now()`).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

from workflows.claims import claim_servers
from workflows.hooks import WaveHooks
from workflows.run_details import drs_details
from workflows.timeouts import heartbeat

with workflow.unsafe.imports_passed_through():
    from contracts.drs import (
        DRS_QUOTAS,
        DRS_RESOLVE,
        DRS_START_JOB,
        DRS_WATCH_JOBS,
        DrsTarget,
        QuotaLimits,
        ResolveRequest,
        ResolveResult,
        StartJobRequest,
        StartJobResult,
        WatchJobsRequest,
        WatchJobsResult,
    )
    from plans.drs import Wave
    from plans.model import Mode
    from contracts.drs_recovery import (
        ChunkRecord,
        DrsRecoveryInput,
        DrsRecoveryResult,
        DrsRecoveryState,
        ServerRecord,
        ServerStatus,
        WaveRecord,
        WaveStatus,
    )
    from contracts.lifecycle import ChildGate, WaveDecision

# Short timeouts: when a worker dies mid-call, the call is retried on another worker after this long, not later.
SHORT = timedelta(minutes=1)
HEARTBEAT = timedelta(seconds=20)  # the long activities heartbeat every few seconds
RESOLVE = timedelta(minutes=15)  # thousands of servers, and a snapshot lookup each for a point in time
RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=1), maximum_attempts=10)
WATCH_SECONDS = 15.0
WAVE_LOOKS_AGAIN_PATCH = "wave-looks-again"


class Waves:
    def __init__(self, input: DrsRecoveryInput, state: DrsRecoveryState) -> None:
        self.input = input
        self.state = state
        self.definitions: dict[str, Wave] = {w.name: w for w in input.params.waves}
        self._approved: set[str] = set()
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self.wake = False  # something changed that the main loop (or CLEANUP's) must look at
        self._hooks = WaveHooks(input, state, self.end_wave, self._wake_up)

    def _wake_up(self) -> None:
        self.wake = True

    def _look_again(self) -> None:
        # Runs recorded before this waited for the wave's timeout here (a wave with nothing to watch hung).
        if workflow.patched(WAVE_LOOKS_AGAIN_PATCH):
            self.wake = True

    # ---- ACTIVATE ----------------------------------------------------------------------------------------------

    async def activate(self) -> None:
        for key, target in self.input.targets().items():
            self.state.quotas[key] = await workflow.execute_activity(
                DRS_QUOTAS, target, result_type=QuotaLimits, start_to_close_timeout=SHORT,
                heartbeat_timeout=heartbeat(), retry_policy=RETRY,
                summary=f"read the DRS quotas of {key}")
        try:
            while True:
                self.wake = False
                await self._advance()
                self.show()
                if all(w.status.finished for w in self.state.waves):
                    break
                if not self.wake:  # a wave that just ended may let its dependants start: advance again first
                    try:
                        await workflow.wait_condition(lambda: self.wake, timeout=self._next_deadline(),
                                                      timeout_summary="the next wave timeout")
                    except TimeoutError:
                        pass  # a wave's timeout is due: the next advance closes it
        finally:
            for task in self._watchers.values():
                task.cancel()
        self.finish()

    async def _advance(self) -> None:
        now = workflow.now()
        for record in self.state.waves:
            if record.status is WaveStatus.PENDING:
                await self._maybe_begin(record)
            elif record.status is WaveStatus.RUNNING:
                if all(self.state.servers[s].status is not ServerStatus.LAUNCHING for s in record.servers) and \
                        not any(c.job_id is None for c in self._chunks_of(record.name)):
                    self._close_wave(record)
                elif record.started_at and (now - record.started_at).total_seconds() >= \
                        self.definitions[record.name].timeout_seconds:
                    self._close_wave(record, timed_out=True)
        await self._dispatch()
        self.watch_active()

    async def _maybe_begin(self, record: WaveRecord) -> None:
        wave = self.definitions[record.name]
        deps = [self.state.wave(d) for d in wave.depends_on]
        if any(d.status.finished and not d.status.succeeded for d in deps):
            failed = ", ".join(d.name for d in deps if d.status.finished and not d.status.succeeded)
            self.end_wave(record, WaveStatus.SKIPPED, f"not started: it depends on {failed}, which did not succeed")
            return
        if not all(d.status.succeeded for d in deps):
            return
        limit = self.input.params.max_concurrent_waves
        if limit and sum(w.status is WaveStatus.RUNNING for w in self.state.waves) >= limit:
            return
        if wave.gated and record.name not in self._approved:
            # The lifecycle learns of the gate first (its approve/reject decide it), then the wave shows as waiting.
            await self._tell_parent("child_gate", ChildGate(
                child_workflow_id=workflow.info().workflow_id, wave=record.name, gate_id=self._gate_id(record.name),
                required=wave.approval.approvals if wave.approval else 1,
                roles=[r.value for r in wave.approval.roles] if wave.approval else []))
            if record.status is WaveStatus.PENDING and record.name not in self._approved:
                record.status = WaveStatus.AWAITING_APPROVAL
            else:
                self.wake = True  # decided while the parent was being told: approved goes on, rejected has ended
            return
        if not self._hooks.ready(record):
            return
        record.status, record.started_at = WaveStatus.RUNNING, workflow.now()
        groups = [self.input.groups[g] for g in wave.protection_groups]
        point_in_time = self.input.params.point_in_time
        resolved = await workflow.execute_activity(
            DRS_RESOLVE, ResolveRequest(groups=groups, execution_id=self.input.execution_id,
                                        point_in_time=None if point_in_time == "latest" else point_in_time),
            result_type=ResolveResult, start_to_close_timeout=RESOLVE, heartbeat_timeout=HEARTBEAT,
            retry_policy=RETRY, summary=f"wave {record.name}: find the source servers of "
                                        f"{', '.join(wave.protection_groups)}")
        taken = await claim_servers(self.input, record.name, resolved.servers)  # another open run's stay its own
        per_target: dict[str, list[str]] = {}
        for server in resolved.servers:
            if server.id in self.state.servers:
                self.end_wave(record, WaveStatus.FAILED, f"server {server.id} ({server.hostname}) is also in wave "
                               f"{self.state.servers[server.id].wave}")
                return
            self.state.servers[server.id] = ServerRecord(
                id=server.id, hostname=server.hostname, group=server.group, wave=record.name, impact=server.impact,
                target_key=server.target_key, snapshot_id=server.snapshot_id, detail=server.problem,
                status=ServerStatus.NOT_RECOVERABLE if server.problem else ServerStatus.PENDING,
                taken_from=taken.get(server.id))
            record.servers.append(server.id)
            if not server.problem:
                per_target.setdefault(server.target_key, []).append(server.id)
        for key, ids in per_target.items():
            size = self.state.quotas[key].servers_per_job
            for n, start in enumerate(range(0, len(ids), size)):
                self.state.chunks.append(ChunkRecord(wave=record.name, chunk=n, target_key=key,
                                                      server_ids=ids[start:start + size]))
        if not record.servers:
            self.end_wave(record, WaveStatus.FAILED, "its protection groups matched no source server")
            return
        if not per_target:
            self._look_again()  # nothing to launch (none recoverable): the next advance closes the wave
        record.message = f"{sum(len(v) for v in per_target.values())}/{len(record.servers)} servers recoverable, " \
                         f"{len(self._chunks_of(record.name))} job(s)" + \
                         (f"; {len(taken)} taken over from a drill" if taken else "")

    async def _dispatch(self) -> None:
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
                self._fail_servers(chunk.server_ids, f"job not started: {err.cause or err}")
                self._look_again()  # its wave may be over now: no watch will wake the loop for it
                continue
            chunk.job_id, chunk.started_at = started.job_id, workflow.now()
            for sid in chunk.server_ids:
                record = self.state.servers[sid]
                record.status, record.job_id = ServerStatus.LAUNCHING, started.job_id
                record.started_at = chunk.started_at

    def watch_active(self) -> None:
        """A watch for each account+region with active jobs that has none running."""
        # Sorted: str hashes differ between worker processes, and watches must start in one order on every worker.
        for key in sorted({c.target_key for c in self.state.chunks if c.active}):
            if key not in self._watchers:
                self._watchers[key] = asyncio.create_task(self._watch(key))

    async def _watch(self, target_key: str) -> None:
        """One watch of one account+region's active jobs; the main loop starts the next, with any new jobs."""
        try:
            chunks = {c.job_id: c for c in self.state.chunks if c.active and c.target_key == target_key}
            result = await workflow.execute_activity(
                DRS_WATCH_JOBS, WatchJobsRequest(target=self.target(target_key), job_ids=sorted(chunks),
                                                 known={j: c.signature for j, c in chunks.items()},
                                                 max_wait_seconds=WATCH_SECONDS),
                result_type=WatchJobsResult, start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=HEARTBEAT, retry_policy=RETRY,
                summary=f"follow {len(chunks)} DRS job(s) in {target_key} until they change")
        except ActivityError as err:
            # DRS cannot be read for this account+region after every retry: fail its servers rather than hang.
            for chunk in chunks.values():
                chunk.settled_at = workflow.now()
                self._fail_servers(chunk.server_ids, f"job {chunk.job_id} could not be followed: {err.cause or err}")
            self._watchers.pop(target_key, None)
            self.wake = True
            return
        try:
            seen = {job.job_id for job in result.jobs}
            for job_id, chunk in chunks.items():
                assert chunk.started_at is not None  # set with its job id
                # DRS no longer knows the job (deleted by someone): its servers' fate is unknown, so not launched.
                if job_id not in seen and (workflow.now() - chunk.started_at).total_seconds() > 60:
                    chunk.settled_at = workflow.now()
                    self._fail_servers(chunk.server_ids, f"job {job_id} disappeared from DRS")
            for job in result.jobs:
                chunk = chunks[job.job_id]
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
        finally:
            self._watchers.pop(target_key, None)
            self.wake = True

    def _fail_servers(self, server_ids: list[str], detail: str) -> None:
        for sid in server_ids:
            record = self.state.servers[sid]
            if record.status in (ServerStatus.PENDING, ServerStatus.LAUNCHING):
                record.status, record.detail = ServerStatus.FAILED, detail

    def _close_wave(self, record: WaveRecord, timed_out: bool = False) -> None:
        servers = [self.state.servers[s] for s in record.servers]
        if timed_out:
            for server in servers:
                if server.status in (ServerStatus.LAUNCHING, ServerStatus.PENDING):
                    server.status = ServerStatus.TIMED_OUT
        critical = [s for s in servers if s.impact == "critical" and s.status.failed]
        optional = [s for s in servers if s.impact == "optional"]
        optional_failed = [s for s in optional if s.status.failed]
        launched = sum(s.status is ServerStatus.LAUNCHED for s in servers)
        summary = f"{launched}/{len(servers)} launched"
        limit = self.definitions[record.name].max_failed_percent
        if timed_out:
            self.end_wave(record, WaveStatus.FAILED, f"timed out; {summary}")
        elif critical:
            names = ", ".join(s.hostname or s.id for s in critical[:5])
            self.end_wave(record, WaveStatus.FAILED, f"{summary}; critical servers failed: {names}"
                           + (" ..." if len(critical) > 5 else ""))
        elif optional_failed and 100 * len(optional_failed) / len(optional) > limit:
            self.end_wave(record, WaveStatus.FAILED, f"{summary}; {len(optional_failed)}/{len(optional)} optional "
                           f"servers failed, more than the {limit:g}% allowed")
        elif optional_failed:
            self._hooks.launched(record, WaveStatus.PARTIAL, f"{summary}; {len(optional_failed)} optional failed "
                                "(allowed)")
        else:
            self._hooks.launched(record, WaveStatus.SUCCEEDED, summary)

    def end_wave(self, record: WaveRecord, status: WaveStatus, message: str) -> None:
        record.status, record.message, record.ended_at = status, message, workflow.now()
        self.wake = True

    def _next_deadline(self) -> timedelta | None:
        now = workflow.now()
        remaining = [self.definitions[w.name].timeout_seconds - (now - w.started_at).total_seconds()
                     for w in self.state.waves if w.status is WaveStatus.RUNNING and w.started_at]
        return timedelta(seconds=max(min(remaining), 1)) if remaining else None

    # ---- gates, decided at the lifecycle run -----------------------------------------------------------------

    def approve(self, decision: WaveDecision) -> None:
        record = next((w for w in self.state.waves if w.name == decision.wave), None)
        if record is None or record.status not in (WaveStatus.PENDING, WaveStatus.AWAITING_APPROVAL):
            return
        self._approved.add(record.name)
        record.status = WaveStatus.PENDING
        self.wake = True

    def reject(self, decision: WaveDecision) -> None:
        record = next((w for w in self.state.waves if w.name == decision.wave), None)
        if record is None or record.name in self._approved or not self.definitions[record.name].gated or \
                record.status not in (WaveStatus.PENDING, WaveStatus.AWAITING_APPROVAL):
            return
        self.end_wave(record, WaveStatus.FAILED, f"rejected by {decision.actor}: {decision.reason}")

    def _gate_id(self, wave: str) -> str:
        """The lifecycle's gate id: this child's id without the "<lifecycle id>/" prefix, then "/wave:<name>"."""
        own, parent = workflow.info().workflow_id, workflow.info().parent
        prefix = f"{parent.workflow_id}/" if parent else ""
        if prefix and own.startswith(prefix):
            step = own[len(prefix):]  # "<PHASE>/<layer>/<resource>"
        else:
            step = f"{self.input.phase.value}/{self.input.resource}"
        return f"{step}/wave:{wave}"

    async def _tell_parent(self, signal: str, payload: ChildGate) -> None:
        parent = workflow.info().parent
        if parent is None:  # started on its own: only this workflow's `approve` decides its waves
            return
        try:
            await workflow.get_external_workflow_handle(parent.workflow_id).signal(signal, payload)
        except FailureError as err:  # the lifecycle has ended: this child is about to be closed with it
            workflow.logger.warning("could not signal %s to %s: %s", signal, parent.workflow_id, err)

    def _chunks_of(self, wave: str) -> list[ChunkRecord]:
        return [c for c in self.state.chunks if c.wave == wave]

    def target(self, key: str) -> DrsTarget:
        return self.input.targets()[key]

    def end_all(self, status: WaveStatus, message: str) -> None:
        for record in self.state.waves:
            self.end_wave(record, status, message)
        self.finish(message)

    def finish(self, message: str | None = None) -> None:
        waves = self.state.waves
        if any(not w.status.succeeded for w in waves):
            self.state.status = WaveStatus.FAILED
        elif any(w.status is WaveStatus.PARTIAL for w in waves):
            self.state.status = WaveStatus.PARTIAL
        else:
            self.state.status = WaveStatus.SUCCEEDED
        servers = self.state.servers.values()
        launched = sum(s.status is ServerStatus.LAUNCHED for s in servers)
        self.state.message = message or (
            f"{launched}/{len(servers)} servers launched in {len(waves)} wave(s), "
            f"{sum(c.job_id is not None for c in self.state.chunks)} DRS job(s)"
            + "".join(f"; {w.name}: {w.message}" for w in waves if w.status is not WaveStatus.SUCCEEDED))
        self.state.ended_at = workflow.now()
        self.show()

    def show(self) -> None:
        """The run page's current details: each wave's progress. Not a command: free to call often."""
        workflow.set_current_details(drs_details(self.state))

    def result(self) -> DrsRecoveryResult:
        servers = self.state.servers.values()
        return DrsRecoveryResult(
            status=self.state.status, message=self.state.message,
            launched=sum(s.status is ServerStatus.LAUNCHED for s in servers),
            failed=sum(s.status.failed for s in servers),
            waves={w.name: w.status for w in self.state.waves},
            jobs=sum(c.job_id is not None for c in self.state.chunks))
