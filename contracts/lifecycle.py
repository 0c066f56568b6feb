"""Input, messages and state of DrLifecycleWorkflow: the public contract of a run.

All of it is pydantic, serialized by temporalio's pydantic data converter; users' scripts send these as JSON.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from plans.model import PHASE_ORDER, Mode, Phase, Plan
from contracts.callback import CallbackOptions, CallbackState
from contracts.identity import TrustConfig

WORKFLOW_TYPE = "DrLifecycleWorkflow"
DEFAULT_TASK_QUEUE = "dr-orchestrator"

# The `type` of the ApplicationError a run answers with (clients branch on these, never on messages). All are
# non-retryable: sending the same message again cannot succeed.
PERMISSION_DENIED = "PermissionDenied"  # the token, the roles or four-eyes say no; the attempt is in the audit trail
REFUSED = "Refused"  # the run cannot do it now (nothing pending, not paused, already ended...): nothing recorded
# A query's refusal: its message reaches the caller as plain text from the server (no codec can open it there) and
# is never written to history, so the workers' failure converter leaves it in clear (workers/encryption.py).
QUERY_REFUSED = "QueryRefused"
INVALID_INPUT = "InvalidInput"  # the input does not decode into the contract below; the message names the field


class RunOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A subset of phases to run (in lifecycle order whatever the order given); default: all four.
    phases: list[Phase] | None = None
    max_parallel_resources: int | None = Field(default=None, ge=1, le=100)  # default: the plan's
    start_paused: bool = False  # stop at the first boundary and wait for `resume`
    callback: CallbackOptions | None = None  # a Step Functions task token to answer (docs/step-functions.md)
    # A drill that fails or is cancelled once ACTIVATE started runs its CLEANUP layers before it ends, unless this
    # is true (keep its artefacts for diagnosis). None: the plan's defaults.keepDrillOnFailure.
    keep_on_failure: bool | None = None
    # Clean up after another drill (`drctl drill cleanup`): this run, a drill of phase CLEANUP only, acts on the
    # artefacts tagged with that run's workflow id instead of its own.
    cleanup_of: str | None = Field(default=None, min_length=1, max_length=1000)
    # When that run started: the search for the TERMINATE jobs its own CLEANUP may have left running starts there.
    # Default: CLEANUP_OF_LOOKBACK before this run's start.
    cleanup_of_started_at: datetime | None = None

    @model_validator(mode="after")
    def _cleanup_of_runs_cleanup_only(self) -> RunOptions:
        if self.cleanup_of is not None and self.phases != [Phase.CLEANUP]:
            given = ", ".join(p.value for p in self.phases) if self.phases else "all four"
            raise ValueError(f"cleanup_of runs the CLEANUP phase only: phases must be [CLEANUP], not {given}")
        if self.cleanup_of_started_at is not None and self.cleanup_of is None:
            raise ValueError("cleanup_of_started_at needs cleanup_of")
        return self


# How far back a cleanup of another run looks for its TERMINATE jobs when that run's start is not given.
CLEANUP_OF_LOOKBACK = timedelta(days=3)


class LifecycleInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: Plan
    mode: Mode
    initiator: str = Field(min_length=1, max_length=200)  # claimed; the token's subject is what counts
    options: RunOptions = RunOptions()
    token: str | None = Field(default=None, max_length=16384, repr=False)  # the initiator's signed token (JWT)

    @model_validator(mode="after")
    def _cleanup_of_is_a_drill(self) -> LifecycleInput:
        if self.options.cleanup_of is not None and self.mode is not Mode.DRILL:
            raise ValueError(f"options.cleanup_of: only a drill's artefacts are cleaned up by another run; "
                             f"the mode must be drill, not {self.mode.value}")
        return self

    def selected_phases(self) -> list[Phase]:
        wanted = set(self.options.phases or PHASE_ORDER)
        return [p for p in PHASE_ORDER if p in wanted]


def workflow_id_for(plan_name: str, mode: Mode, started: datetime, nonce: str) -> str:
    """Readable (plan, mode, second of the start) and unique: `nonce` (a few random hex digits, chosen by the caller:
    no randomness here) keeps two starts in one second apart."""
    return f"dr-{plan_name}-{mode.value}-{started.strftime('%Y%m%dT%H%M%S')}-{nonce}"


# ---- messages -------------------------------------------------------------------------------------------------

class ControlRequest(BaseModel):
    """Body of every control update. `token` (a signed JWT) says who is asking; `actor` is only what the caller
    claims, and the audit trail records the token's subject."""

    model_config = ConfigDict(extra="forbid")

    actor: str = Field(default="", max_length=200)
    token: str | None = Field(default=None, max_length=16384, repr=False)
    reason: str = Field(default="", max_length=2000)
    gate: str | None = None  # approve/reject: the gate id shown by `status`; default: the pending one
    step: str | None = None  # skip: "PHASE/layer" or "PHASE/layer/resource", not started yet
    force: bool = False  # cancel: also stop in-flight operations instead of letting them finish
    # approve/reject: the workflow id of the run decided (required): a decision sent to another run is denied, so
    # an approval cannot be replayed from one run's history into another.
    run: str | None = Field(default=None, max_length=1000)
    # approve/reject: the plan hash (`sha256:...`) the approver reviewed; a decision on a run of another plan is
    # denied. Optional: drctl approve --plan-hash.
    plan_hash: str | None = Field(default=None, max_length=100)
    # How it came: "update" or "signal" (the audit trail says which). Private: set by the run, never by a caller.
    _via: str = PrivateAttr(default="update")


class ControlResult(BaseModel):
    accepted: bool
    status: RunStatus
    message: str


# ---- state ----------------------------------------------------------------------------------------------------

class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    COMPLETED = "COMPLETED"
    # Every phase ran to its end, but something failed within the plan's policy: a resource of a continue-on-error
    # layer, a hook with onFailure continue, optional DRS servers within maxFailedPercent. The result and the
    # message name what; Temporal sees a completed workflow (the plan accepted this outcome).
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.CANCELLED,
                        RunStatus.REJECTED)


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    # A continue-on-error layer (or its phase) in which some resources failed; a drs.recovery resource whose waves
    # ended PARTIAL (optional servers failed within maxFailedPercent, a wave hook with onFailure continue failed).
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # was running when the run was cancelled
    SKIPPED = "SKIPPED"  # never started: an earlier failure, a cancel or a rejection stopped the run first


class StepState(BaseModel):
    """How one step of a run went, a resource or a hook: what the step runner (workflows.steps) writes."""

    status: StepStatus = StepStatus.PENDING
    started_at: datetime | None = None
    ended_at: datetime | None = None
    message: str = ""
    error: str | None = None
    error_type: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)  # what the operation reported (a hook's: clipped)
    handle: dict[str, Any] = Field(default_factory=dict)  # what the next wait (or a stop) needs to find it


# pydantic orders a model's fields along its reversed MRO: what a step is (these bases, listed after StepState), then
# StepState's, then the class's own. So `status` shows the fields in the order it always had.
class _Resource(BaseModel):
    name: str
    action: str
    account: str
    region: str


class _Hook(BaseModel):
    name: str
    when: str  # pre | post
    kind: str  # ssmAutomation | lambda
    target: str  # the document or function, with its version or qualifier
    account: str
    region: str
    on_failure: str = "fail"  # fail | continue
    timeout_seconds: int
    runs: bool = True  # False: the plan's `modes` leave it out of this run's mode (SKIPPED from the start)


class ResourceState(StepState, _Resource):
    skipped_by: str | None = None  # an operator skipped it before it started (it does not count in rollups)


class HookState(StepState, _Hook):
    """One pre- or post-hook of a layer or a DRS wave (plans.hooks), as the status shows it."""


class LayerState(BaseModel):
    name: str
    status: StepStatus = StepStatus.PENDING
    skipped_by: str | None = None  # an operator skipped it before it started (it does not count in rollups)
    continue_on_error: bool = False
    started_at: datetime | None = None
    ended_at: datetime | None = None
    resources: list[ResourceState]
    pre_hooks: list[HookState] = Field(default_factory=list)
    post_hooks: list[HookState] = Field(default_factory=list)


class PhaseState(BaseModel):
    phase: Phase
    status: StepStatus = StepStatus.PENDING
    started_at: datetime | None = None
    ended_at: datetime | None = None
    layers: list[LayerState]

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.ended_at:
            return (self.ended_at - self.started_at).total_seconds()
        return None


class Gate(BaseModel):
    id: str  # "ACTIVATE", "ACTIVATE/database" or, for a DRS wave, "ACTIVATE/database/servers/wave:web"
    requested_at: datetime
    decided_at: datetime | None = None
    decision: str | None = None  # approved | rejected | withdrawn (its DRS child ended) | timed-out
    actor: str | None = None
    reason: str = ""
    child_workflow_id: str | None = None  # a DRS wave's gate: the DrsRecoveryWorkflow that waits for it
    wave: str | None = None
    required: int = 1  # distinct approvals needed
    roles: list[str] = Field(default_factory=list)  # only these roles' approvals count (empty: any approver)
    approvals: list[Approval] = Field(default_factory=list)
    timeout_at: datetime | None = None
    on_timeout: str = "abort"  # abort | continue (drills only)


class Approval(BaseModel):
    actor: str  # the verified subject
    roles: list[str]
    at: datetime
    reason: str = ""
    plan_hash: str | None = None  # the hash of the plan the run runs, which this approval approved


class ChildGate(BaseModel):
    """Signal `child_gate`, DRS child -> lifecycle: a wave with pauseBefore waits for approval."""

    child_workflow_id: str
    wave: str
    gate_id: str
    required: int = 1  # the wave's approval policy
    roles: list[str] = Field(default_factory=list)


class WaveDecision(BaseModel):
    """Signals `approve_wave` / `reject_wave`, lifecycle -> DRS child: the lifecycle's gate was decided."""

    wave: str
    actor: str
    reason: str = ""


class AuditEntry(BaseModel):
    """One decision or attempt. `actor` is the verified subject when there was a valid token, else what the caller
    claimed (marked by `verified=False`); the token itself is never kept, only its hash."""

    at: datetime
    actor: str
    action: str
    accepted: bool
    reason: str = ""
    detail: str = ""
    roles: list[str] = Field(default_factory=list)
    verified: bool = True
    token_sha256: str | None = None
    via: str = ""  # update | signal; empty for the start
    plan_hash: str | None = None  # the start and every decision: the hash of the plan the run runs


class NotificationRecord(BaseModel):
    event: str
    at: datetime
    gate: str | None = None
    message_id: str | None = None  # SNS's, once delivered
    error: str | None = None  # why it was not delivered (the run went on regardless)


class LifecycleState(BaseModel):
    """The one serializable model of a run; the `status` query returns it whole."""

    workflow_id: str
    plan_name: str
    mode: Mode  # what resources started from now on do: a planned run may switch to disaster (ungraceful)
    switched_to_ungraceful_at: datetime | None = None
    initiator: str
    status: RunStatus = RunStatus.RUNNING
    paused: bool = False
    current_phase: Phase | None = None
    started_at: datetime
    ended_at: datetime | None = None
    phases: list[PhaseState]
    gates: list[Gate] = Field(default_factory=list)
    audit: list[AuditEntry] = Field(default_factory=list)
    notifications: list[NotificationRecord] = Field(default_factory=list)
    denied_attempts: int = 0  # all of them, also those beyond the audit trail's cap on denied entries
    # The latest denied attempt, for everyone who may view the run: a signal has no answer, so this is where its
    # sender sees why it changed nothing (the whole trail needs view-audit).
    last_denial: str | None = None
    trust: TrustConfig | None = None  # what the worker trusted at start; every later message is checked against it
    initiator_roles: list[str] = Field(default_factory=list)
    cancel_requested: bool = False
    error: str | None = None  # why it did not complete; PARTIAL: what failed within policy (the result's message)
    callback: CallbackState | None = None  # the Step Functions caller, when the run was started with a task token
    plan_hash: str | None = None  # Plan.digest() of the plan the run received (also in its memo as planHash)
    # Hashes of the tokens (their jti) that made a decision in this run: each decides at most once.
    decision_tokens: list[str] = Field(default_factory=list)

    def pending_gate(self) -> Gate | None:
        return next((g for g in self.gates if g.decision is None), None)

    def phase(self, phase: Phase) -> PhaseState:
        return next(p for p in self.phases if p.phase == phase)


class LifecycleResult(BaseModel):
    workflow_id: str
    status: RunStatus
    phase_durations_seconds: dict[str, float]
    failed_resources: list[str]
    message: str
    # Resources that ended PARTIAL, with what failed in them (a DRS recovery's optional servers): not failed, so
    # not in failed_resources, but part of why a run is PARTIAL.
    partial_resources: list[str] = Field(default_factory=list)


ControlResult.model_rebuild()
Gate.model_rebuild()
