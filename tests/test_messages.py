"""Control messages as the Temporal CLI, chat bots and ticketing hooks send them: signals under the update names, a
denied update that fails (non-zero exit), and messages without a usable input answered with a clear error."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from contracts.lifecycle import INVALID_INPUT, PERMISSION_DENIED, REFUSED, RunStatus
from tests.cli_helpers import DRCTL, cli_env, drctl, payload, temporal
from tests.identity_helpers import token_for
from workers.main import ACTIVITY_THREADS, build_worker
from tests.lifecycle_helpers import audit_of, control, finish, make_plan, send, start_run, status_of, wait_resource, \
    wait_until

INITIATOR = "initiator@example.com"


async def gated_run(worker: Any, name: str, task_queue: str | None = None) -> Any:
    plan = make_plan({"ACTIVATE": [{"name": "gated", "approvalRequired": True,
                                    "resources": [wait_resource("work", 1)]}]}, name=name)
    handle = await start_run(worker.client, task_queue or worker.task_queue, plan, initiator=INITIATOR)
    await wait_until(handle, lambda s: s.pending_gate() is not None)
    return handle


async def test_a_signal_opens_a_gate_and_a_denied_signal_is_recorded(worker, temporal_env):
    handle = await gated_run(worker, "signalled")
    for who, roles, why in ((INITIATOR, ("admin",), "four-eyes"), ("ops@example.com", ("operator",), "may not")):
        code, out = await temporal(worker, "workflow", "signal", "--workflow-id", handle.id, "--name", "approve",
                                   "--input", payload(who, roles, "looks fine", handle.id))
        assert code == 0, out  # a signal is only delivered: what it did is in the run
        state = await wait_until(handle, lambda s, who=who: s.last_denial is not None and who in s.last_denial)
        assert why in state.last_denial and "(signal)" in state.last_denial
        assert state.pending_gate() is not None and state.status is RunStatus.AWAITING_APPROVAL
    code, out = await temporal(worker, "workflow", "signal", "--workflow-id", handle.id, "--name", "approve",
                               "--input", '{"reason": "no token"}')
    await wait_until(handle, lambda s: s.denied_attempts == 3)
    # A signal has no answer: its sender sees the denial in `drctl drill status` (and the run's status query).
    code, out, err = await drctl("drill", "status", handle.id, env=cli_env(temporal_env))
    assert code == 0, err
    assert "last denied request:" in " ".join(out.split()) and "(signal)" in out
    code, out = await temporal(worker, "workflow", "signal", "--workflow-id", handle.id, "--name", "approve",
                               "--input", payload("manager@example.com", ("plan-manager",), "change 4711", handle.id))
    assert code == 0, out
    assert (await finish(handle)).status is RunStatus.COMPLETED
    trail = [(e.actor, e.action, e.accepted, e.via) for e in await audit_of(handle) if e.action == "approve"]
    assert trail == [(INITIATOR, "approve", False, "signal"), ("ops@example.com", "approve", False, "signal"),
                     ("(unknown)", "approve", False, "signal"), ("manager@example.com", "approve", True, "signal")]
    assert (await status_of(handle)).gates[0].actor == "manager@example.com"


async def test_signals_that_cannot_apply_are_recorded_and_change_nothing(worker):
    handle = await gated_run(worker, "signal-refused")
    manager = control("manager@example.com", roles=("plan-manager",), run=handle.id)
    await handle.signal("resume", manager)  # not paused
    await handle.signal("approve", "not an object")
    await handle.signal("pause", manager)
    state = await wait_until(handle, lambda s: s.paused)
    assert state.denied_attempts == 2 and "invalid input" in (state.last_denial or "")
    await handle.signal("resume", manager)
    await handle.signal("reject", manager.model_copy(update={"reason": "change freeze"}))
    assert (await finish(handle)).status is RunStatus.REJECTED
    trail = [(e.action, e.accepted) for e in await audit_of(handle)][1:]
    assert trail == [("resume", False), ("approve", False), ("pause", True), ("resume", True), ("reject", True)]
    resume_refusal = (await audit_of(handle))[1]
    assert resume_refusal.reason == "the run is not paused" and resume_refusal.via == "signal"


async def test_a_denied_update_fails_and_stays_in_the_audit_trail(worker):
    handle = await gated_run(worker, "update-denied")
    code, out = await temporal(worker, "workflow", "update", "execute", "--workflow-id", handle.id,
                               "--name", "approve", "--input", payload(INITIATOR, ("admin",), "mine", handle.id))
    assert code != 0 and "four-eyes" in out, out
    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await handle.execute_update("approve", control("ops@example.com", roles=("operator",)))
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == PERMISSION_DENIED and cause.non_retryable
    assert cause.message.startswith("denied: roles ['operator'] may not approve")
    # Recorded by the handler before it raised: kept in the run's state.
    denied = [(e.actor, e.via) for e in await audit_of(handle) if not e.accepted]
    assert denied == [(INITIATOR, "update"), ("ops@example.com", "update")]
    code, out = await temporal(worker, "workflow", "update", "execute", "--workflow-id", handle.id,
                               "--name", "approve", "--input",
                               payload("manager@example.com", ("plan-manager",), "ok", handle.id))
    assert code == 0, out
    assert "accepted:true" in out and "status:RUNNING" in out  # the state after the approval, not before
    assert (await finish(handle)).status is RunStatus.COMPLETED


async def test_refusals_and_missing_inputs_are_clear_non_retryable_errors(worker):
    handle = await gated_run(worker, "refusals")
    for update, arg, kind, text in (
        ("resume", control(), REFUSED, "the run is not paused"),
        ("reject", control(), REFUSED, "a rejection needs a reason"),
        ("approve", None, INVALID_INPUT, "approve: no input given"),
        ("approve", {"token": "x", "color": "red"}, INVALID_INPUT, "color: Extra inputs are not permitted"),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as raised:
            if arg is None:
                await handle.execute_update(update)
            else:
                await handle.execute_update(update, arg)
        cause = raised.value.cause
        assert isinstance(cause, ApplicationError), cause
        assert (cause.type, cause.non_retryable) == (kind, True) and text in cause.message, cause
    with pytest.raises(WorkflowQueryFailedError, match="needs a token with view-audit"):
        await handle.query("audit")
    code, out = await temporal(worker, "workflow", "query", "--workflow-id", handle.id, "--name", "audit")
    assert code != 0 and "needs a token with view-audit" in out, out
    answer = await send(handle, "approve", control("manager@example.com", roles=("plan-manager",)))
    assert answer.accepted and answer.status is RunStatus.RUNNING
    await finish(handle)


async def test_a_signal_sent_while_no_worker_runs_is_applied_when_one_comes_back(worker):
    queue = f"dr-offline-{uuid.uuid4().hex[:8]}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(worker.client, queue, worker.aws, executor):
            handle = await gated_run(worker, "signal-offline", queue)
        # No worker polls this queue now: the signal waits in the run's history.
        await handle.signal("approve", control("manager@example.com", roles=("plan-manager",), reason="async ok",
                                               run=handle.id))
        async with build_worker(worker.client, queue, worker.aws, executor):
            assert (await asyncio.wait_for(finish(handle), 60)).status is RunStatus.COMPLETED
            gate = (await status_of(handle)).gates[0]
    assert (gate.decision, gate.actor, gate.reason) == ("approved", "manager@example.com", "async ok")


async def test_drctl_approve_exits_1_on_a_denial(worker):
    handle = await gated_run(worker, "drctl-denied")
    env = {**os.environ, "TEMPORAL_ADDRESS": worker.client.service_client.config.target_host,
           "DRCTL_TOKEN": token_for(INITIATOR, ["admin"])}
    process = await asyncio.create_subprocess_exec(DRCTL, "drill", "approve", handle.id, "--reason", "mine", env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert err.decode().startswith("error: denied: four-eyes: ") and "Traceback" not in err.decode()
    await send(handle, "approve", control("manager@example.com", roles=("plan-manager",)))
    await finish(handle)
