"""What the message handlers of DrLifecycleWorkflow do, and how their inputs are decoded. The handlers are on the
workflow class; the control ones are made here (`update_handler`, `validator`, `signal_handler`), one per name.

Every control message exists twice, under the same name and with the same payload (`ControlRequest`): as an
**update** (the sender waits for an answer: the status after it, or a failure saying why not) and as a **signal**
(fire and forget, for chat bots, ticketing hooks and `temporal workflow signal`). Temporal keeps signal and update
handlers apart (the SDK checks names per kind), so one name serves both. Both go through the same Control method:
the same token check, roles, four-eyes and audit. A signal has no answer, so what an update would have failed with
is recorded as a denial in the audit trail and shown in the status (`last_denial`); nothing a signal carries can
fail the run.

Inputs arrive as RawValue and are decoded here with the run's own payload converter: input that does not fit the
contract is then an InvalidInput error naming the field, instead of the SDK's "Failed decoding arguments", which
for a workflow's start input means a workflow task retried for ever.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from workflows.governance import Governance
from workflows.lifecycle_control import Control

with workflow.unsafe.imports_passed_through():
    from contracts.identity import IdentityError
    from contracts.lifecycle import (
        INVALID_INPUT,
        PERMISSION_DENIED,
        QUERY_REFUSED,
        AuditEntry,
        ChildGate,
        ControlRequest,
        ControlResult,
        LifecycleState,
    )

NO_INPUT = RawValue(Payload())  # the default of every input: a message sent without one gets a clear error
MAX_PROBLEMS = 10  # a junk input can have hundreds of problems: the first ones say enough

M = TypeVar("M", bound=BaseModel)


@contextmanager
def query_refusals() -> Iterator[None]:
    """A query's refusal, whatever raised it, as QUERY_REFUSED: the caller gets only its message, as plain text,
    so it must stay readable with payloads sealed (an encoded failure would read `Encoded failure`)."""
    try:
        yield
    except (ApplicationError, IdentityError) as refusal:
        raise ApplicationError(str(refusal), type=QUERY_REFUSED, non_retryable=True) from None


def decode(raw: RawValue, model: type[M], what: str) -> M:
    """`raw` as `model`, or a non-retryable InvalidInput error naming each field that does not fit."""
    if raw is NO_INPUT:
        raise ApplicationError(f"{what}: no input given (expected a JSON object: {', '.join(model.model_fields)})",
                               type=INVALID_INPUT, non_retryable=True)
    try:
        value: M = workflow.payload_converter().from_payload(raw.payload, model)
        return value
    except Exception as err:  # noqa: BLE001 - whatever the converter raises, the sender must be told what is wrong
        cause = err if isinstance(err, ValidationError) else err.__cause__
        if isinstance(cause, ValidationError):
            problems = [f"{'.'.join(map(str, e['loc'])) or '(the whole input)'}: {e['msg']}"
                        for e in cause.errors()[:MAX_PROBLEMS]]
            more = cause.error_count() - len(problems)
            detail = "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
        else:
            detail = f"not {model.__name__} JSON ({type(err).__name__}: {str(err)[:300]})"
        raise ApplicationError(f"{what}: invalid input: {detail}", type=INVALID_INPUT, non_retryable=True) from None


_Check = Callable[[Control, ControlRequest], None]
_Act = Callable[[Control, ControlRequest], Awaitable[ControlResult]]

# name (of the update and of the signal) -> what its validator checks, and what it does.
CONTROLS: dict[str, tuple[_Check, _Act]] = {
    "approve": (lambda c, r: c.check_decision(r, rejecting=False), lambda c, r: c.decide(r, "approve", "approved")),
    "reject": (lambda c, r: c.check_decision(r, rejecting=True), lambda c, r: c.decide(r, "reject", "rejected")),
    "pause": (lambda c, r: c.check_pause(), lambda c, r: c.pause(r)),
    "resume": (lambda c, r: c.check_resume(), lambda c, r: c.resume(r)),
    "cancel": (lambda c, r: c.check_cancel(r), lambda c, r: c.cancel(r)),
    "skip": (lambda c, r: c.check_skip(r), lambda c, r: c.skip(r)),
    "switch_ungraceful": (lambda c, r: c.check_switch_ungraceful(), lambda c, r: c.switch_ungraceful(r)),
}


class Messages:
    """A plain object the workflow owns: what its queries, updates and signals do. Made before anything else, so
    that a run whose input did not decode still answers every message (with InvalidInput)."""

    def __init__(self, input_error: str | None) -> None:
        self.input_error = input_error
        self._parts: tuple[LifecycleState, Governance, Control] | None = None

    def bind(self, state: LifecycleState, governance: Governance, control: Control) -> None:
        self._parts = (state, governance, control)

    def _live(self) -> tuple[LifecycleState, Governance, Control]:
        if self._parts is None:
            raise ApplicationError(f"this run never started: {self.input_error}", type=INVALID_INPUT,
                                   non_retryable=True)
        return self._parts

    def status(self) -> LifecycleState:
        """Everything but the audit trail, which needs view-audit (query `audit`)."""
        with query_refusals():
            return self._live()[0].model_copy(update={"audit": []})

    def audit(self, token: str | None) -> list[AuditEntry]:
        with query_refusals():
            governance = self._live()[1]
            if not token:
                raise ApplicationError("the audit query needs a token with view-audit as its argument "
                                       "(--input '\"<JWT>\"')", type=INVALID_INPUT, non_retryable=True)
            return governance.audit_trail(token)

    def check(self, name: str, raw: RawValue) -> None:
        """An update's validator: refused here, the update leaves nothing in history."""
        CONTROLS[name][0](self._live()[2], decode(raw, ControlRequest, name))

    async def update(self, name: str, raw: RawValue) -> ControlResult:
        return await CONTROLS[name][1](self._live()[2], decode(raw, ControlRequest, name))

    async def signal(self, name: str, raw: RawValue) -> None:
        """The update's checks and handler, in one; what the update would fail with is recorded instead."""
        if self._parts is None:
            workflow.logger.warning("signal %s ignored: this run never started", name)
            return
        _, governance, control = self._parts
        request = ControlRequest()  # who sent an input that does not decode is unknown
        request._via = "signal"
        try:
            request = decode(raw, ControlRequest, name)
            request._via = "signal"
            check, act = CONTROLS[name]
            check(control, request)
            await act(control, request)
        except ApplicationError as err:
            if err.type != PERMISSION_DENIED:  # a denial is on record already
                governance.deny(name.replace("_", "-"), request, err.message)

    async def child_gate(self, signal: ChildGate) -> None:
        await self._live()[2].child_gate(signal)


# The control handlers of the workflow class, made here: seven names, each an update (with its validator) and a
# signal. `self` stays unannotated: the SDK leaves only an unannotated `self` out of a handler's arguments.

def update_handler(name: str) -> Callable[..., Awaitable[ControlResult]]:
    async def handler(self, raw: RawValue = NO_INPUT) -> ControlResult:
        result: ControlResult = await self._messages.update(name, raw)
        return result
    handler.__name__ = handler.__qualname__ = name
    return handler


def validator(name: str) -> Callable[..., None]:
    def check(self, raw: RawValue = NO_INPUT) -> None:
        self._messages.check(name, raw)
    check.__name__ = check.__qualname__ = f"_check_{name}"
    return check


def signal_handler(name: str) -> Callable[..., Awaitable[None]]:
    async def handler(self, raw: RawValue = NO_INPUT) -> None:
        await self._messages.signal(name, raw)
    handler.__name__ = handler.__qualname__ = f"{name}_signal"
    return handler
