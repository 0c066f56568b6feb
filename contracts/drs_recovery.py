"""Input, state and result of DrsRecoveryWorkflow: one `drs.recovery` resource of one phase of a run.

Per-server detail is kept compact (a record per server, no history per server), so 1,000 servers fit one state.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from contracts.drs import DrsTarget, GroupRequest, QuotaLimits
from plans.drs import DrsRecoveryParameters
from plans.hooks import Hook
from plans.model import Account, Mode, Phase, Plan, Regions, Resource
from contracts.lifecycle import HookState, StepStatus

DRS_WORKFLOW_TYPE = "DrsRecoveryWorkflow"


class HookTarget(BaseModel):
    """A wave's hook with the account and region it runs in (its own, else its wave's first group's)."""

    hook: Hook
    when: str  # pre | post
    account_key: str
    account: Account
    region: str


class DrsRecoveryInput(BaseModel):
    execution_id: str
    plan_name: str
    resource: str
    phase: Phase
    mode: Mode
    params: DrsRecoveryParameters
    groups: dict[str, GroupRequest]
    since: datetime  # when the parent run started: bounds searches for jobs an earlier attempt started
    regions: Regions | None = None
    wave_hooks: dict[str, list[HookTarget]] = Field(default_factory=dict)  # ACTIVATE only

    def targets(self) -> dict[str, DrsTarget]:
        return {g.target.key: g.target for g in self.groups.values()}


def drs_input_for(plan: Plan, resource: Resource, phase: Phase, mode: Mode, execution_id: str,
                  since: datetime) -> DrsRecoveryInput:
    params = DrsRecoveryParameters.model_validate(resource.parameters)
    used = {name for wave in params.waves for name in wave.protection_groups}
    groups: dict[str, GroupRequest] = {}
    for name in sorted(used):
        group = plan.protection_groups[name]
        account_key = plan.account_key_for(group)
        region = plan.region_for(group)
        if mode is Mode.FAILBACK:
            # Back where the servers came from: their reversed copies replicate into the other region of the plan.
            region = plan.regions.primary if region == plan.regions.recovery else plan.regions.recovery
        groups[name] = GroupRequest(
            group=name, failback=mode is Mode.FAILBACK,
            target=DrsTarget(account_key=account_key, account=plan.accounts[account_key], region=region),
            selection=group.selection, impact=group.impact, allow_unhealthy=group.allow_unhealthy_replication,
            # The plan's launch settings name recovery-region resources (subnets, security groups): not for a failback.
            launch_settings=None if mode is Mode.FAILBACK else group.launch_settings,
        )
    wave_hooks: dict[str, list[HookTarget]] = {}
    for wave in params.waves if phase is Phase.ACTIVATE else []:
        first = groups[wave.protection_groups[0]].target
        for when, hooks in (("pre", wave.pre_hooks), ("post", wave.post_hooks)):
            for hook in hooks:
                key = hook.account or first.account_key
                wave_hooks.setdefault(wave.name, []).append(HookTarget(
                    hook=hook, when=when, account_key=key, account=plan.accounts[key],
                    region=hook.region or first.region))
    return DrsRecoveryInput(execution_id=execution_id, plan_name=plan.name, resource=resource.name, phase=phase,
                            mode=mode, params=params, groups=groups, since=since, regions=plan.regions,
                            wave_hooks=wave_hooks)


class ServerStatus(StrEnum):
    PENDING = "PENDING"  # resolved, waiting for its wave's job
    LAUNCHING = "LAUNCHING"  # in a DRS job
    LAUNCHED = "LAUNCHED"
    FAILED = "FAILED"  # DRS reported launchStatus FAILED
    NOT_RECOVERABLE = "NOT_RECOVERABLE"  # never sent: unhealthy replication, no snapshot before the point in time
    TIMED_OUT = "TIMED_OUT"  # its wave's timeout passed first (the DRS job itself may still finish)
    SKIPPED = "SKIPPED"  # its wave never started its job (cancel, or an earlier wave failed)

    @property
    def failed(self) -> bool:
        return self in (ServerStatus.FAILED, ServerStatus.NOT_RECOVERABLE, ServerStatus.TIMED_OUT)


class ServerRecord(BaseModel):
    id: str
    hostname: str | None = None
    group: str
    wave: str
    impact: str
    target_key: str
    status: ServerStatus = ServerStatus.PENDING
    launch_status: str | None = None
    job_id: str | None = None
    recovery_instance_id: str | None = None
    ec2_instance_id: str | None = None
    private_ip: str | None = None
    started_at: datetime | None = None  # its job started
    ended_at: datetime | None = None  # seen LAUNCHED or FAILED
    detail: str | None = None  # the problem, or the newest job-log event
    snapshot_id: str | None = None
    taken_from: str | None = None  # the drill that held this server when this real failover claimed it


class WaveStatus(StrEnum):
    PENDING = "PENDING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    PARTIAL = "PARTIAL"  # optional servers failed within maxFailedPercent
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"

    @property
    def finished(self) -> bool:
        return self in (WaveStatus.SUCCEEDED, WaveStatus.PARTIAL, WaveStatus.FAILED, WaveStatus.SKIPPED)

    @property
    def succeeded(self) -> bool:
        return self in (WaveStatus.SUCCEEDED, WaveStatus.PARTIAL)


class WaveRecord(BaseModel):
    name: str
    depends_on: list[str]
    status: WaveStatus = WaveStatus.PENDING
    started_at: datetime | None = None
    ended_at: datetime | None = None
    message: str = ""
    servers: list[str] = Field(default_factory=list)
    pre_hooks: list[HookState] = Field(default_factory=list)
    post_hooks: list[HookState] = Field(default_factory=list)


class ChunkRecord(BaseModel):
    """One DRS job: the servers of one wave in one account+region, at most the per-job quota."""

    wave: str
    chunk: int
    target_key: str
    server_ids: list[str]
    job_id: str | None = None
    started_at: datetime | None = None
    settled_at: datetime | None = None
    signature: str = ""

    @property
    def active(self) -> bool:
        return self.job_id is not None and self.settled_at is None


class DrsRecoveryState(BaseModel):
    workflow_id: str
    resource: str
    phase: Phase
    mode: Mode
    status: WaveStatus = WaveStatus.RUNNING
    started_at: datetime
    ended_at: datetime | None = None
    message: str = ""
    waves: list[WaveRecord]
    servers: dict[str, ServerRecord] = Field(default_factory=dict)
    chunks: list[ChunkRecord] = Field(default_factory=list)
    quotas: dict[str, QuotaLimits] = Field(default_factory=dict)

    def wave(self, name: str) -> WaveRecord:
        return next(w for w in self.waves if w.name == name)

    def within_policy(self, names: int = 3) -> list[str]:
        """What failed in each wave that ended PARTIAL, one line per wave, naming its first `names` failed servers
        and its failed hooks: what the lifecycle run's PARTIAL outcome cites (the wave's own message only counts)."""
        lines = []
        for wave in self.waves:
            if wave.status is not WaveStatus.PARTIAL:
                continue
            failed = [self.servers[s] for s in wave.servers if s in self.servers and self.servers[s].status.failed]
            parts = []
            if failed:
                shown = ", ".join(f"{s.hostname or s.id}: {_clip(s.detail or s.status.value)}" for s in failed[:names])
                more = ", ..." if len(failed) > names else ""
                parts.append(f"{len(failed)} optional server{'s' if len(failed) > 1 else ''} failed "
                             f"({shown}{more})")
            parts += [f"{h.when}-hook {h.name} failed: {_clip(h.error or '')}"
                      for h in [*wave.pre_hooks, *wave.post_hooks] if h.status is StepStatus.FAILED]
            lines.append(f"wave {wave.name}: " + ("; ".join(parts) or wave.message))
        return lines


def _clip(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


class DrsRecoveryResult(BaseModel):
    status: WaveStatus
    message: str
    launched: int
    failed: int
    waves: dict[str, WaveStatus]
    jobs: int
    within_policy: list[str] = Field(default_factory=list)  # PARTIAL: what failed, per wave (state.within_policy)
