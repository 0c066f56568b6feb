"""Who may send which message to a run: token verification, role permissions, four-eyes and N-of-M approvals,
and the audit trail that records every decision and every denied attempt.

A mixin of DrLifecycleWorkflow. Denials are answered by the update *handler* (accepted=False), not by a validator:
a validator's rejection leaves nothing in history, and the audit trail must keep denied attempts durably.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.identity import IdentityError, Principal, token_hash, verify_token
    from contracts.lifecycle import Approval, AuditEntry, ControlRequest, ControlResult, Gate
    from workflows.rbac import Action, allowed, roles_allowed, scope_of

if TYPE_CHECKING:
    from workflows.lifecycle import DrLifecycleWorkflow as _Base
else:
    _Base = object

MAX_DENIED_ENTRIES = 200  # denied attempts beyond this are counted, not listed: a caller cannot grow history unbounded


class GovernanceMixin(_Base):
    _last_denial: str = ""  # the reason of the denial just recorded, for the handler's answer

    async def _authorize(self, request: ControlRequest, action: Action, what: str) -> Principal | None:
        """The verified caller if allowed to do `action` on this run; else None, with the denial on record."""
        await workflow.wait_condition(lambda: self._state.trust is not None or self._state.status.finished)
        if self._state.trust is None:
            self._deny(what, request, "the run ended before its identity configuration was loaded")
            return None
        try:
            principal = verify_token(request.token, self._state.trust, workflow.now())
        except IdentityError as denial:
            self._deny(what, request, str(denial))
            return None
        if not allowed(principal.roles, action, self._input.mode):
            scope = scope_of(self._input.mode)
            self._deny(what, request, f"roles {principal.roles or ['(none)']} may not {action.value} on a {scope} "
                                      f"run (allowed: {', '.join(roles_allowed(action, self._input.mode))})",
                       principal)
            return None
        return principal

    def _approval_problem(self, gate: Gate, principal: Principal, approving: bool) -> str | None:
        if gate.roles and not set(principal.roles) & set(gate.roles):
            return f"gate {gate.id} counts only approvals of {', '.join(gate.roles)}"
        if approving and principal.subject == self._state.initiator:
            return f"four-eyes: {principal.subject} started this run and cannot approve it"
        if approving and any(a.actor == principal.subject for a in gate.approvals):
            return f"{principal.subject} already approved gate {gate.id}"
        return None

    def _count_approval(self, gate: Gate, principal: Principal, request: ControlRequest) -> bool:
        """Record one approval; whether the gate now has all it needs."""
        gate.approvals.append(Approval(actor=principal.subject, roles=principal.roles, at=workflow.now(),
                                       reason=request.reason))
        return len(gate.approvals) >= gate.required

    def _deny(self, what: str, request: ControlRequest, reason: str, principal: Principal | None = None) -> None:
        self._last_denial = reason
        self._state.denied_attempts += 1
        entry = AuditEntry(
            at=workflow.now(), actor=principal.subject if principal else (request.actor or "(unknown)"),
            action=what, accepted=False, reason=reason, roles=principal.roles if principal else [],
            verified=principal is not None, token_sha256=token_hash(request.token) if request.token else None,
            detail=f"request reason: {request.reason}" if request.reason else "")
        denied = sum(1 for e in self._state.audit if not e.accepted)
        if denied < MAX_DENIED_ENTRIES:
            self._state.audit.append(entry)
        self._log_audit(entry)

    def _allowed_entry(self, what: str, principal: Principal, request: ControlRequest, detail: str = "") -> None:
        entry = AuditEntry(at=workflow.now(), actor=principal.subject, action=what, accepted=True,
                           reason=request.reason, detail=detail, roles=principal.roles,
                           token_sha256=token_hash(request.token or ""))
        self._state.audit.append(entry)
        self._log_audit(entry)

    def _log_audit(self, entry: AuditEntry) -> None:
        # The worker's log handler turns `extra` into fields: one structured event per decision.
        workflow.logger.info("audit %s %s by %s: %s", entry.action, "allowed" if entry.accepted else "DENIED",
                             entry.actor, entry.reason or entry.detail,
                             extra={"audit": entry.model_dump(mode="json")})

    def _denied_result(self, message: str) -> ControlResult:
        self._publish()
        return ControlResult(accepted=False, status=self._state.status, message=f"denied: {message}")
