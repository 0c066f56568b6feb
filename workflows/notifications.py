"""Telling people what a run needs and how it ended, through the plan's SNS topic: a plain object DrLifecycleWorkflow
owns, given the run's state, its plan, the clock and a way to run the activity that publishes.

The messages are built here, deterministically, from the run's state; an activity publishes them. A notification
that cannot be delivered is recorded and logged, and never fails or holds up the run: recovery goes on.
"""

from __future__ import annotations

import json
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.governance import BOUND_APPROVALS_PATCH
from workflows.ports import ActivityRunner, Clock

with workflow.unsafe.imports_passed_through():
    from contracts.activities import NOTIFY, NotifyRequest
    from plans.notifications import NotificationEvent
    from contracts.lifecycle import Gate, LifecycleState, NotificationRecord, RunStatus
    from plans.model import Plan
    from workflows.state import result_of, within_policy

_OUTCOME_EVENTS = {RunStatus.COMPLETED: NotificationEvent.COMPLETED, RunStatus.PARTIAL: NotificationEvent.PARTIAL,
                   RunStatus.FAILED: NotificationEvent.FAILED, RunStatus.CANCELLED: NotificationEvent.CANCELLED,
                   RunStatus.REJECTED: NotificationEvent.REJECTED}
# Bounded: a pause answers its caller only after its notification went out (or gave up).
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5), maximum_attempts=3)


class Notifier:
    def __init__(self, state: LifecycleState, plan: Plan, run_activity: ActivityRunner, now: Clock) -> None:
        self._state, self._plan, self._run_activity, self._now = state, plan, run_activity, now

    async def approval_needed(self, gate: Gate) -> None:
        wf = self._state.workflow_id
        needed = f"{gate.required} approval(s)" + (f" from {', '.join(gate.roles)}" if gate.roles else "")
        update_input = json.dumps({"gate": gate.id, "token": "<your token>", "reason": "<why>"})
        plan_hash = self._plan_hash()
        pinned = f" --plan-hash {plan_hash}" if plan_hash else ""
        if plan_hash:  # an approval names the run it decides, and the plan its approver reviewed
            update_input = json.dumps({"run": wf, "gate": gate.id, "plan_hash": plan_hash, "token": "<your token>",
                                       "reason": "<why>"})
        lines = [
            f"Run {wf} ({self._state.mode.value} of plan {self._state.plan_name}) waits for approval at {gate.id}:",
            f"{needed}; the initiator ({self._state.initiator}) cannot approve.",
            *([f"Plan {self._state.plan_name} {plan_hash}: approve only the plan you reviewed "
               "(`drctl plan validate` prints its hash); an approval naming another hash is denied."]
              if plan_hash else []),
            *([f"Without a decision by {gate.timeout_at:%Y-%m-%d %H:%M} UTC the gate times out ({gate.on_timeout})."]
              if gate.timeout_at else []),
            "",
            "Approve with drctl (DRCTL_TOKEN holds your token):",
            f"  drctl drill approve {wf} --gate '{gate.id}'{pinned} --reason '<why>'",
            "or with the Temporal CLI:",
            f"  temporal workflow update execute --workflow-id {wf} --name approve --input '{update_input}'",
            "or as a signal (no answer; a denial shows in the run's status and audit trail):",
            f"  temporal workflow signal --workflow-id {wf} --name approve --input '{update_input}'",
            f"Reject instead: drctl drill reject {wf} --gate '{gate.id}'{pinned} --reason '<why>'",
        ]
        await self._send(NotificationEvent.APPROVAL_NEEDED, f"Approval needed: {self._state.plan_name} {gate.id}",
                           "\n".join(lines), gate=gate.id)

    async def paused(self, actor: str, reason: str) -> None:
        wf = self._state.workflow_id
        text = (f"Run {wf} ({self._state.mode.value} of plan {self._state.plan_name}{self._hash_suffix()}) was "
                f"paused by {actor}"
                f"{': ' + reason if reason else ''}.\nRunning operations finish; nothing new starts until\n"
                f"  drctl drill resume {wf}")
        await self._send(NotificationEvent.PAUSED, f"Paused: {self._state.plan_name}", text)

    async def outcome(self) -> None:
        event = _OUTCOME_EVENTS.get(self._state.status)
        if event is None:
            return
        result = result_of(self._state)
        phases = ", ".join(f"{p.phase.value} {p.status.value}" + (f" {p.duration_seconds:.0f} s"
                                                                 if p.duration_seconds is not None else "")
                           for p in self._state.phases)
        partial = self._state.status is RunStatus.PARTIAL
        lines = [f"Run {self._state.workflow_id}: {self._state.mode.value} of plan {self._state.plan_name}"
                 f"{self._hash_suffix()}, "
                 f"started by {self._state.initiator}, ended {self._state.status.value}"
                 + (" (every phase ran; some steps failed within the plan's policy)." if partial else "."),
                 result.message, f"Phases: {phases}"]
        if partial:
            lines.append("Failed within policy: " + ", ".join(within_policy(self._state)))
        elif result.failed_resources:
            lines.append("Failed: " + ", ".join(result.failed_resources))
        await self._send(event, f"{self._state.status.value}: {self._state.mode.value} of "
                                f"{self._state.plan_name}", "\n".join(lines))

    def _plan_hash(self) -> str | None:
        """The plan's hash, for runs that carry it in their notifications (runs recorded before replay without)."""
        return self._state.plan_hash if workflow.patched(BOUND_APPROVALS_PATCH) else None

    def _hash_suffix(self) -> str:
        plan_hash = self._plan_hash()
        return f" {plan_hash}" if plan_hash else ""

    async def _send(self, event: NotificationEvent, subject: str, message: str, gate: str | None = None) -> None:
        settings = self._plan.notifications
        if settings is None:
            return
        # A plan that asked for "completed" before "partial" existed keeps hearing of every run that completed.
        if event not in settings.events and not (event is NotificationEvent.PARTIAL
                                                 and NotificationEvent.COMPLETED in settings.events):
            return
        account = self._plan.accounts.get(settings.account) if settings.account else None
        record = NotificationRecord(event=event.value, at=self._now(), gate=gate)
        self._state.notifications.append(record)
        attributes = {"event": event.value, "plan": self._state.plan_name, "mode": self._state.mode.value,
                      "workflowId": self._state.workflow_id, **({"gate": gate} if gate else {})}
        try:
            record.message_id = await self._run_activity(
                NOTIFY, NotifyRequest(topic_arn=settings.topic_arn, region=settings.region, account=account,
                                      event=event.value, subject=subject, message=message, attributes=attributes),
                result_type=str, start_to_close_timeout=timedelta(seconds=15), retry_policy=_RETRY,
                summary=f"notify SNS topic {settings.topic_arn}: {event.value}" + (f" ({gate})" if gate else ""))
        except ActivityError as err:
            record.error = str(err.cause or err)
            workflow.logger.warning("notification %s not delivered: %s", event.value, record.error)
