"""Who may do what: roles -> actions, as data. Enforced in the workflow's validators, not only in a client.

An action on a real run (planned failover, disaster recovery, failback) needs more than the same action on a drill:
a scope says which runs a grant covers. The README prints this table; tests check every (role, action, scope).
"""

from __future__ import annotations

from enum import StrEnum

from plans.approvals import Role
from plans.model import Mode


class Action(StrEnum):
    START_DRILL = "start-drill"
    START_PLANNED_FAILOVER = "start-planned-failover"
    START_DISASTER_RECOVERY = "start-disaster-recovery"
    START_FAILBACK = "start-failback"
    APPROVE = "approve"  # approve or reject a gate
    PAUSE_RESUME = "pause-resume"
    CANCEL = "cancel"
    SKIP_STEP = "skip-step"
    SWITCH_UNGRACEFUL = "switch-ungraceful"
    VIEW = "view"
    VIEW_AUDIT = "view-audit"


DRILL, REAL = "drill", "real"
_BOTH = frozenset({DRILL, REAL})
_DRILL_ONLY = frozenset({DRILL})

START_ACTION = {Mode.DRILL: Action.START_DRILL, Mode.PLANNED: Action.START_PLANNED_FAILOVER,
                Mode.DISASTER: Action.START_DISASTER_RECOVERY, Mode.FAILBACK: Action.START_FAILBACK}

# role -> action -> the runs it covers. A real failover needs recovery-manager or admin; drills need operator or above.
GRANTS: dict[Role, dict[Action, frozenset[str]]] = {
    Role.ADMIN: {action: _BOTH for action in Action},
    Role.RECOVERY_MANAGER: {action: _BOTH for action in Action},
    Role.PLAN_MANAGER: {
        Action.START_DRILL: _DRILL_ONLY, Action.APPROVE: _DRILL_ONLY, Action.PAUSE_RESUME: _BOTH,
        Action.CANCEL: _DRILL_ONLY, Action.SKIP_STEP: _DRILL_ONLY, Action.VIEW: _BOTH,
    },
    Role.OPERATOR: {
        Action.START_DRILL: _DRILL_ONLY, Action.PAUSE_RESUME: _BOTH, Action.CANCEL: _DRILL_ONLY, Action.VIEW: _BOTH,
    },
    Role.READ_ONLY: {Action.VIEW: _BOTH},
    Role.AUDITOR: {Action.VIEW: _BOTH, Action.VIEW_AUDIT: _BOTH},
}


def scope_of(mode: Mode) -> str:
    return DRILL if mode is Mode.DRILL else REAL


def allowed(roles: list[str] | set[str], action: Action, mode: Mode) -> bool:
    scope = scope_of(mode)
    return any(scope in GRANTS.get(Role(role), {}).get(action, frozenset())
               for role in roles if role in Role._value2member_map_)


def roles_allowed(action: Action, mode: Mode) -> list[str]:
    """For error messages: who could have done it."""
    scope = scope_of(mode)
    return [role.value for role, grants in GRANTS.items() if scope in grants.get(action, frozenset())]


def permission_table() -> list[str]:
    """The grants as the README's Markdown table (a test keeps the README in step with GRANTS)."""
    starts = {action: mode for mode, action in START_ACTION.items()}
    lines = ["| action | " + " | ".join(role.value for role in Role) + " |", "|---|" + "---|" * len(Role)]
    for action in Action:
        cells = []
        for role in Role:
            scopes = GRANTS[role].get(action, frozenset())
            if action in starts:
                cells.append("yes" if scope_of(starts[action]) in scopes else "—")
            else:
                cells.append({_BOTH: "drill + real", _DRILL_ONLY: "drill only"}.get(scopes, "—"))
        lines.append(f"| {action.value} | " + " | ".join(cells) + " |")
    return lines
