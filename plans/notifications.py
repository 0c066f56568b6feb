"""Where a plan's runs tell people what happens: an SNS topic (e-mail, chat, paging subscribe to it)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class NotificationEvent(StrEnum):
    APPROVAL_NEEDED = "approval-needed"
    PAUSED = "paused"
    COMPLETED = "completed"
    PARTIAL = "partial"  # completed, with failures the plan tolerates (a plan listing "completed" gets it too)
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class Notifications(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
    # The plan account whose role publishes (default: the worker's own credentials, i.e. the hub account).
    account: str | None = None
    events: list[NotificationEvent] = Field(default_factory=lambda: list(NotificationEvent), min_length=1)

    @property
    def region(self) -> str:
        return self.topic_arn.split(":")[3]
