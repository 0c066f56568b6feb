"""The Step Functions callback activity: one SendTaskHeartbeat / SendTaskSuccess / SendTaskFailure per call.

"Nobody waits on this token any more" (GONE_CODES) is an answer, not an error: it is returned so the workflow records
it and stops, and the DR run never fails because of its caller. Throttling, 5xx and network errors raise, so
Temporal's retry policy handles them; a retry of a final send that already got through meets TaskTimedOut (AWS) or
InvalidToken (moto) and reports the task closed.
"""

from __future__ import annotations

from typing import Any

import structlog
from botocore.exceptions import ClientError
from temporalio import activity

from activities.core.aws import AwsClients, aws_errors, error_code, fatal
from contracts.callback import CALLBACK_SEND, GONE_CODES, CallbackReply, CallbackRequest

log = structlog.get_logger("dr.callback")

# Beyond activities.core.aws's list: our output was refused, or the token's KMS key is closed to us. Retrying cannot help.
_PERMANENT = frozenset({"InvalidOutput", "KmsAccessDeniedException", "KmsInvalidStateException"})


class CallbackActivities:
    def __init__(self, aws: AwsClients) -> None:
        self.aws = aws

    def all(self) -> list[Any]:
        return [self.send]

    @activity.defn(name=CALLBACK_SEND)
    def send(self, request: CallbackRequest) -> CallbackReply:
        options = request.options
        region = options.region or self.aws.hub_region
        attempt = activity.info().attempt
        bound = log.bind(kind=request.kind, token=options.token_hint(), region=region, attempt=attempt,
                         account=request.account.id if request.account else "hub")
        client = self._client(request, region)
        kwargs: dict[str, Any] = {"taskToken": options.task_token}
        if request.kind == "heartbeat":
            call = client.send_task_heartbeat
        elif request.kind == "success":
            call, kwargs["output"] = client.send_task_success, request.output
        else:
            call = client.send_task_failure
            kwargs.update(error=request.error, cause=request.cause)
        with aws_errors(f"stepfunctions SendTask{request.kind.capitalize()} ({options.token_hint()})"):
            try:
                call(**kwargs)
            except ClientError as exc:
                code = error_code(exc)
                if code in _PERMANENT:
                    raise fatal(f"stepfunctions SendTask{request.kind.capitalize()}: {code}: {exc}", code) from exc
                if code not in GONE_CODES:
                    raise
                message = str(exc.response.get("Error", {}).get("Message", ""))
                bound.warning("callback.caller_gone", code=code, message=message)
                return CallbackReply(accepted=False, code=code, message=message, attempt=attempt)
        if request.kind == "heartbeat":
            bound.debug("callback.heartbeat")
        else:
            bound.info("callback.sent")
        return CallbackReply(accepted=True, attempt=attempt)

    def _client(self, request: CallbackRequest, region: str) -> Any:
        if request.account is not None:  # a plan account: its role, through the shared AssumeRole cache
            return self.aws.client("stepfunctions", request.account, region)
        return self.aws.hub_client("stepfunctions", region)
