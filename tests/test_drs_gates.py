"""A DRS wave with pauseBefore is a gate of the lifecycle run: the run's own approve/reject decide it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError

from plans.model import Mode
from tests.lifecycle_helpers import audit_of, control, finish, resource, send, start_run, status_of, wait_until
from tests.test_drs_recovery import child_state, drs_plan, estate
from contracts.search_attributes import DR_STATUS
from contracts.lifecycle import RunOptions, RunStatus, StepStatus


def gated_plan(name: str, app: str) -> Any:
    return drs_plan(name, app, waves=[
        {"name": "db", "protectionGroups": ["db"]},
        {"name": "web", "protectionGroups": ["web"], "dependsOn": ["db"], "pauseBefore": True},
    ], groups={"db": {"tags": {"Tier": "db"}}, "web": {"tags": {"Tier": "web"}}}, cleanup=False)


async def start_and_wait_for_the_gate(worker: Any, world: Any, name: str) -> tuple[Any, Any]:
    app = estate(world, {"db": 2, "web": 3})
    handle = await start_run(worker.client, worker.task_queue, gated_plan(name, app), mode=Mode.DRILL,
                             options=RunOptions(phases=["ACTIVATE"]))
    state = await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL, timeout=60)
    return handle, state


async def test_a_paused_wave_is_a_lifecycle_gate_and_its_approve_releases_it(worker, world):
    handle, state = await start_and_wait_for_the_gate(worker, world, "drs-gate-approve")
    gate = state.pending_gate()
    assert gate is not None and gate.id == "ACTIVATE/servers/servers/wave:web"
    assert gate.child_workflow_id == f"{handle.id}/ACTIVATE/servers/servers" and gate.wave == "web"
    assert (await handle.describe()).typed_search_attributes.get(DR_STATUS) == "AWAITING_APPROVAL"

    child = await child_state(worker, handle.id, "ACTIVATE")
    waves = {w.name: w for w in child.waves}
    assert waves["db"].status.value == "SUCCEEDED" and waves["web"].status.value == "AWAITING_APPROVAL"
    assert {s.wave for s in child.servers.values()} == {"db"}  # web's servers are not even resolved yet
    assert all(s.status.value == "LAUNCHED" for s in child.servers.values())

    with pytest.raises(WorkflowUpdateFailedError):
        await send(handle, "approve", control(gate="ACTIVATE/servers/servers/wave:db"))
    answer = await send(handle, "approve", control(actor="manager@example.com", reason="db looks good",
                                                   gate=gate.id))
    assert answer.accepted and "wave:web approved" in answer.message
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED, result.message

    state = await status_of(handle)
    servers = resource(state, "ACTIVATE", "servers", "servers")
    assert servers.status is StepStatus.SUCCEEDED and servers.outputs["launched"] == 5
    assert servers.outputs["waves"] == {"db": "SUCCEEDED", "web": "SUCCEEDED"}
    assert [(g.id, g.decision, g.actor) for g in state.gates] == [
        ("ACTIVATE/servers/servers/wave:web", "approved", "manager@example.com")]
    approvals = [a for a in await audit_of(handle) if a.action == "approve"]
    assert len(approvals) == 1 and "wave web" in approvals[0].detail
    child = await child_state(worker, handle.id, "ACTIVATE")
    waves = {w.name: w for w in child.waves}
    assert waves["db"].ended_at <= waves["web"].started_at


async def test_rejecting_a_wave_gate_fails_the_wave_and_the_run(worker, world):
    handle, _ = await start_and_wait_for_the_gate(worker, world, "drs-gate-reject")
    with pytest.raises(WorkflowUpdateFailedError):
        await send(handle, "reject", control())  # a rejection needs a reason
    answer = await send(handle, "reject", control(actor="owner@example.com", reason="web tier frozen"))
    assert answer.accepted

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert getattr(failure.value.cause, "type", None) == "DrRunFailed"
    state = await status_of(handle)
    assert state.status is RunStatus.FAILED  # not REJECTED: only phase/layer gates end the run that way
    servers = resource(state, "ACTIVATE", "servers", "servers")
    assert servers.status is StepStatus.FAILED and "rejected by owner@example.com: web tier frozen" in servers.error
    assert servers.outputs["waves"] == {"db": "SUCCEEDED", "web": "FAILED"}
    assert [(g.decision, g.reason) for g in state.gates] == [("rejected", "web tier frozen")]
    rejections = [a for a in await audit_of(handle) if a.action == "reject"]
    assert len(rejections) == 1 and rejections[0].actor == "owner@example.com"
    assert rejections[0].reason == "web tier frozen" and "wave web" in rejections[0].detail

    child = await child_state(worker, handle.id, "ACTIVATE")
    web = next(w for w in child.waves if w.name == "web")
    assert web.status.value == "FAILED" and web.message == "rejected by owner@example.com: web tier frozen"
    assert not web.servers  # nothing was launched for it


async def test_approving_at_the_child_is_refused_with_a_pointer_to_the_run(worker, world):
    """One place decides approvals (tokens, roles, four-eyes): the lifecycle run, not its DRS child."""
    handle, _ = await start_and_wait_for_the_gate(worker, world, "drs-gate-child")
    child = worker.client.get_workflow_handle(f"{handle.id}/ACTIVATE/servers/servers")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await send(child, "approve", control(actor="drs-admin@example.com", gate="web"))
    assert handle.id in str(refused.value.cause)
    assert (await status_of(handle)).pending_gate() is not None
    await send(handle, "approve", control(actor="drs-admin@example.com"))
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED, result.message
    state = await status_of(handle)
    assert [(g.decision, g.actor) for g in state.gates] == [("approved", "drs-admin@example.com")]
    assert resource(state, "ACTIVATE", "servers", "servers").outputs["launched"] == 5


async def test_cancel_while_a_wave_awaits_approval_ends_the_run(worker, world):
    app = estate(world, {"db": 1, "web": 1})
    plan = drs_plan("gate-cancel", app, waves=[
        {"name": "db", "protectionGroups": ["db"]},
        {"name": "web", "protectionGroups": ["web"], "dependsOn": ["db"], "pauseBefore": True},
    ], groups={"db": {"tags": {"Tier": "db"}}, "web": {"tags": {"Tier": "web"}}}, cleanup=False)
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL,
                             options=RunOptions(phases=["ACTIVATE"]))
    await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL, timeout=60)
    await send(handle, "cancel", control(reason="drill window closed"))
    with pytest.raises(WorkflowFailureError):  # the rejected wave fails the resource, and with it the run
        await asyncio.wait_for(handle.result(), 60)
    state = await status_of(handle)
    assert state.status.finished and state.gates[0].decision == "rejected"
    assert "drill window closed" in state.gates[0].reason


async def test_a_wave_approval_policy_needs_n_approvals_from_its_roles(worker, world):
    app = estate(world, {"db": 1, "web": 2})
    plan = drs_plan("wave-two-of", app, waves=[
        {"name": "db", "protectionGroups": ["db"]},
        {"name": "web", "protectionGroups": ["web"], "dependsOn": ["db"],
         "approval": {"approvals": 2, "roles": ["recovery-manager"]}},
    ], groups={"db": {"tags": {"Tier": "db"}}, "web": {"tags": {"Tier": "web"}}}, cleanup=False)
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED,
                             options=RunOptions(phases=["ACTIVATE"]))
    gate = (await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL, timeout=60)).pending_gate()
    assert gate.required == 2 and gate.roles == ["recovery-manager"]
    admin = await send(handle, "approve", control("root@example.com", roles=("admin",)))
    assert not admin.accepted and "counts only approvals of recovery-manager" in admin.message
    first = await send(handle, "approve", control("rm1@example.com", roles=("recovery-manager",)))
    assert first.accepted and "1 of 2" in first.message
    child = await child_state(worker, handle.id, "ACTIVATE")
    assert {w.name: w.status.value for w in child.waves}["web"] == "AWAITING_APPROVAL"  # one is not enough
    assert (await send(handle, "approve", control("rm2@example.com", roles=("recovery-manager",)))).accepted
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED, result.message
    assert resource(await status_of(handle), "ACTIVATE", "servers", "servers").outputs["launched"] == 3


def test_a_wave_approval_cannot_time_out():
    from pydantic import ValidationError

    from plans.drs import Wave

    with pytest.raises(ValidationError, match="has no timeout"):
        Wave.model_validate({"name": "w", "protectionGroups": ["g"], "approval": {"timeoutMinutes": 5}})
