"""What crosses the boundary between DrsRecoveryWorkflow and the DRS activities. Pydantic only: no boto3.

One activity call covers one account+region (a "target") and many servers: never an activity per server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from plans.drs import LaunchSettings, ServerSelection
from plans.model import Account

DRS_QUOTAS = "dr.drs.quotas"
DRS_RESOLVE = "dr.drs.resolve"
DRS_START_JOB = "dr.drs.start_job"
DRS_WATCH_JOBS = "dr.drs.watch_jobs"
DRS_REREAD_JOBS = "dr.drs.reread_jobs"
DRS_CLEANUP_DRILL = "dr.drs.cleanup_drill"
DRS_REVERSE = "dr.drs.reverse"
DRS_APPLY_LAUNCH = "dr.drs.apply_launch"

Impact = Literal["critical", "optional"]


class DrsTarget(BaseModel):
    account_key: str
    account: Account
    region: str

    @property
    def key(self) -> str:
        return f"{self.account.id}/{self.region}"


class QuotaLimits(BaseModel):
    concurrent_jobs: int = 20
    servers_per_job: int = 100
    servers_in_active_jobs: int = 500
    # Taken by jobs this execution does not own when it looked (other runs, consoles): left to them.
    active_jobs_in_use: int = 0
    servers_in_use: int = 0


class GroupRequest(BaseModel):
    group: str
    target: DrsTarget
    selection: ServerSelection
    impact: Impact = "critical"
    allow_unhealthy: bool = False
    failback: bool = False  # select the reversed (FAILBACK) servers that stand for this group's originals
    launch_settings: LaunchSettings | None = None  # None: the live launch configuration is left as it is


class ResolveRequest(BaseModel):
    groups: list[GroupRequest]
    execution_id: str | None = None  # servers in another execution's (or anyone's) active job are not recoverable
    point_in_time: datetime | None = None  # None: latest (DRS takes an on-demand snapshot)


class ResolvedServer(BaseModel):
    id: str
    hostname: str | None = None
    group: str
    impact: Impact
    target_key: str
    replication_state: str
    lag_seconds: int | None = None
    problem: str | None = None  # why it cannot be recovered (unhealthy replication, no snapshot before the time)
    snapshot_id: str | None = None


class ResolveResult(BaseModel):
    servers: list[ResolvedServer]


class StartJobRequest(BaseModel):
    target: DrsTarget
    execution_id: str
    wave: str
    chunk: int
    server_ids: list[str] = Field(min_length=1)
    is_drill: bool
    since: datetime  # no later than the execution's start: bounds the search for a job an earlier attempt started
    snapshot_ids: dict[str, str] = Field(default_factory=dict)


class StartJobResult(BaseModel):
    job_id: str


class ServerLaunchState(BaseModel):
    launch_status: str  # PENDING | IN_PROGRESS | LAUNCHED | FAILED | TERMINATED
    recovery_instance_id: str | None = None


class InstanceDetail(BaseModel):
    ec2_instance_id: str | None = None
    private_ip: str | None = None


class JobState(BaseModel):
    job_id: str
    status: str  # PENDING | STARTED | COMPLETED
    servers: dict[str, ServerLaunchState]
    settled: bool  # COMPLETED and no server still launching: capacity is free again
    last_events: dict[str, str] = Field(default_factory=dict)  # server id -> newest job-log event (and error)
    instances: dict[str, InstanceDetail] = Field(default_factory=dict)  # server id -> its launched EC2 instance

    def signature(self) -> str:
        launches = ",".join(f"{k}:{v.launch_status}" for k, v in sorted(self.servers.items()))
        return f"{self.status}|{launches}"


class WatchJobsRequest(BaseModel):
    target: DrsTarget
    job_ids: list[str] = Field(min_length=1)
    known: dict[str, str] = Field(default_factory=dict)  # job id -> signature already seen by the workflow
    max_wait_seconds: float = 60.0  # return then even without change, so newly started jobs join the watch
    poll_seconds: float = 2.0


class WatchJobsResult(BaseModel):
    jobs: list[JobState]


class ChunkKey(BaseModel):
    """One job of an execution as its tags name it (dr:wave, dr:chunk), with the servers the workflow sent in it."""

    wave: str
    chunk: int
    server_ids: list[str]
    job_id: str | None = None  # the job the workflow knows for it, if any


class RereadRequest(BaseModel):
    """Read the jobs again by their tags, after losing track of them (DRS unreadable, a job gone, a wave timeout)."""

    target: DrsTarget
    execution_id: str
    since: datetime  # no later than the execution's start: the jobs are looked for among those created since
    chunks: list[ChunkKey] = Field(min_length=1)


class ChunkJob(BaseModel):
    wave: str
    chunk: int
    job: JobState


class LaunchedInstance(InstanceDetail):
    recovery_instance_id: str
    job_id: str | None = None


class RereadResult(BaseModel):
    jobs: list[ChunkJob]  # the chunks DRS has a job for
    # server id -> the recovery instance one of these jobs launched for it: what DRS launched, even for a job it no
    # longer lists
    instances: dict[str, LaunchedInstance] = Field(default_factory=dict)


class CleanupRequest(BaseModel):
    target: DrsTarget
    execution_id: str
    since: datetime


class ActiveLaunch(BaseModel):
    """One of the execution's LAUNCH jobs still running when a cleanup looked."""

    job_id: str
    wave: str | None = None  # its dr:wave tag
    created_at: datetime
    server_ids: list[str] = Field(default_factory=list)


class CleanupResult(BaseModel):
    recovery_instance_ids: list[str]
    terminate_job_ids: list[str]
    # The execution's LAUNCH jobs still running (a run stopped mid-wave): they may launch instances after this
    # cleanup looked, so the cleanup waits for them and looks again. `active_launches` says the same with each job's
    # wave and age (workers from before it sent only the ids).
    active_launch_job_ids: list[str] = Field(default_factory=list)
    active_launches: list[ActiveLaunch] = Field(default_factory=list)
    # Instances not terminated because a running LAUNCH job of the execution holds their source server (DRS refuses
    # to terminate them until it ends): recovery instance id -> that job's id.
    held: dict[str, str] = Field(default_factory=dict)


class ReverseRequest(BaseModel):
    target: DrsTarget
    execution_id: str
    since: datetime


class ReverseResult(BaseModel):
    reversed: dict[str, str]  # recovery instance id -> reversed source server ARN
    needs_failback_client: list[str]
    errors: dict[str, str]


class LaunchServer(BaseModel):
    id: str
    hostname: str | None = None


class LaunchGroup(BaseModel):
    """One protection group's resolved servers and the settings the plan wants them launched with."""

    group: str
    servers: list[LaunchServer]
    settings: LaunchSettings


class LaunchRequest(BaseModel):
    target: DrsTarget
    groups: list[LaunchGroup]


class FieldDrift(BaseModel):
    field: str  # as the plan spells it: instanceType, subnetId, ...
    live: Any = None
    desired: Any = None


class ServerDrift(BaseModel):
    server_id: str
    hostname: str | None = None
    group: str = ""
    fields: list[FieldDrift] = Field(default_factory=list)


class LaunchChange(ServerDrift):
    drs_updated: bool = False
    template_version: int | None = None  # the new default version of the server's EC2 launch template


class ApplyLaunchResult(BaseModel):
    changes: list[LaunchChange]
    unchanged: int
    # Group -> why its settings could not be applied (a permanent error, naming the server); the others were.
    failed: dict[str, str] = Field(default_factory=dict)
