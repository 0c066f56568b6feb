"""The engine of DrsRecoveryWorkflow (workflows.drs_recovery): the recovery's state and what every phase shares (DRS
targets, ending waves and the recovery), and ACTIVATE, which runs the waves as a DAG.

A wave starts when every wave it depends on succeeded, its servers are resolved from their protection groups at that
moment, split per account+region into jobs no larger than the per-job quota, and started only while the
account+region has room under its concurrent-jobs and servers-in-jobs quotas (shared by every wave running at once).
The jobs are started and followed by workflows.drs_jobs; a wave ends when its servers are settled or at its timeout,
and is judged by workflows.drs_verdict, the same rules whatever ended each server.

A plain object the workflow owns (same determinism rules: no I/O, time from `workflow.now()`).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

from workflows.claims import claim_servers
from workflows.drs_jobs import LOST_TRACK_PATCH, Jobs
from workflows.drs_verdict import count, judge, names
from workflows.drs_options import HEARTBEAT as HEARTBEAT  # drs_phases takes the shared options from here
from workflows.drs_options import RESOLVE as RESOLVE
from workflows.drs_options import RETRY as RETRY
from workflows.drs_options import SHORT as SHORT
from workflows.hooks import WaveHooks
from workflows.run_details import drs_details
from workflows.timeouts import heartbeat

with workflow.unsafe.imports_passed_through():
    from contracts.drs import (
        DRS_QUOTAS,
        DRS_RESOLVE,
        DrsTarget,
        QuotaLimits,
        ResolveRequest,
        ResolveResult,
    )
    from plans.drs import Wave
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

WAVE_LOOKS_AGAIN_PATCH = "wave-looks-again"
WAVE_VERDICT_PATCH = "wave-verdict-same-rules"


class Waves:
    def __init__(self, input: DrsRecoveryInput, state: DrsRecoveryState) -> None:
        self.input = input
        self.state = state
        self.definitions: dict[str, Wave] = {w.name: w for w in input.params.waves}
        self._approved: set[str] = set()
        self.wake = False  # something changed that the main loop (or CLEANUP's) must look at
        self._hooks = WaveHooks(input, state, self.end_wave, self._wake_up)
        self.jobs = Jobs(input, state, self._wake_up, self._look_again)

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
            self.jobs.cancel()
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
                    if workflow.patched(LOST_TRACK_PATCH):
                        await self._reread_wave(record)  # servers are judged by what DRS says now
                    if record.status is WaveStatus.RUNNING:
                        self._close_wave(record, timed_out=True)
        await self.jobs.dispatch()
        self.jobs.watch_active()

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

    async def _reread_wave(self, record: WaveRecord) -> None:
        """Before a timed-out wave is judged: its active jobs read again by their tags, per account+region."""
        active = [c for c in self._chunks_of(record.name) if c.active]
        for key in sorted({c.target_key for c in active}):
            await self.jobs.reread(key, [c for c in active if c.target_key == key and c.active])

    def _close_wave(self, record: WaveRecord, timed_out: bool = False) -> None:
        servers = [self.state.servers[s] for s in record.servers]
        stuck: list[ServerRecord] = []
        if timed_out:
            stuck = [s for s in servers if s.status in (ServerStatus.LAUNCHING, ServerStatus.PENDING)]
            for server in stuck:
                server.status = ServerStatus.TIMED_OUT
        launched = sum(s.status is ServerStatus.LAUNCHED for s in servers)
        summary = f"{launched}/{len(servers)} launched"
        # Runs recorded before this failed a timed-out wave whatever its servers' impact.
        if timed_out and not workflow.patched(WAVE_VERDICT_PATCH):
            self.end_wave(record, WaveStatus.FAILED, f"timed out; {summary}")
            return
        if stuck:
            summary = f"{self._timed_out(record, stuck)}; {summary}"
        verdict, message = judge(servers, self.definitions[record.name].max_failed_percent, summary)
        if verdict is WaveStatus.FAILED:
            self.end_wave(record, verdict, message)
        else:
            self._hooks.launched(record, verdict, message)

    def _timed_out(self, record: WaveRecord, stuck: list[ServerRecord]) -> str:
        """What the wave's timeout left unfinished, by cause, naming the servers; each server's detail says why."""
        assert record.started_at is not None
        seconds = int((workflow.now() - record.started_at).total_seconds())
        causes: dict[str, list[ServerRecord]] = {}
        for server in stuck:
            unreadable = self.jobs.unreadable.get(server.target_key)
            if unreadable is not None and server.job_id:
                cause, server.detail = "unknown: DRS could not be read", f"unknown at the wave's timeout: DRS " \
                                                                           f"could not be read: {unreadable}"
            elif server.job_id:
                cause = f"still launching after {seconds} s"
                server.detail = f"still launching at the wave's timeout ({seconds} s); its DRS job may still finish"
            else:
                cause = "never started (no DRS capacity free)"
                server.detail = f"not started within the wave's timeout ({seconds} s): no DRS capacity was free"
            causes.setdefault(cause, []).append(server)
        return "timed out: " + "; ".join(f"{count(group)} {cause} ({names(group)})" for cause, group in causes.items())

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
        return self.jobs.target(key)

    def watch_active(self) -> None:
        self.jobs.watch_active()

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
            f"{sum(bool(c.job_id) for c in self.state.chunks)} DRS job(s)"
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
            jobs=sum(bool(c.job_id) for c in self.state.chunks))
