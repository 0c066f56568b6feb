"""DrsRecoveryWorkflow's phases other than ACTIVATE: preflight and launch settings, drill cleanup, reverse replication.

A plain object the workflow owns, on the engine's state and what every phase shares (workflows.drs_waves); same
rules: deterministic, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.drs_waves import HEARTBEAT, RESOLVE, RETRY, SHORT, Waves
from workflows.timeouts import heartbeat, sized

# A drill's cleanup waits for its execution's LAUNCH jobs still running and looks again; runs recorded before this
# looked once.
CLEANUP_WAITS_FOR_LAUNCHES_PATCH = "drs-cleanup-waits-for-launches"

with workflow.unsafe.imports_passed_through():
    from contracts.drs import (
        DRS_APPLY_LAUNCH,
        DRS_CLEANUP_DRILL,
        DRS_RESOLVE,
        DRS_REVERSE,
        ApplyLaunchResult,
        CleanupRequest,
        CleanupResult,
        LaunchGroup,
        LaunchRequest,
        LaunchServer,
        ResolveRequest,
        ResolveResult,
        ReverseRequest,
        ReverseResult,
    )
    from plans.model import Mode
    from contracts.drs_recovery import ChunkRecord, ServerRecord, ServerStatus, WaveStatus


class DrsPhases:
    def __init__(self, waves: Waves) -> None:
        self._waves = waves
        self._give_up_at: dict[str, datetime] = {}  # LAUNCH job id -> when the cleanup stops waiting for it
        self._input, self._state = waves.input, waves.state

    async def preflight(self) -> None:
        """Resolve every group now, report what a recovery would take, and bring the launch settings of the groups
        that give them to the plan's (in every mode: a drill launches with the settings a recovery would use)."""
        resolved = await workflow.execute_activity(
            DRS_RESOLVE, ResolveRequest(groups=list(self._input.groups.values()),
                                        execution_id=self._input.execution_id), result_type=ResolveResult,
            start_to_close_timeout=RESOLVE, heartbeat_timeout=HEARTBEAT, retry_policy=RETRY,
            summary=f"find the source servers of {len(self._input.groups)} protection group(s) and check them")
        group_wave = {g: w.name for w in self._input.params.waves for g in w.protection_groups}
        for server in resolved.servers:
            self._state.servers[server.id] = ServerRecord(
                id=server.id, hostname=server.hostname, group=server.group, wave=group_wave[server.group],
                impact=server.impact, target_key=server.target_key, detail=server.problem,
                status=ServerStatus.NOT_RECOVERABLE if server.problem else ServerStatus.PENDING)
        changed, launch_errors = await self._apply_launch_settings()
        for record in self._state.waves:
            groups = self._waves.definitions[record.name].protection_groups
            record.servers = [s.id for s in self._state.servers.values() if s.wave == record.name]
            bad = [self._state.servers[s] for s in record.servers if self._state.servers[s].status.failed]
            critical = [s for s in bad if s.impact == "critical"]
            errors = list(dict.fromkeys(launch_errors[g] for g in groups if g in launch_errors))
            detail = "; ".join(f"{s.hostname or s.id}: {s.detail}" for s in bad[:5])
            message = f"{len(record.servers) - len(bad)}/{len(record.servers)} recoverable" + \
                (f" ({detail})" if detail else "")
            if any(self._input.groups[g].launch_settings for g in groups):
                message += f"; launch settings changed on {sum(s in changed for s in record.servers)} server(s)"
            message += "".join(f"; launch settings not applied: {e}" for e in errors)
            self._waves.end_wave(record, WaveStatus.FAILED if critical or errors else WaveStatus.SUCCEEDED, message)
        self._waves.finish()

    async def _apply_launch_settings(self) -> tuple[set[str], dict[str, str]]:
        """(ids of the servers whose settings changed, group -> why its settings could not be applied)."""
        per_target: dict[str, list[LaunchGroup]] = {}
        for name, group in self._input.groups.items():
            servers = [LaunchServer(id=s.id, hostname=s.hostname) for s in self._state.servers.values()
                       if s.group == name]
            if group.launch_settings is not None and servers:
                per_target.setdefault(group.target.key, []).append(
                    LaunchGroup(group=name, servers=servers, settings=group.launch_settings))
        changed: set[str] = set()
        errors: dict[str, str] = {}
        for key, groups in per_target.items():
            try:
                result = await workflow.execute_activity(
                    DRS_APPLY_LAUNCH, LaunchRequest(target=self._waves.target(key), groups=groups),
                    result_type=ApplyLaunchResult, start_to_close_timeout=RESOLVE, heartbeat_timeout=HEARTBEAT,
                    retry_policy=RETRY, summary=f"apply the plan's launch settings of {len(groups)} group(s) in {key}")
            except ActivityError as err:
                # Every retry failed (an outage, or a worker from before per-group errors, which raised a static
                # address outside its subnet): these groups' waves fail with the cause.
                errors.update({g.group: str(err.cause or err) for g in groups})
                continue
            # E.g. a static address outside its subnet: that server's group alone, the message names the server.
            errors.update(result.failed)
            changed |= {c.server_id for c in result.changes}
        return changed, errors

    async def cleanup(self) -> None:
        if self._input.mode is not Mode.DRILL:
            self._waves.end_all(WaveStatus.SUCCEEDED, "a real recovery keeps its instances")
            return
        # Runs recorded before it looked once and did not wait for the execution's running LAUNCH jobs.
        waits = workflow.patched(CLEANUP_WAITS_FOR_LAUNCHES_PATCH)
        terminated: dict[str, None] = {}  # ordered set: a later round may meet an instance again
        jobs, waited = 0, 0
        abandoned: dict[str, str] = {}  # job id -> why the cleanup did not wait for it
        while True:
            launching: list[tuple[str, str]] = []
            held: dict[str, str] = {}  # instances a running LAUNCH job keeps from termination, this round
            for key, target in self._input.targets().items():
                result = await workflow.execute_activity(
                    DRS_CLEANUP_DRILL, CleanupRequest(target=target, execution_id=self._input.execution_id,
                                                      since=self._input.since),
                    result_type=CleanupResult, start_to_close_timeout=sized(RESOLVE, SHORT),
                    heartbeat_timeout=heartbeat(), retry_policy=RETRY,
                    summary=f"terminate the drill instances of {self._input.execution_id} in {key}" if waits
                    else f"terminate this drill's recovery instances in {key}")
                terminated.update(dict.fromkeys(result.recovery_instance_ids))
                jobs += len(result.terminate_job_ids)
                self._follow(key, result.terminate_job_ids, "cleanup")
                launching += [(key, j) for j in self._worth_waiting_for(result, abandoned)]
                held.update(result.held)
            if waits:
                # A run stopped mid-wave: its jobs go on launching. Wait for them, then look again.
                for key, job_id in launching:
                    self._follow(key, [job_id], "cleanup-wait-launch")
                waited += len(launching)
            await self._settle()
            if not (waits and launching):
                break
        parent = workflow.info().parent
        whose = "this execution" if parent and parent.workflow_id == self._input.execution_id else \
            self._input.execution_id
        ids = list(terminated)
        message = f"terminated {len(ids)} drill instance(s) of {whose} in {jobs} TERMINATE job(s)"
        if waited:
            message += f", after waiting for {waited} of its LAUNCH job(s) still running"
        if ids:
            message += f": {', '.join(ids[:20])}" + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
        if abandoned:
            message += "; not waited for: " + "; ".join(abandoned.values())
        if held:  # only instances of abandoned jobs are still held after the last round
            left = sorted(held)
            message += (f"; {len(left)} drill instance(s) LEFT RUNNING, their source servers still in a LAUNCH job DRS "
                        f"has not ended ({', '.join(sorted(set(held.values())))}): {', '.join(left[:20])}; once it "
                        f"ends, `drctl drill cleanup {self._input.execution_id}` terminates them")
        elif abandoned:
            message += f" (an instance it launches later is left: `drctl drill cleanup {self._input.execution_id}` " \
                "terminates it)"
        # A drill that leaves an instance up has not cleaned up: said as a failure, never as done.
        self._waves.end_all(WaveStatus.FAILED if held else WaveStatus.SUCCEEDED, message)

    def _worth_waiting_for(self, result: CleanupResult, abandoned: dict[str, str]) -> list[str]:
        """The running LAUNCH jobs the cleanup waits for: those younger than twice their wave's timeout (at most the
        timeout and an hour). A run stopped mid-wave has jobs that launch on for a while; a job its wave gave up on
        (a stuck conversion) usually ends when DRS gives up on it too, and what it launched can only be terminated
        after that. Past the bound, waiting would hold the cleanup, and so the run, for as long as DRS keeps the job
        running: it is named instead. Workers from before `active_launches` sent only ids: all are waited for."""
        if not result.active_launches:
            return result.active_launch_job_ids
        now = workflow.now()
        longest = max((w.timeout_seconds for w in self._waves.definitions.values()), default=0)
        waiting = []
        for job in result.active_launches:
            wave = self._waves.definitions.get(job.wave or "")
            timeout = wave.timeout_seconds if wave else longest
            limit = timeout + min(timeout, 3600)
            age = (now - job.created_at).total_seconds()
            if age < limit:
                waiting.append(job.job_id)
                self._give_up_at[job.job_id] = job.created_at + timedelta(seconds=limit)
            else:
                abandoned[job.job_id] = (f"LAUNCH job {job.job_id} of wave {job.wave or '?'} still running after "
                                         f"{age:.0f} s, {limit - timeout} s past the wave's {timeout} s timeout "
                                         f"(source servers {', '.join(job.server_ids[:5])})")
        return waiting

    def _follow(self, key: str, job_ids: list[str], wave: str) -> None:
        for job_id in job_ids:
            self._state.chunks.append(ChunkRecord(wave=wave, chunk=len(self._state.chunks), target_key=key,
                                                  server_ids=[], job_id=job_id, started_at=workflow.now()))

    async def _settle(self) -> None:
        """Until every job followed has settled, or (a LAUNCH job waited for) reached the time it is given."""
        while any(c.active for c in self._state.chunks):
            now = workflow.now()
            active = [c for c in self._state.chunks if c.active]
            for chunk in active:
                if chunk.job_id in self._give_up_at and now >= self._give_up_at[chunk.job_id]:
                    chunk.settled_at = now  # no longer waited for: the next round names it
            due = [self._give_up_at[c.job_id] for c in active if c.active and c.job_id in self._give_up_at]
            if not any(c.active for c in active):
                break
            self._waves.watch_active()
            self._waves.wake = False
            self._waves.show()
            try:
                await workflow.wait_condition(
                    lambda: self._waves.wake, timeout=max(min(due) - now, timedelta(seconds=1)) if due else None,
                    timeout_summary="the time a running LAUNCH job of the drill is waited for")
            except TimeoutError:
                pass

    async def replicate(self) -> None:
        if self._input.mode is Mode.DRILL:
            self._waves.end_all(WaveStatus.SUCCEEDED, "a drill leaves replication as it is")
            return
        reversed_count, manual, errors = 0, [], []
        for target in self._input.targets().values():
            result = await workflow.execute_activity(
                DRS_REVERSE, ReverseRequest(target=target, execution_id=self._input.execution_id,
                                            since=self._input.since),
                result_type=ReverseResult, start_to_close_timeout=sized(RESOLVE, SHORT), heartbeat_timeout=heartbeat(),
                retry_policy=RETRY,
                summary=f"start reverse replication of the recovered servers in {target.key}")
            reversed_count += len(result.reversed)
            manual += result.needs_failback_client
            errors += [f"{k}: {v}" for k, v in result.errors.items()]
        message = f"reverse replication started for {reversed_count} server(s)"
        if manual:
            message += f"; {len(manual)} need the DRS failback client: {', '.join(manual[:10])}"
        self._waves.end_all(WaveStatus.FAILED if errors else WaveStatus.SUCCEEDED,
                      message + (f"; errors: {'; '.join(errors[:5])}" if errors else ""))
