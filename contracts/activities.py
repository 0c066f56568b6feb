"""What crosses the boundary between workflows and activities.

Workflow code imports this module, so it holds only pydantic models: no boto3, no I/O.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from plans.errors import PlanIssue as PlanIssue  # what the VALIDATE_PLAN activity returns
from plans.model import Account, Mode, Phase, Regions, Resource

# Activity type names: the workflow calls these, the worker registers them.
VALIDATE_PLAN = "dr.plan.validate"
RESOURCE_START = "dr.resource.start"
RESOURCE_WAIT = "dr.resource.wait"
NOTIFY = "dr.notify.publish"
# Resolves a resource's `!Import` / `resolve:ssm:` references just before it starts; takes a ResourceCall and returns
# the Resource with the values in place. Only resources with references call it.
RESOURCE_RESOLVE = "dr.resource.resolve"


class ModuleParameters(BaseModel):
    """Base for a module's parameter model: camelCase in plans, strict about unknown keys."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


# A timed wait between steps is a workflow timer, not an activity: the workflow reads these parameters itself.
WAIT_ACTION = "control.wait"


class WaitParameters(ModuleParameters):
    seconds: int = Field(ge=1, le=24 * 3600)
    reason: str = ""


class ResourceCall(BaseModel):
    """Everything an activity needs to act on one resource; the activity never reads the plan file."""

    execution_id: str  # the workflow id: names and tags what we create, so a retry finds it again
    plan_name: str
    mode: Mode
    phase: Phase
    layer: str
    resource: Resource
    account_key: str
    account: Account
    region: str
    regions: Regions


class Operation(BaseModel):
    """The state of one resource operation, as a start or a poll saw it."""

    done: bool
    # What `poll` needs to find the operation again (ids, change ids, names). Recorded in history by the start
    # activity, so a retried wait never has to start anything.
    handle: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)  # what the operator wants to see: endpoints, values
    message: str = ""  # one human line: "promoting orders-replica (modifying)"
    poll_interval_seconds: float = Field(default=5.0, gt=0, le=300)


class WaitRequest(BaseModel):
    call: ResourceCall
    operation: Operation  # as the start (or the previous wait) returned it


class WaitProgress(BaseModel):
    """Heartbeat details of the wait activity, so a retry resumes the wait and keeps its count."""

    polls: int = 0
    last: Operation | None = None


class NotifyRequest(BaseModel):
    """One notification to the plan's SNS topic."""

    topic_arn: str
    region: str
    account: Account | None = None  # None: the worker's own credentials
    event: str
    subject: str
    message: str
    attributes: dict[str, str]
