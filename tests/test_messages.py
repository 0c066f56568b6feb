"""Control updates as the Temporal CLI and drctl send them: a denied update fails (non-zero exit) and stays in the
audit trail, a refusal is a clear non-retryable error, and an accepted one answers with the status after it."""

from __future__ import annotations

import asyncio
import json
import os
import sysconfig
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from contracts.lifecycle import PERMISSION_DENIED, REFUSED, RunStatus
from tests.identity_helpers import token_for
from tests.lifecycle_helpers import audit_of, control, finish, make_plan, send, start_run, wait_resource, wait_until

TEMPORAL = os.path.join(sysconfig.get_path("scripts"), "temporal")
DRCTL = os.path.join(sysconfig.get_path("scripts"), "drctl")
INITIATOR = "initiator@example.com"


async def temporal(worker: Any, *args: str) -> tuple[int, str]:
    """The `temporal` CLI of the venv against the test server; its exit code and output (stdout and stderr)."""
    address = worker.client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        TEMPORAL, *args, "--address", address, "--namespace", worker.client.namespace,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


def payload(user: str, roles: tuple[str, ...], reason: str) -> str:
    return json.dumps({"token": token_for(user, roles), "reason": reason})


async def gated_run(worker: Any, name: str, task_queue: str | None = None) -> Any:
    plan = make_plan({"ACTIVATE": [{"name": "gated", "approvalRequired": True,
                                    "resources": [wait_resource("work", 1)]}]}, name=name)
    handle = await start_run(worker.client, task_queue or worker.task_queue, plan, initiator=INITIATOR)
    await wait_until(handle, lambda s: s.pending_gate() is not None)
    return handle


async def test_a_denied_update_fails_and_stays_in_the_audit_trail(worker):
    handle = await gated_run(worker, "update-denied")
    code, out = await temporal(worker, "workflow", "update", "execute", "--workflow-id", handle.id,
                               "--name", "approve", "--input", payload(INITIATOR, ("admin",), "mine"))
    assert code != 0 and "four-eyes" in out, out
    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await handle.execute_update("approve", control("ops@example.com", roles=("operator",)))
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == PERMISSION_DENIED and cause.non_retryable
    assert cause.message.startswith("denied: roles ['operator'] may not approve")
    # Recorded by the handler before it raised: kept in the run's state.
    denied = [e.actor for e in await audit_of(handle) if not e.accepted]
    assert denied == [INITIATOR, "ops@example.com"]
    code, out = await temporal(worker, "workflow", "update", "execute", "--workflow-id", handle.id,
                               "--name", "approve", "--input", payload("manager@example.com", ("plan-manager",), "ok"))
    assert code == 0, out
    assert "accepted:true" in out and "status:RUNNING" in out  # the state after the approval, not before
    assert (await finish(handle)).status is RunStatus.COMPLETED


async def test_refusals_are_clear_non_retryable_errors(worker):
    handle = await gated_run(worker, "refusals")
    for update, arg, kind, text in (
        ("resume", control(), REFUSED, "the run is not paused"),
        ("reject", control(), REFUSED, "a rejection needs a reason"),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as raised:
            await handle.execute_update(update, arg)
        cause = raised.value.cause
        assert isinstance(cause, ApplicationError), cause
        assert (cause.type, cause.non_retryable) == (kind, True) and text in cause.message, cause
    answer = await send(handle, "approve", control("manager@example.com", roles=("plan-manager",)))
    assert answer.accepted and answer.status is RunStatus.RUNNING
    await finish(handle)


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
