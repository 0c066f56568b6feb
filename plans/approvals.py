"""Approval gates a plan asks for: before a phase, a layer (and DRS waves through `pauseBefore`).

`approvalRequired: true` is the short form of `approval: {}`: one approval from anyone allowed to approve this run.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel


class Role(StrEnum):
    ADMIN = "admin"
    RECOVERY_MANAGER = "recovery-manager"
    PLAN_MANAGER = "plan-manager"
    OPERATOR = "operator"
    READ_ONLY = "read-only"
    AUDITOR = "auditor"


class ApprovalPolicy(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    approvals: int = Field(default=1, ge=1, le=10)  # distinct approvers needed (N of M)
    # Only these roles' approvals count (each approver must also be allowed to approve this run at all);
    # empty: every role allowed to approve.
    roles: list[Role] = Field(default_factory=list)
    timeout_minutes: float | None = Field(default=None, ge=0.1, le=7 * 24 * 60)
    # What a timeout does: abort ends the run as REJECTED; continue goes on, and only a drill may do that.
    on_timeout: Literal["abort", "continue"] = "abort"

    @field_validator("roles")
    @classmethod
    def _distinct(cls, roles: list[Role]) -> list[Role]:
        return sorted(set(roles))
