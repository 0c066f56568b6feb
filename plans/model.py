"""The recovery plan: what to recover, where, and in which order.

This module is imported by workflow code, so it must stay free of I/O and of boto3. Semantic checks that need the
module registry (known actions, their parameters) live in `plans.validation`.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from plans.approvals import ApprovalPolicy
from plans.notifications import Notifications
from plans.drs import LaunchSettings, ProtectionGroup, ServerLaunchSettings, ServerSelection
from plans.hooks import Hook, check_hook_names

PLAN_API_VERSION = "dr.orchestrator/v1"

ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class Phase(StrEnum):
    INSTANTIATE = "INSTANTIATE"
    ACTIVATE = "ACTIVATE"
    CLEANUP = "CLEANUP"
    REPLICATE = "REPLICATE"


PHASE_ORDER: tuple[Phase, ...] = (Phase.INSTANTIATE, Phase.ACTIVATE, Phase.CLEANUP, Phase.REPLICATE)


class Mode(StrEnum):
    DRILL = "drill"
    PLANNED = "planned"  # graceful failover: primary reachable, no data loss accepted
    DISASTER = "disaster"  # ungraceful failover: primary lost, data loss bounded by RPO
    FAILBACK = "failback"

    @property
    def changes_production(self) -> bool:
        return self is not Mode.DRILL


class PlanModel(BaseModel):
    """Plan files are camelCase (like the AWS APIs they describe); Python code uses snake_case."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, use_enum_values=False
    )


class ExternalIdSource(PlanModel):
    """Where the ExternalId for an AssumeRole comes from. Exactly one source; a literal is allowed for sandboxes but
    a real plan should keep the secret out of git (env or SSM)."""

    value: str | None = Field(default=None, min_length=2, max_length=1224)
    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    ssm: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9_./-]+$")

    @model_validator(mode="after")
    def _exactly_one(self) -> ExternalIdSource:
        given = [k for k in ("value", "env", "ssm") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of value, env or ssm")
        return self


class Account(PlanModel):
    id: str
    # No role: the worker's own credentials are used (the hub account). Otherwise a role in the target account.
    role_name: str | None = Field(default=None, pattern=r"^[\w+=,.@-]{1,64}$")
    external_id: ExternalIdSource | None = None
    description: str = ""

    @field_validator("id", mode="before")
    @classmethod
    def _account_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):  # YAML `true` is an int to Python
            value = f"{value:012d}"
        if not isinstance(value, str) or not ACCOUNT_ID.match(value):
            raise ValueError("an AWS account id is 12 digits (quote it in YAML to keep leading zeros)")
        return value

    @model_validator(mode="after")
    def _external_id_needs_role(self) -> Account:
        if self.external_id is not None and self.role_name is None:
            raise ValueError("externalId is only used with roleName")
        return self


def _check_region(value: str) -> str:
    if not REGION.match(value):
        raise ValueError(f"{value!r} is not an AWS region name (like us-west-2)")
    return value


class Regions(PlanModel):
    primary: str
    recovery: str

    _v_primary = field_validator("primary")(_check_region)
    _v_recovery = field_validator("recovery")(_check_region)

    @model_validator(mode="after")
    def _distinct(self) -> Regions:
        if self.primary == self.recovery:
            raise ValueError("primary and recovery regions must differ")
        return self


class Resource(PlanModel):
    """One action of a service module. Resources of a layer run in parallel."""

    name: str = Field(pattern=NAME.pattern)
    action: str = Field(pattern=r"^[a-z0-9]+(\.[a-z0-9_]+)+$")
    parameters: dict[str, Any] = Field(default_factory=dict)
    account: str | None = None  # key into Plan.accounts; default: plan defaults
    region: str | None = None  # default: the module's choice (usually the recovery region)

    _v_region = field_validator("region")(lambda v: v if v is None else _check_region(v))


class Layer(PlanModel):
    name: str = Field(pattern=NAME.pattern)
    resources: list[Resource] = Field(min_length=1)
    continue_on_error: bool = False
    timeout_seconds: int = Field(default=3600, ge=10, le=7 * 24 * 3600)
    approval_required: bool = False
    approval: ApprovalPolicy | None = None  # who must approve before this layer starts (implies approvalRequired)
    description: str = ""
    # Run in order, before the layer's resources start and after they all succeeded (plans.hooks).
    pre_hooks: list[Hook] = Field(default_factory=list)
    post_hooks: list[Hook] = Field(default_factory=list)

    @property
    def approval_policy(self) -> ApprovalPolicy | None:
        return self.approval or (ApprovalPolicy() if self.approval_required else None)

    @property
    def timeout(self) -> timedelta:
        return timedelta(seconds=self.timeout_seconds)

    @model_validator(mode="after")
    def _unique_resources(self) -> Layer:
        _reject_duplicates([r.name for r in self.resources], "resource")
        check_hook_names(self.pre_hooks, self.post_hooks)
        # A hook's idempotency token is derived from its name like a resource's: the two must not meet.
        for hook in [*self.pre_hooks, *self.post_hooks]:
            if any(r.name == hook.name for r in self.resources):
                raise ValueError(f"hook name {hook.name!r} is also the name of a resource of this layer")
        return self


class PhasePlan(PlanModel):
    layers: list[Layer] = Field(default_factory=list)
    approval_required: bool = False
    approval: ApprovalPolicy | None = None  # who must approve before this phase starts (implies approvalRequired)

    @property
    def approval_policy(self) -> ApprovalPolicy | None:
        return self.approval or (ApprovalPolicy() if self.approval_required else None)

    @model_validator(mode="after")
    def _unique_layers(self) -> PhasePlan:
        _reject_duplicates([layer.name for layer in self.layers], "layer")
        return self


class Defaults(PlanModel):
    account: str | None = None
    max_parallel_resources: int = Field(default=10, ge=1, le=100)
    # A drill that fails or is cancelled once ACTIVATE started cleans up what it created, unless this is true (its
    # artefacts stay for diagnosis; `drctl drill start --clean-up-on-failure` overrides it for one run).
    keep_drill_on_failure: bool = False


class Plan(PlanModel):
    api_version: str = PLAN_API_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    description: str = ""
    accounts: dict[str, Account] = Field(min_length=1)
    regions: Regions
    defaults: Defaults = Defaults()
    phases: dict[Phase, PhasePlan]
    # DRS source servers recovered together, by group name; `drs.recovery` resources name them in their waves.
    protection_groups: dict[Annotated[str, Field(pattern=NAME.pattern)], ProtectionGroup] = Field(default_factory=dict)
    notifications: Notifications | None = None  # an SNS topic told of approvals needed, pauses and the outcome

    @field_validator("api_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value != PLAN_API_VERSION:
            raise ValueError(f"unsupported apiVersion {value!r}; this orchestrator reads {PLAN_API_VERSION!r}")
        return value

    @field_validator("accounts")
    @classmethod
    def _account_keys(cls, accounts: dict[str, Account]) -> dict[str, Account]:
        for key in accounts:
            if not NAME.match(key):
                raise ValueError(f"account name {key!r} must be letters, digits, '.', '_' or '-'")
        return accounts

    # Cross-references (account keys, actions, parameters) are checked in plans.validation, which can name the
    # exact field of each problem; a model validator here could only blame the whole plan.

    def digest(self) -> str:
        """`sha256:` and the 64 hex digits of the plan as the run received it (canonical JSON): which plan a run ran,
        in the run's memo, audit trail, approvals and reports, whatever file or client it came from. Whole, not cut
        short: an approval is tied to the plan by it, and a short hash would let a plan's author make two plans
        (one to approve, one to run) that share it."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def account_key_for(self, item: Resource | ProtectionGroup) -> str:
        return item.account or self.defaults.account or next(iter(self.accounts))

    def region_for(self, item: Resource | ProtectionGroup) -> str:
        return item.region or self.regions.recovery

    def layers(self, phase: Phase) -> list[Layer]:
        plan = self.phases.get(phase)
        return list(plan.layers) if plan else []


def _reject_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} name {name!r} is used twice")
        seen.add(name)


__all__ = [
    "Account", "Defaults", "ExternalIdSource", "LaunchSettings", "Layer", "Mode", "PHASE_ORDER", "PLAN_API_VERSION",
    "Phase", "PhasePlan", "Plan", "PlanModel", "ProtectionGroup", "Regions", "Resource", "ServerLaunchSettings",
    "ServerSelection",
]
