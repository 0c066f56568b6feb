"""Publishing a run's notifications to the plan's SNS topic."""

from __future__ import annotations

from typing import Any

import structlog
from temporalio import activity

from activities.core.aws import AwsClients, aws_errors
from contracts.activities import NOTIFY, NotifyRequest
from plans.model import Account

_SUBJECT_LIMIT = 100  # SNS: ASCII, at most 100 characters, no line breaks
_MESSAGE_LIMIT = 256 * 1024

log = structlog.get_logger("dr.notify")


class NotifyActivities:
    def __init__(self, aws: AwsClients) -> None:
        self.aws = aws

    def all(self) -> list[Any]:
        return [self.publish]

    @activity.defn(name=NOTIFY)
    def publish(self, request: NotifyRequest) -> str:
        # No plan account: the worker's own credentials (no role), in the account that owns the topic.
        account = request.account or Account(id=request.topic_arn.split(":")[4])
        sns = self.aws.client("sns", account, request.region)
        subject = "".join(c if 32 <= ord(c) < 127 else " " for c in request.subject)[:_SUBJECT_LIMIT]
        message = request.message.encode()[:_MESSAGE_LIMIT].decode(errors="ignore")
        with aws_errors(f"Publish to {request.topic_arn}"):
            answer = sns.publish(
                TopicArn=request.topic_arn, Subject=subject, Message=message,
                MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in request.attributes.items()})
        log.info("notify.published", topic=request.topic_arn, notification=request.event,
                 message_id=answer["MessageId"])
        return str(answer["MessageId"])
