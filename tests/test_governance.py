"""Governance enforced in the workflow: who may start and steer a run, four-eyes and N-of-M approvals, gate
timeouts, and the audit trail that records every decision, denied attempts included."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from drctl.progress import ProgressPrinter
from plans.approvals import Role
from plans.model import Mode
from tests.identity_helpers import session_idp, token_for
from tests.lifecycle_helpers import (
    audit_of,
    control,
    make_plan,
    send,
    start_run,
    status_of,
    wait_resource,
    wait_until,
)
from contracts.lifecycle import LifecycleResult, RunStatus
from contracts.search_attributes import DR_MODE
from workflows.rbac import START_ACTION, Action, allowed

ROLES = [role.value for role in Role]
INITIATOR = "initiator@example.com"


def gated_plan(name: str, approval: dict[str, Any] | None = None) -> Any:
    return make_plan({"ACTIVATE": [{"name": "gated", "approval": approval or {},
                                    "resources": [wait_resource("work", 1)]}]}, name=name)


async def result_of(handle: Any) -> LifecycleResult:
    """The run's result whether it completed, was rejected or failed."""
    try:
        return await handle.result()
    except Exception:  # noqa: BLE001 - a failed run still has a state to show
        state = await status_of(handle)
        return LifecycleResult(workflow_id=handle.id, status=state.status, phase_durations_seconds={},
                               failed_resources=[], message=state.error or "")


def user(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:4]}@example.com"


@pytest.mark.parametrize("mode", list(Mode))
async def test_who_may_start_each_mode(worker, mode):
    runs = {}
    for role in ROLES:
        plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("w", 1)]}]},
                         name=f"start-{mode.value}-{role}")
        runs[role] = await start_run(worker.client, worker.task_queue, plan, mode=mode, initiator=user(role),
                                     roles=(role,))
    results = dict(zip(runs, await asyncio.gather(*(result_of(h) for h in runs.values())), strict=True))
    for role, result in results.items():
        expected = allowed([role], START_ACTION[mode], mode)
        assert (result.status is RunStatus.COMPLETED) is expected, (role, result.status, result.message)
        trail = await audit_of(runs[role])
        assert trail[0].action == START_ACTION[mode].value and trail[0].accepted is expected
        if not expected:
            assert result.status is RunStatus.REJECTED and "start denied" in result.message
            assert role in trail[0].reason or "may not" in trail[0].reason
            resources = [r for p in (await status_of(runs[role])).phases for x in p.layers for r in x.resources]
            assert all(r.status.value == "SKIPPED" and r.started_at is None for r in resources)  # nothing ran


@pytest.mark.parametrize("mode", [Mode.DRILL, Mode.PLANNED])
async def test_every_role_and_control_action_is_allowed_or_denied_and_audited(worker, mode):
    approvers = [r for r in ROLES if allowed([r], Action.APPROVE, mode)]
    plan = gated_plan(f"matrix-{mode.value}", {"approvals": len(approvers)})
    handle = await start_run(worker.client, worker.task_queue, plan, mode=mode, initiator=INITIATOR)
    await wait_until(handle, lambda s: s.pending_gate() is not None)
    people = {role: user(role) for role in ROLES}

    # Roles that may not approve go first: the last allowed approval opens the gate.
    for role in sorted(ROLES, key=lambda r: r in approvers):
        who = control(people[role], roles=(role,), reason="matrix")
        for action, update in ((Action.PAUSE_RESUME, "pause"), (Action.APPROVE, "approve")):
            answer = await send(handle, update, who)
            assert answer.accepted is allowed([role], action, mode), (role, update, answer.message)
            if update == "pause" and answer.accepted:
                assert (await send(handle, "resume", who)).accepted
        if not allowed([role], Action.CANCEL, mode):
            assert not (await send(handle, "cancel", who)).accepted

    state = await wait_until(handle, lambda s: s.status.finished, timeout=30)
    assert state.status is RunStatus.COMPLETED  # every allowed approver approved: N of M reached
    gate = state.gates[0]
    assert sorted(a.actor for a in gate.approvals) == sorted(people[r] for r in approvers)
    trail = await audit_of(handle)
    for role in ROLES:
        for action, update in ((Action.PAUSE_RESUME, "pause"), (Action.APPROVE, "approve"), (Action.CANCEL,
                                                                                                "cancel")):
            entries = [e for e in trail if e.actor == people[role] and e.action == update]
            if allowed([role], action, mode):
                assert update == "cancel" or [e.accepted for e in entries] == [True], (role, update)
            else:
                assert [e.accepted for e in entries] == [False], (role, update, entries)
                assert entries[0].roles == [role] and "may not" in entries[0].reason
    assert state.denied_attempts == sum(1 for e in trail if not e.accepted)


@pytest.mark.parametrize("mode", [Mode.DRILL, Mode.PLANNED])
async def test_cancel_by_each_allowed_role_works(worker, mode):
    handles = {}
    for role in [r for r in ROLES if allowed([r], Action.CANCEL, mode)]:
        handles[role] = await start_run(worker.client, worker.task_queue, gated_plan(f"cancel-{role}"), mode=mode,
                                        initiator=INITIATOR)
    for role, handle in handles.items():
        await wait_until(handle, lambda s: s.pending_gate() is not None)
        assert (await send(handle, "cancel", control(user(role), roles=(role,), reason="stop"))).accepted
    for role, handle in handles.items():
        assert (await result_of(handle)).status is RunStatus.CANCELLED, role


async def test_four_eyes_no_double_approval_and_role_restricted_gates(worker):
    plan = gated_plan("four-eyes", {"approvals": 2, "roles": ["recovery-manager"]})
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED, initiator=INITIATOR,
                             roles=("recovery-manager",))
    await wait_until(handle, lambda s: s.pending_gate() is not None)
    own = await send(handle, "approve", control(INITIATOR, roles=("recovery-manager",)))
    assert not own.accepted and "four-eyes" in own.message
    admin = await send(handle, "approve", control("root@example.com", roles=("admin",)))
    assert not admin.accepted and "counts only approvals of recovery-manager" in admin.message
    first = await send(handle, "approve", control("rm1@example.com", roles=("recovery-manager",)))
    assert first.accepted and "1 of 2" in first.message
    again = await send(handle, "approve", control("rm1@example.com", roles=("recovery-manager",)))
    assert not again.accepted and "already approved" in again.message
    state = await status_of(handle)
    assert state.status is RunStatus.AWAITING_APPROVAL
    lines: list[str] = []
    ProgressPrinter(echo=lines.append).update(state)
    assert "  ⏸ waiting for approval at ACTIVATE/gated from recovery-manager (1 of 2 approvals: rm1@example.com)" \
        in lines
    assert (await send(handle, "approve", control("rm2@example.com", roles=("recovery-manager",)))).accepted
    assert (await result_of(handle)).status is RunStatus.COMPLETED
    denied = [(e.actor, e.reason.split(":")[0]) for e in await audit_of(handle) if not e.accepted]
    assert [actor for actor, _ in denied] == [INITIATOR, "root@example.com", "rm1@example.com"]


@pytest.mark.parametrize("case", ["expired", "forged", "wrong issuer", "wrong audience", "missing"])
async def test_bad_tokens_are_denied_and_recorded(worker, case):
    handle = await start_run(worker.client, worker.task_queue, gated_plan(f"tokens-{case.replace(' ', '-')}"),
                             initiator=INITIATOR)
    await wait_until(handle, lambda s: s.pending_gate() is not None)
    idp = session_idp()
    token = {
        "expired": lambda: idp.token("eve@example.com", ["admin"], ttl_seconds=60, now=0),
        "forged": lambda: _forged("eve@example.com"),
        "wrong issuer": lambda: idp.token("eve@example.com", ["admin"], issuer="https://evil.example.com"),
        "wrong audience": lambda: idp.token("eve@example.com", ["admin"], audience="another-service"),
        "missing": lambda: "",
    }[case]()
    answer = await send(handle, "approve", control("eve@example.com", token=token))
    assert not answer.accepted and answer.message.startswith("denied")
    [entry] = [e for e in await audit_of(handle) if not e.accepted]
    assert entry.actor == "eve@example.com" and not entry.verified and entry.action == "approve"
    assert (await status_of(handle)).status is RunStatus.AWAITING_APPROVAL
    await send(handle, "reject", control("owner@example.com", reason="done"))
    assert (await result_of(handle)).status is RunStatus.REJECTED


async def test_a_start_with_a_forged_token_runs_nothing(worker):
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("w", 1)]}]}, name="forged-start")
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED, token=_forged(INITIATOR))
    result = await result_of(handle)
    assert result.status is RunStatus.REJECTED and "signature" in result.message


async def test_audit_needs_view_audit(worker):
    handle = await start_run(worker.client, worker.task_queue, gated_plan("audit-access"), initiator=INITIATOR)
    await wait_until(handle, lambda s: s.pending_gate() is not None)
    with pytest.raises(Exception, match="may not view the audit trail"):
        await handle.query("audit", token_for("op@example.com", ["operator"]))
    assert (await status_of(handle)).audit == []  # the status query leaves the trail out
    await send(handle, "reject", control("owner@example.com", reason="done"))


def _forged(subject: str) -> str:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    idp = session_idp()
    claims = {"iss": idp.issuer, "aud": idp.audience, "sub": subject, "roles": ["admin"], "exp": 4_000_000_000}
    return jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": idp.key_id})


def test_the_readme_shows_the_grants_as_they_are():
    from pathlib import Path

    from workflows.rbac import permission_table

    readme = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
    assert "\n".join(permission_table()) in readme, "README's roles table differs from workflows/rbac.py GRANTS"


async def test_a_planned_failover_switches_to_ungraceful_for_what_starts_next(worker):
    from tests.test_hooks import lambda_function

    function = lambda_function()
    probe = {"action": "hook.lambda", "parameters": {"functionName": function, "payload": {"check": "${dr.mode}"}}}
    plan = make_plan({"ACTIVATE": [
        {"name": "first", "resources": [{"name": "before", **probe}]},
        {"name": "second", "approvalRequired": True, "resources": [{"name": "after", **probe}]},
    ]}, name="switch-ungraceful")
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED, initiator=INITIATOR)
    await wait_until(handle, lambda s: s.pending_gate() is not None, timeout=30)
    denied = await send(handle, "switch_ungraceful", control("op@example.com", roles=("operator",), reason="x"))
    assert not denied.accepted and "may not switch-ungraceful" in denied.message
    switched = await send(handle, "switch_ungraceful", control("rm@example.com", roles=("recovery-manager",),
                                                               reason="primary region stopped answering"))
    assert switched.accepted
    assert (await handle.describe()).typed_search_attributes.get(DR_MODE) == "disaster"
    await send(handle, "approve", control("rm@example.com", roles=("recovery-manager",)))
    assert (await result_of(handle)).status is RunStatus.COMPLETED
    state = await status_of(handle)
    seen = {r.name: r.outputs["payload"]["checked"] for p in state.phases for x in p.layers for r in x.resources}
    assert seen == {"before": "planned", "after": "disaster"} and state.mode is Mode.DISASTER
    assert state.switched_to_ungraceful_at is not None
    trail = [(e.action, e.accepted) for e in await audit_of(handle) if e.action == "switch-ungraceful"]
    assert trail == [("switch-ungraceful", False), ("switch-ungraceful", True)]


async def test_skipping_steps_that_have_not_started(worker):
    plan = make_plan({"ACTIVATE": [
        {"name": "gated", "approvalRequired": True, "resources": [wait_resource("a", 1), wait_resource("b", 1)]},
        {"name": "later", "resources": [wait_resource("c", 1)]},
    ]}, name="skip-steps")
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED, initiator=INITIATOR)
    await wait_until(handle, lambda s: s.pending_gate() is not None)
    denied = await send(handle, "skip", control("op@example.com", roles=("operator",), step="ACTIVATE/gated/b"))
    assert not denied.accepted and "may not skip-step" in denied.message
    manager = control("rm@example.com", roles=("recovery-manager",), reason="b is decommissioned")
    assert (await send(handle, "skip", manager.model_copy(update={"step": "ACTIVATE/gated/b"}))).accepted
    assert (await send(handle, "skip", manager.model_copy(update={"step": "ACTIVATE/later"}))).accepted
    from temporalio.client import WorkflowUpdateFailedError

    with pytest.raises(WorkflowUpdateFailedError):  # not a step of this run
        await send(handle, "skip", manager.model_copy(update={"step": "ACTIVATE/nope"}))
    await send(handle, "approve", control("rm@example.com", roles=("recovery-manager",)))
    assert (await result_of(handle)).status is RunStatus.COMPLETED
    state = await status_of(handle)
    activate = next(p for p in state.phases if p.phase.value == "ACTIVATE")
    gated, later = activate.layers
    assert [(r.name, r.status.value, r.skipped_by) for r in gated.resources] == [
        ("a", "SUCCEEDED", None), ("b", "SKIPPED", "rm@example.com")]
    assert gated.resources[1].message == "skipped by rm@example.com: b is decommissioned"
    assert gated.status.value == "SUCCEEDED" and later.status.value == "SKIPPED" and later.skipped_by
    assert later.resources[0].started_at is None and activate.status.value == "SUCCEEDED"
    skips = [(e.actor, e.accepted) for e in await audit_of(handle) if e.action == "skip"]
    assert skips == [("op@example.com", False), ("rm@example.com", True), ("rm@example.com", True)]
