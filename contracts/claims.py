"""Claims: which run holds what, so that two runs never act on the same thing at once.

Two kinds of things are claimed, each in its own scope (one entity workflow per scope, `claims_workflow_id`):
- a plan, by a run that changes production (planned, disaster, failback): one real failover per plan at a time;
- a DRS source server, by the run whose wave is about to launch it: a second drill or failover of the same server
  would replace the first one's instance, or meet a ConflictException half way through its wave.

A claim is atomic because one workflow decides it (updates run one at a time), also when two runs resolve the same
servers at the same moment. A claim lasts while its run is open: the activity that claims checks, when a key is held,
whether its holder still runs, and takes it over when it does not (a run killed by `temporal workflow terminate`
releases nothing, and nothing has to). A real failover takes over what a drill holds: a disaster must never wait for
a drill.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from plans.model import Mode

CLAIMS_WORKFLOW_TYPE = "DrClaims"
CLAIM = "dr.claims.claim"  # the activity: claims keys of one scope for one run
CLAIM_UPDATE = "claim"  # the entity workflow's update
PLANS_SCOPE = "plans"


def drs_scope(target_key: str) -> str:
    """The scope of the DRS source servers of one account+region ("111122223333/us-west-2")."""
    return f"drs/{target_key}"


def claims_workflow_id(task_queue: str, scope: str) -> str:
    """Per task queue: the entity must run on workers that serve the runs that claim (a queue nobody polls would
    leave every claim waiting); runs on different queues are different deployments."""
    return f"dr-claims/{task_queue}/{scope}"


class Holder(BaseModel):
    execution_id: str  # the lifecycle run's workflow id
    mode: Mode
    plan_name: str

    def describe(self) -> str:
        return f"run {self.execution_id} ({self.mode.value} of plan {self.plan_name})"


class ClaimRequest(BaseModel):
    """What the claim activity takes, and the entity's update too (with `evict` filled by the activity)."""

    scope: str
    keys: list[str] = Field(min_length=1)
    holder: Holder
    # Holders the activity found closed: their claims are void and go to this holder.
    evict: list[str] = Field(default_factory=list)


class ClaimResult(BaseModel):
    granted: list[str] = Field(default_factory=list)
    # key -> the run that holds it (still open when the activity answers)
    held: dict[str, Holder] = Field(default_factory=dict)
    # key -> the drill it was taken from (a real failover goes first)
    taken_from: dict[str, Holder] = Field(default_factory=dict)


class ClaimsInput(BaseModel):
    """The entity's input: its scope, and the claims carried over a continue-as-new."""

    scope: str
    claims: dict[str, Holder] = Field(default_factory=dict)
