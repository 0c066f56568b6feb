"""Who may send which message to a run: token verification, role permissions, four-eyes and N-of-M approvals,
and the audit trail that records every decision and every denied attempt.

Tokens are bound to their use (BOUND_APPROVALS_PATCH): a token carrying the trust file's run claim is worth nothing
on any other run; an approve/reject names the run it decides (and may name the plan hash its sender reviewed); a
token (its `jti`) makes at most one decision per run. Only hashes are kept: of the token, of its jti, of the plan.

A plain object DrLifecycleWorkflow owns, over the run's state; it is given the clock and the logger, so its decisions
can be tested without a server. Denials are decided by the update *handler* (which records them, then fails the
update with PermissionDenied), not by a validator: a validator's rejection leaves nothing in history, and the audit
trail must keep denied attempts durably. A signal goes through the same checks; it has no answer, so its denial is
only recorded (and shown as the status's `last_denial`).
"""

from __future__ import annotations

import logging
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.ports import Clock

with workflow.unsafe.imports_passed_through():
    from contracts.identity import IdentityError, Principal, binding_problem, token_hash, verify_token
    from contracts.lifecycle import Approval, AuditEntry, ControlRequest, Gate, LifecycleState
    from plans.model import Mode
    from workflows.rbac import Action, allowed, roles_allowed, scope_of

MAX_DENIED_ENTRIES = 200  # denied attempts beyond this are counted, not listed: a caller cannot grow history unbounded
# Runs recorded before tokens were bound to their use replay without these checks, and without the plan's hash in
# their audit trail, approvals and notifications. Decided by the run's first check (its start), so a run keeps one
# behaviour from start to end.
BOUND_APPROVALS_PATCH = "bound-approvals"


class Governance:
    def __init__(self, state: LifecycleState, mode: Mode, now: Clock,
                 logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self._state = state
        self._mode = mode  # the mode the run started in: a switch to ungraceful does not change who may do what
        self._now = now
        self._logger = logger
        self.last_denial = ""  # the reason of the denial just recorded, for the handler's answer
        self.bound = False  # BOUND_APPROVALS_PATCH: set by `authorize`, the only caller in a workflow context

    async def authorize(self, request: ControlRequest, action: Action, what: str) -> Principal | None:
        """`check`, once the run has its trust configuration (a message may come before the activity that loads
        it has answered)."""
        await workflow.wait_condition(lambda: self._state.trust is not None or self._state.status.finished)
        self.bound = workflow.patched(BOUND_APPROVALS_PATCH)
        return self.check(request, action, what)

    def check(self, request: ControlRequest, action: Action, what: str) -> Principal | None:
        """The verified caller if allowed to do `action` on this run; else None, with the denial on record."""
        if self._state.trust is None:
            self.deny(what, request, "the run ended before its identity configuration was loaded")
            return None
        try:
            principal = verify_token(request.token, self._state.trust, self._now())
        except IdentityError as denial:
            self.deny(what, request, str(denial))
            return None
        problem = binding_problem(principal, self._state.workflow_id) or self._other_run(request)
        if self.bound and problem:
            self.deny(what, request, problem, principal)
            return None
        if not allowed(principal.roles, action, self._mode):
            scope = scope_of(self._mode)
            self.deny(what, request, f"roles {principal.roles or ['(none)']} may not {action.value} on a {scope} "
                                     f"run (allowed: {', '.join(roles_allowed(action, self._mode))})", principal)
            return None
        return principal

    def audit_trail(self, token: str) -> list[AuditEntry]:
        """The audit trail, for a token that carries view-audit. Raises otherwise: a query leaves no history, so
        there is nothing to record."""
        if self._state.trust is None:
            raise ApplicationError("the run has not loaded its identity configuration yet")
        principal = verify_token(token, self._state.trust, self._now())
        if problem := binding_problem(principal, self._state.workflow_id):  # a query leaves no history: no patch
            raise ApplicationError(problem)
        if not allowed(principal.roles, Action.VIEW_AUDIT, self._mode):
            raise ApplicationError(f"roles {principal.roles} may not view the audit trail "
                                   f"(allowed: {', '.join(roles_allowed(Action.VIEW_AUDIT, self._mode))})")
        return self._state.audit

    def decision_problem(self, request: ControlRequest, principal: Principal) -> str | None:
        """Why an approve/reject may not count on this run whatever its gate: another run named (or none), an
        unbound token where the trust file requires bound ones, another plan reviewed, a token that decided already."""
        if not self.bound:
            return None
        run, trust = self._state.workflow_id, self._state.trust
        if not request.run:
            return f"the request names no run: an approval or rejection must name the run it decides (run: {run})"
        if trust is not None and trust.approvals_require_bound_token and principal.runs is None:
            return (f"approvals need a token bound to this run (claim {trust.run_claim!r}): "
                    f"this worker's trust configuration requires one")
        if request.plan_hash is not None and request.plan_hash != self._state.plan_hash:
            return f"the approver reviewed plan {request.plan_hash}, but this run runs plan {self._state.plan_hash}"
        if principal.use_sha256 in self._state.decision_tokens:
            return "token already used for a decision in this run"
        return None

    def decided(self, principal: Principal) -> None:
        """The token made its decision in this run: its next one is denied. Only the hash of its jti is kept."""
        if self.bound:
            self._state.decision_tokens.append(principal.use_sha256)

    def approval_problem(self, gate: Gate, principal: Principal, approving: bool) -> str | None:
        if gate.roles and not set(principal.roles) & set(gate.roles):
            return f"gate {gate.id} counts only approvals of {', '.join(gate.roles)}"
        if approving and principal.subject == self._state.initiator:
            return f"four-eyes: {principal.subject} started this run and cannot approve it"
        if approving and any(a.actor == principal.subject for a in gate.approvals):
            return f"{principal.subject} already approved gate {gate.id}"
        return None

    def count_approval(self, gate: Gate, principal: Principal, request: ControlRequest) -> bool:
        """Record one approval; whether the gate now has all it needs."""
        gate.approvals.append(Approval(actor=principal.subject, roles=principal.roles, at=self._now(),
                                       reason=request.reason, plan_hash=self._plan_hash()))
        return len(gate.approvals) >= gate.required

    def deny(self, what: str, request: ControlRequest, reason: str, principal: Principal | None = None) -> None:
        self.last_denial = reason
        self._state.denied_attempts += 1
        entry = AuditEntry(
            at=self._now(), actor=principal.subject if principal else (request.actor or "(unknown)"),
            action=what, accepted=False, reason=reason, roles=principal.roles if principal else [],
            verified=principal is not None, token_sha256=token_hash(request.token) if request.token else None,
            detail=f"request reason: {request.reason}" if request.reason else "", via=self._via(request, what),
            plan_hash=self._plan_hash())
        self._state.last_denial = f"{entry.at.isoformat()} {what} by {entry.actor} ({entry.via or 'start'}): {reason}"
        denied = sum(1 for e in self._state.audit if not e.accepted)
        if denied < MAX_DENIED_ENTRIES:
            self._state.audit.append(entry)
        self._log(entry)

    def allow(self, what: str, principal: Principal, request: ControlRequest, detail: str = "") -> None:
        entry = AuditEntry(at=self._now(), actor=principal.subject, action=what, accepted=True,
                           reason=request.reason, detail=detail, roles=principal.roles,
                           token_sha256=token_hash(request.token or ""), via=self._via(request, what),
                           plan_hash=self._plan_hash())
        self._state.audit.append(entry)
        self._log(entry)

    def _other_run(self, request: ControlRequest) -> str | None:
        """Any message may name its run (approve/reject must): one naming another run is denied."""
        if not request.run or request.run == self._state.workflow_id:
            return None
        return f"the request is for run {request.run}, not for this run ({self._state.workflow_id})"

    def _plan_hash(self) -> str | None:
        return self._state.plan_hash if self.bound else None

    @staticmethod
    def _via(request: ControlRequest, what: str) -> str:
        # The start's request is made by the run itself from its input: it came by neither message.
        return "" if what.startswith("start-") else request._via

    def _log(self, entry: AuditEntry) -> None:
        # The worker's log handler turns `extra` into fields: one structured event per decision.
        self._logger.info("audit %s %s by %s: %s", entry.action, "allowed" if entry.accepted else "DENIED",
                          entry.actor, entry.reason or entry.detail, extra={"audit": entry.model_dump(mode="json")})
