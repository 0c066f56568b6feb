"""The Step Functions callback of a run: its start option, its recorded state, and what crosses to its activity.

A state machine that starts a DR run from a `.waitForTaskToken` task passes the token here; the run answers it with
SendTaskSuccess / SendTaskFailure when it ends and SendTaskHeartbeat while it runs. Imported by workflow code:
pydantic and pure functions only.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from plans.model import Account

CALLBACK_SEND = "dr.callback.send"

# Step Functions' own limits (botocore stepfunctions 2016-11-23: TaskToken, SensitiveData, SensitiveError,
# SensitiveCause). Output is measured in UTF-8 bytes by the service; error and cause are measured the same way here,
# which is never longer than their character count.
TOKEN_MAX = 2048
OUTPUT_MAX_BYTES = 262144
ERROR_MAX = 256
CAUSE_MAX = 32768

# What Step Functions answers when nobody waits on the token any more (the task timed out, the execution ended or was
# stopped, the token is garbage). No retry can change that, and the DR run must not fail because its caller left.
GONE_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})

# Each heartbeat costs the run ~6 history events (timer started/fired, a workflow task, the local-activity marker).
# Past this many the run stops heartbeating rather than approach Temporal's 51,200-event cap: at 60 s that is 66 h.
MAX_HEARTBEATS = 4000


class CallbackOptions(BaseModel):
    """RunOptions.callback: answer a Step Functions task token when the run ends."""

    model_config = ConfigDict(extra="forbid")

    # A bearer secret for the waiting task: never logged or shown whole, never a search attribute.
    task_token: str = Field(min_length=1, max_length=TOKEN_MAX, repr=False)
    # Region of the state machine that issued the token; default: the worker's own region.
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    # Whose credentials answer: a key of the plan's accounts (through its role); default: the worker's own (hub).
    account: str | None = None
    # SendTaskHeartbeat every this many seconds while the run is in progress; default: none. Keep it well under the
    # Task state's HeartbeatSeconds (a half or less), and >= 60 for runs that may wait hours for approval.
    heartbeat_seconds: int | None = Field(default=None, ge=1, le=3600)

    def token_hint(self) -> str:
        return token_hint(self.task_token)


def token_hint(token: str) -> str:
    """What logs and the status query show instead of the token: enough to correlate, useless to replay."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


class CallbackStatus(StrEnum):
    PENDING = "PENDING"  # the run has not ended yet
    DELIVERED = "DELIVERED"  # Step Functions accepted the final answer
    CLOSED = "CLOSED"  # a retried final send found the task closed: the earlier attempt delivered it (or it expired)
    CALLER_GONE = "CALLER_GONE"  # Step Functions says nobody waits on the token: nothing more is sent
    UNDELIVERED = "UNDELIVERED"  # the final answer could not be sent (access denied, region down past retries)


class CallbackState(BaseModel):
    """LifecycleState.callback: what the run told its Step Functions caller, shown by the `status` query."""

    token: str  # token_hint(), never the token
    region: str | None = None
    account: str | None = None
    status: CallbackStatus = CallbackStatus.PENDING
    heartbeats: int = 0
    last_heartbeat_at: datetime | None = None
    heartbeat_error: str | None = None  # the last heartbeat that failed (heartbeats are best effort)
    outcome: Literal["success", "failure"] | None = None
    error: str | None = None  # SendTaskFailure's error, as sent
    sent_at: datetime | None = None
    detail: str = ""  # the service's answer when it was not a plain acceptance


class CallbackRequest(BaseModel):
    """Input of the callback activity: one SendTask* call."""

    kind: Literal["heartbeat", "success", "failure"]
    options: CallbackOptions
    account: Account | None = None  # resolved from options.account by the workflow; None: the worker's own
    output: str = ""  # success: JSON
    error: str = ""  # failure
    cause: str = ""  # failure

    def __repr__(self) -> str:  # the token stays out of Temporal's and pytest's error messages
        return f"CallbackRequest(kind={self.kind!r}, token={self.options.token_hint()})"


class CallbackReply(BaseModel):
    accepted: bool  # Step Functions took it
    code: str = ""  # else the error code it answered (one of GONE_CODES)
    message: str = ""
    attempt: int = 1


# ---- what is sent -----------------------------------------------------------------------------------------------

def utf8_len(text: str) -> int:
    return len(text.encode())


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` UTF-8 bytes (on a character boundary), marked when cut."""
    if utf8_len(text) <= limit:
        return text
    marker = "...[truncated]"
    cut = text.encode()[: max(limit - utf8_len(marker), 0)].decode(errors="ignore")
    return cut + marker


def fit_json(summary: dict[str, Any], limit: int) -> str:
    """The summary as JSON within `limit` bytes. Long lists of partial, then failed, resources are shortened (the
    count left out kept as `partialResourcesOmitted` / `failedResourcesOmitted`) so the result stays valid JSON the
    caller can parse; only then is it cut as text. Failed resources go last: they are what a caller acts on."""
    document = dict(summary)
    text = json.dumps(document, separators=(",", ":"), default=str)
    for key in ("partialResources", "failedResources"):
        items = list(document.get(key, []))
        while utf8_len(text) > limit and items:
            keep = len(items) // 2
            document[f"{key}Omitted"] = len(summary.get(key, [])) - keep
            items = items[:keep]
            document[key] = [clip(item, 1000) for item in items]
            text = json.dumps(document, separators=(",", ":"), default=str)
    return clip(text, limit)


def failure_error(status: str) -> str:
    """The `Error` a Catch in the state machine matches: DrRunFailed, DrRunCancelled, DrRunRejected."""
    return clip(f"DrRun{status.capitalize()}", ERROR_MAX)
