"""The Governance object on its own, without a Temporal server: who may do what on a run, four-eyes, N-of-M
approvals, gate roles and the audit trail, decided on a state model and a token as the workflow's would be."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from temporalio.exceptions import ApplicationError

from activities.identity import read_trust
from contracts.lifecycle import ControlRequest, Gate, LifecycleInput, LifecycleState
from plans.model import Mode
from tests.identity_helpers import session_idp, token_for
from tests.lifecycle_helpers import make_plan, wait_resource
from workflows.governance import MAX_DENIED_ENTRIES, Governance
from workflows.rbac import Action
from workflows.state import new_state

INITIATOR = "initiator@example.com"
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)  # the run's clock, and when every token here is issued


def run_state(mode: Mode, trusted: bool = True) -> LifecycleState:
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("w")]}]}, name="gov-unit")
    state = new_state(LifecycleInput(plan=plan, mode=mode, initiator=INITIATOR), "dr-gov-unit", NOW)
    if trusted:
        state.trust = read_trust(str(session_idp().trust_file))  # what the worker's activity would load
    return state


def governance(state: LifecycleState, mode: Mode = Mode.DRILL) -> Governance:
    return Governance(state, mode, lambda: NOW, logging.getLogger("test.governance"))


def token(subject: str, *roles: str, **claims: object) -> str:
    return token_for(subject, roles, now=NOW.timestamp(), **claims)


def request(subject: str, *roles: str, reason: str = "") -> ControlRequest:
    return ControlRequest(actor=subject, token=token(subject, *roles), reason=reason)


def test_a_role_allowed_the_action_gets_its_verified_principal():
    state = run_state(Mode.DRILL)
    principal = governance(state).check(request("pm@example.com", "plan-manager"), Action.APPROVE, "approve")
    assert principal is not None and principal.subject == "pm@example.com" and principal.roles == ["plan-manager"]
    assert state.audit == [] and state.denied_attempts == 0  # checking records nothing; `allow` does


def test_a_role_without_the_action_is_denied_and_the_denial_is_on_record():
    state = run_state(Mode.DRILL)
    gov = governance(state)
    assert gov.check(request("op@example.com", "operator", reason="looks fine"), Action.APPROVE, "approve") is None
    assert gov.last_denial == ("roles ['operator'] may not approve on a drill run "
                               "(allowed: admin, recovery-manager, plan-manager)")
    [entry] = state.audit
    assert (entry.actor, entry.action, entry.accepted, entry.verified, entry.roles) == \
        ("op@example.com", "approve", False, True, ["operator"])
    assert entry.reason == gov.last_denial and entry.detail == "request reason: looks fine" and entry.at == NOW
    assert state.denied_attempts == 1


def test_a_real_run_needs_more_than_a_drill():
    pm = request("pm@example.com", "plan-manager")
    assert governance(run_state(Mode.DRILL), Mode.DRILL).check(pm, Action.APPROVE, "approve") is not None
    real = run_state(Mode.PLANNED)
    gov = governance(real, Mode.PLANNED)
    assert gov.check(pm, Action.APPROVE, "approve") is None
    assert "on a real run (allowed: admin, recovery-manager)" in gov.last_denial
    assert gov.check(request("rm@example.com", "recovery-manager"), Action.APPROVE, "approve") is not None


def test_a_message_without_a_valid_token_is_denied_under_the_claimed_name():
    state = run_state(Mode.DRILL)
    gov = governance(state)
    assert gov.check(ControlRequest(actor="mallory"), Action.PAUSE_RESUME, "pause") is None
    assert gov.last_denial.startswith("no token")
    forged = ControlRequest(actor="mallory", token=token("mallory", "admin", aud="someone-else"))
    assert gov.check(forged, Action.PAUSE_RESUME, "pause") is None
    assert [(e.actor, e.verified, e.token_sha256 is None) for e in state.audit] == \
        [("mallory", False, True), ("mallory", False, False)]
    assert state.denied_attempts == 2


def test_before_the_trust_configuration_is_loaded_nobody_is_allowed():
    state = run_state(Mode.DRILL, trusted=False)
    gov = governance(state)
    assert gov.check(request("admin@example.com", "admin"), Action.CANCEL, "cancel") is None
    assert gov.last_denial == "the run ended before its identity configuration was loaded"


def test_four_eyes_the_initiator_may_reject_but_never_approve_their_own_run():
    state = run_state(Mode.DRILL)
    gov = governance(state)
    gate = Gate(id="ACTIVATE", requested_at=NOW)
    initiator = gov.check(request(INITIATOR, "admin"), Action.APPROVE, "approve")
    assert initiator is not None
    assert gov.approval_problem(gate, initiator, approving=True) == \
        f"four-eyes: {INITIATOR} started this run and cannot approve it"
    assert gov.approval_problem(gate, initiator, approving=False) is None


def test_n_of_m_approvals_count_distinct_approvers_only():
    state = run_state(Mode.DRILL)
    gov = governance(state)
    gate = Gate(id="ACTIVATE/l", requested_at=NOW, required=2)
    first_request = request("a@example.com", "admin", reason="checked")
    first = gov.check(first_request, Action.APPROVE, "approve")
    second = gov.check(request("b@example.com", "recovery-manager"), Action.APPROVE, "approve")
    assert first is not None and second is not None
    assert gov.approval_problem(gate, first, approving=True) is None
    assert gov.count_approval(gate, first, first_request) is False  # 1 of 2
    assert gov.approval_problem(gate, first, approving=True) == "a@example.com already approved gate ACTIVATE/l"
    assert gov.count_approval(gate, second, ControlRequest()) is True  # 2 of 2: the gate may open
    assert [(a.actor, a.roles, a.reason, a.at) for a in gate.approvals] == \
        [("a@example.com", ["admin"], "checked", NOW), ("b@example.com", ["recovery-manager"], "", NOW)]


def test_a_gate_with_roles_counts_only_their_approvals_and_rejections():
    gov = governance(run_state(Mode.DRILL))
    gate = Gate(id="ACTIVATE/db", requested_at=NOW, roles=["recovery-manager"])
    admin = gov.check(request("admin@example.com", "admin"), Action.APPROVE, "approve")
    manager = gov.check(request("rm@example.com", "recovery-manager"), Action.APPROVE, "approve")
    assert admin is not None and manager is not None
    for approving in (True, False):
        assert gov.approval_problem(gate, admin, approving) == "gate ACTIVATE/db counts only approvals of " \
                                                              "recovery-manager"
        assert gov.approval_problem(gate, manager, approving) is None


def test_denied_attempts_beyond_the_cap_are_counted_not_listed():
    state = run_state(Mode.DRILL)
    gov = governance(state)
    anonymous = ControlRequest(actor="flood")
    for _ in range(MAX_DENIED_ENTRIES + 5):
        gov.check(anonymous, Action.PAUSE_RESUME, "pause")
    allowed = request("op@example.com", "operator")
    principal = gov.check(allowed, Action.PAUSE_RESUME, "pause")
    assert principal is not None
    gov.allow("pause", principal, allowed, detail="paused")
    assert state.denied_attempts == MAX_DENIED_ENTRIES + 5
    assert sum(not e.accepted for e in state.audit) == MAX_DENIED_ENTRIES
    assert (state.audit[-1].accepted, state.audit[-1].actor, state.audit[-1].detail) == (True, "op@example.com",
                                                                                          "paused")


def test_only_view_audit_reads_the_audit_trail():
    state = run_state(Mode.PLANNED)
    gov = governance(state, Mode.PLANNED)
    gov.check(ControlRequest(actor="x"), Action.CANCEL, "cancel")
    assert gov.audit_trail(token("aud@example.com", "auditor")) == state.audit
    with pytest.raises(ApplicationError, match="may not view the audit trail"):
        gov.audit_trail(token("op@example.com", "operator"))
