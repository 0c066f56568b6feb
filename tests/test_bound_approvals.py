"""Tokens worth less if seen, and what was approved is what runs (issue 14): an approval names its run and may name
the plan hash its approver reviewed; a token bound to runs (its `dr_run` claim) is denied on any other; a token's jti
decides at most once per run; the plan's hash is in the memo, the audit trail and every approval. Each denial is
recorded as one: in the audit trail, `denied_attempts` and `last_denial`. Only hashes of tokens and jtis are kept."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jwt
import pytest

from activities.identity import TRUST_FILE_ENV, read_trust
from contracts.lifecycle import AuditEntry, RunStatus
from tests.cli_helpers import cli_env, drctl
from tests.identity_helpers import session_idp, token_for
from tests.lifecycle_helpers import audit_of, control, finish, make_plan, send, start_run, status_of, wait_resource, \
    wait_until
from tests.test_replay_histories import replayer
from workflows.governance import BOUND_APPROVALS_PATCH

INITIATOR = "initiator@example.com"
MANAGER = ("manager@example.com", ("plan-manager",))
OTHER_RUN = "dr-someone-elses-run-drill-20261206T000000-abcdef"


def gated_plan(name: str, approvals: int = 1, layers: int = 1) -> Any:
    return make_plan({"ACTIVATE": [{"name": f"gated{i}", "approval": {"approvals": approvals},
                                    "resources": [wait_resource(f"work{i}", 1)]} for i in range(layers)]}, name=name)


async def gated_run(worker: Any, name: str, **plan: Any) -> tuple[Any, Any]:
    handle = await start_run(worker.client, worker.task_queue, the_plan := gated_plan(name, **plan),
                             initiator=INITIATOR)
    await wait_until(handle, lambda s: s.pending_gate() is not None)
    return handle, the_plan


def denials(trail: list[AuditEntry]) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.reason) for e in trail if not e.accepted]


async def replays(handle: Any) -> None:
    """The run's history, with its patch marker, replays on this code: the checks are deterministic."""
    history = await handle.fetch_history()
    markers = [json.loads(p.data) for e in history.events if e.HasField("marker_recorded_event_attributes")
               for p in e.marker_recorded_event_attributes.details["patch-data"].payloads]
    assert BOUND_APPROVALS_PATCH in [m["id"] for m in markers]  # the checks ran under their patch
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def test_an_approval_names_its_run_and_its_plan_and_both_are_on_record(worker):
    handle, plan = await gated_run(worker, "bound-run")
    digest = plan.digest()
    assert await (await handle.describe()).memo_value("planHash") == digest  # the starter's, upserted by the run

    nameless = await send(handle, "approve", control(*MANAGER, run=""))
    assert not nameless.accepted and "names no run" in nameless.message and handle.id in nameless.message
    elsewhere = await send(handle, "approve", control(*MANAGER, run=OTHER_RUN))
    assert not elsewhere.accepted and f"the request is for run {OTHER_RUN}, not for this run" in elsewhere.message
    reviewed = "sha256:" + "0123456789abcdef" * 4
    stale = await send(handle, "approve", control(*MANAGER, plan_hash=reviewed))
    assert not stale.accepted and reviewed in stale.message and digest in stale.message
    state = await status_of(handle)
    assert state.status is RunStatus.AWAITING_APPROVAL and state.denied_attempts == 3
    assert state.last_denial and "plan" in state.last_denial and reviewed in state.last_denial

    approved = await send(handle, "approve", control(*MANAGER, reason="change 4711", plan_hash=digest))
    assert approved.accepted, approved.message
    assert (await finish(handle)).status is RunStatus.COMPLETED
    state = await status_of(handle)
    assert state.plan_hash == digest
    [approval] = state.gates[0].approvals
    assert (approval.actor, approval.plan_hash) == ("manager@example.com", digest)
    trail = await audit_of(handle)
    assert [(e.action, e.accepted, e.plan_hash) for e in trail] == [
        ("start-drill", True, digest), ("approve", False, digest), ("approve", False, digest),
        ("approve", False, digest), ("approve", True, digest)]
    reasons = [reason for _, _, reason in denials(trail)]
    assert reasons[0].startswith("the request names no run: an approval or rejection must name the run")
    assert reasons[1:] == [f"the request is for run {OTHER_RUN}, not for this run ({handle.id})",
                           f"the approver reviewed plan {reviewed}, but this run runs plan {digest}"]
    await replays(handle)


async def test_a_token_bound_to_other_runs_is_denied_for_every_message(worker):
    handle, _ = await gated_run(worker, "bound-token")
    elsewhere = token_for("boss@example.com", ("admin",), dr_run=OTHER_RUN)
    for update in ("pause", "approve"):
        answer = await send(handle, update, control("boss@example.com", token=elsewhere, reason="x"))
        assert not answer.accepted and f"token is bound to run(s) {OTHER_RUN}, not to {handle.id}" in answer.message
    # A signal has no answer: its denial shows in the status.
    await handle.signal("cancel", control("boss@example.com", token=elsewhere, run=handle.id))
    state = await wait_until(handle, lambda s: s.denied_attempts == 3)
    assert "cancel by boss@example.com (signal): token is bound to run(s)" in (state.last_denial or "")
    assert not state.cancel_requested and state.status is RunStatus.AWAITING_APPROVAL
    with pytest.raises(Exception, match="token is bound to run"):  # nor may it read this run's audit trail
        await handle.query("audit", token_for("auditor@example.com", ("auditor",), dr_run=OTHER_RUN))

    here = token_for(MANAGER[0], MANAGER[1], dr_run=[OTHER_RUN, handle.id])  # bound to several runs, this one too
    assert (await send(handle, "approve", control(MANAGER[0], token=here))).accepted
    assert (await finish(handle)).status is RunStatus.COMPLETED
    assert [e.action for e in await audit_of(handle) if not e.accepted] == ["pause", "approve", "cancel"]


async def test_a_token_decides_once_per_run_and_steers_as_often_as_needed(worker, caplog):
    caplog.set_level(logging.INFO)
    handle, _ = await gated_run(worker, "token-once", approvals=2, layers=2)
    token = token_for(*MANAGER)
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    manager = control(MANAGER[0], token=token, reason="looks right")
    assert (await send(handle, "approve", manager)).accepted  # 1 of 2
    # The same token pauses and resumes (an operator runs several commands with one DRCTL_TOKEN)...
    assert (await send(handle, "pause", manager)).accepted and (await send(handle, "resume", manager)).accepted
    # ... but makes no second decision in this run: not a rejection, not by signal, not at another gate.
    again = await send(handle, "reject", manager.model_copy(update={"reason": "changed my mind"}))
    assert not again.accepted and again.message == "denied: token already used for a decision in this run"
    await handle.signal("reject", manager.model_copy(update={"run": handle.id, "reason": "by signal"}))
    state = await wait_until(handle, lambda s: s.denied_attempts == 2)
    assert "reject by manager@example.com (signal): token already used" in (state.last_denial or "")
    # Another approver's token decides: the gate's second approval opens it.
    second = await send(handle, "approve", control("rm@example.com", roles=("recovery-manager",)))
    assert second.accepted and "approved" in second.message
    await wait_until(handle, lambda s: s.pending_gate() is not None and s.pending_gate().id == "ACTIVATE/gated1")
    at_next_gate = await send(handle, "approve", manager)
    assert not at_next_gate.accepted and "token already used" in at_next_gate.message
    for who in ("a@example.com", "b@example.com"):
        assert (await send(handle, "approve", control(who, roles=("plan-manager",)))).accepted
    assert (await finish(handle)).status is RunStatus.COMPLETED

    trail = await audit_of(handle)
    assert [(a, act) for a, act, _ in denials(trail)] == [("manager@example.com", "reject")] * 2 + [
        ("manager@example.com", "approve")]
    assert all(r == "token already used for a decision in this run" for _, _, r in denials(trail))
    # Only hashes: neither the token nor its jti is in the state, the audit trail or the worker's log.
    state = await status_of(handle)
    assert len(state.decision_tokens) == 4 and len(set(state.decision_tokens)) == 4  # manager, rm, a, b
    logged = caplog.text + json.dumps([vars(r) for r in caplog.records], default=str)  # messages and their extra
    kept = state.model_dump_json() + json.dumps([e.model_dump(mode="json") for e in trail]) + logged
    assert "audit approve allowed by manager@example.com" in caplog.text  # the log was captured
    assert token not in kept and jti not in kept and token.split(".")[1] not in kept
    await replays(handle)


async def test_approvals_may_require_a_token_bound_to_the_run(worker, monkeypatch, tmp_path):
    trust = json.loads(session_idp().trust_file.read_text())
    strict = tmp_path / "trust.json"
    strict.write_text(json.dumps({**trust, "approvalsRequireRunBoundToken": True, "runClaim": "x_dr_run"}))
    config = read_trust(str(strict))
    assert (config.approvals_require_bound_token, config.run_claim) == (True, "x_dr_run")
    monkeypatch.setenv(TRUST_FILE_ENV, str(strict))  # read by the run's start (the worker's trust activity)
    handle, _ = await gated_run(worker, "bound-required")
    monkeypatch.undo()
    assert (await status_of(handle)).trust.approvals_require_bound_token

    unbound = await send(handle, "approve", control(*MANAGER))
    assert not unbound.accepted and "approvals need a token bound to this run (claim 'x_dr_run')" in unbound.message
    # Pausing needs no bound token: only decisions do.
    assert (await send(handle, "pause", control(*MANAGER))).accepted
    assert (await send(handle, "resume", control(*MANAGER))).accepted
    bound = token_for(*MANAGER, x_dr_run=handle.id)
    assert (await send(handle, "approve", control(MANAGER[0], token=bound))).accepted
    assert (await finish(handle)).status is RunStatus.COMPLETED
    assert [e.reason.split(" (")[0] for e in await audit_of(handle) if not e.accepted] == [
        "approvals need a token bound to this run"]


async def test_drctl_names_the_run_checks_the_plan_hash_and_mints_bound_tokens(worker, temporal_env, tmp_path):
    handle, plan = await gated_run(worker, "drctl-bound")
    digest = plan.digest()
    env = cli_env(temporal_env)
    code, out, err = await drctl("drill", "status", handle.id, env=env)
    assert code == 0 and digest in out, err

    auth = tmp_path / "auth"
    code, out, err = await drctl("auth", "init", "--dir", str(auth), env=env)
    assert code == 0, err
    code, out, err = await drctl("auth", "token", MANAGER[0], "--role", "plan-manager", "--run", handle.id,
                                 "--dir", str(auth), env=env)
    assert code == 0, err
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert claims["dr_run"] == handle.id and claims["jti"] and json.loads((auth / "trust.json").read_text())[
        "runClaim"] == "dr_run"

    env["DRCTL_TOKEN"] = token_for(*MANAGER, dr_run=handle.id)
    code, out, err = await drctl("drill", "approve", handle.id, "--plan-hash", "sha256:" + "f" * 64, env=env)
    assert code == 1 and f"but this run runs plan {digest}" in err and "Traceback" not in err, err
    code, out, err = await drctl("drill", "approve", handle.id, "--plan-hash", "not-a-hash", env=env)
    assert code == 2 and "is not a plan hash" in err and "Traceback" not in err, err
    code, out, err = await drctl("drill", "approve", handle.id, "--plan-hash", digest, "--reason", "ok", env=env)
    assert code == 0 and "approved" in out, err
    assert (await finish(handle)).status is RunStatus.COMPLETED
    env["DRCTL_TOKEN"] = token_for("auditor@example.com", ("auditor",))
    code, out, err = await drctl("audit", handle.id, env=env)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and all(line.endswith(f"[plan {digest}]") for line in lines), out


def test_plan_validate_prints_the_hash_the_run_will_carry(tmp_path):
    from click.testing import CliRunner

    from drctl.plan_cmd import plan as plan_cli

    plan = gated_plan("validate-hash")
    file = Path(tmp_path / "plan.yaml")
    file.write_text(plan.model_dump_json(by_alias=True, exclude_defaults=True))
    out = CliRunner().invoke(plan_cli, ["validate", str(file)])
    assert out.exit_code == 0 and out.output.rstrip().endswith(plan.digest()), out.output
