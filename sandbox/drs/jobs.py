"""DRS jobs as timelines: every step is planned, with its time, when the job starts; reads apply the steps now due.

Planning up front keeps progress deterministic under the seed (jitter is drawn once, in call order) and needs no
background thread: whoever reads the state first after a step's time applies it and its effects (an EC2 launch...).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sandbox.drs.util import arn, hex_id, iso

# How a participating server's launch will go, decided from its state when the job is created.
OK, UNRECOVERABLE, LAUNCH_FAILS, STUCK, BAD_SNAPSHOT = "ok", "unrecoverable", "launch_fails", "stuck", "bad_snapshot"

LAUNCH_ERROR = ("An error occurred (InsufficientInstanceCapacity) when calling the RunInstances operation: "
                "We currently do not have sufficient {type} capacity in the Availability Zone you requested.")


@dataclass
class Step:
    at: datetime
    kind: str  # progress | snapshot | cleanup | launched | failed | terminated | failback | start | end
    server_id: str | None = None
    event: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Participant:
    source_server_id: str
    recovery_instance_id: str | None = None
    status: str = "PENDING"
    snapshot_id: str | None = None
    point_in_time: str | None = None
    # Drawn when the job is created, so ids do not depend on when a reader happens to apply the launch.
    planned_instance_id: str | None = None


@dataclass
class Job:
    id: str
    account: str
    region: str
    type: str
    initiated_by: str
    created_at: datetime
    tags: dict[str, str]
    participants: dict[str, Participant]
    is_drill: bool = False
    steps: list[Step] = field(default_factory=list)
    applied: int = 0
    started: bool = False
    ended_at: datetime | None = None
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def arn(self) -> str:
        return arn(self.region, self.account, "job", self.id)

    @property
    def status(self) -> str:
        if self.ended_at is not None:
            return "COMPLETED"
        return "STARTED" if self.started else "PENDING"

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def advance(self, now: datetime, effect: Callable[[Job, Step], None]) -> None:
        while self.applied < len(self.steps) and self.steps[self.applied].at <= now:
            step = self.steps[self.applied]
            self.applied += 1
            if step.kind == "start":
                self.started = True
            elif step.kind == "end":
                self.ended_at = step.at
            elif step.kind == "progress" and step.server_id:
                self.participants[step.server_id].status = "IN_PROGRESS"
            elif step.kind == "failed" and step.server_id:
                self.participants[step.server_id].status = "FAILED"
            if step.event:
                self.record(step.at, step.event, step.server_id, step.data.get("eventData"))
            effect(self, step)

    def record(self, at: datetime, event: str, server_id: str | None, data: dict[str, Any] | None = None) -> None:
        event_data = {"sourceServerID": server_id, **(data or {})} if server_id else data
        self.log.append({"logDateTime": iso(at), "event": event, "eventData": event_data})

    def to_wire(self) -> dict[str, Any]:
        return {
            "jobID": self.id, "arn": self.arn, "type": self.type, "initiatedBy": self.initiated_by,
            "creationDateTime": iso(self.created_at),
            "endDateTime": iso(self.ended_at) if self.ended_at else None,
            "status": self.status, "tags": dict(self.tags),
            "participatingServers": [
                {"sourceServerID": p.source_server_id, "recoveryInstanceID": p.recovery_instance_id,
                 "launchStatus": p.status} for p in self.participants.values()
            ],
        }


class Timing:
    """Phase lengths: scenario durations divided by the time scale, each drawn with its own seeded jitter."""

    def __init__(self, durations: dict[str, float], time_scale: float, rng: random.Random) -> None:
        self.durations, self.scale, self.rng = durations, time_scale, rng

    def __call__(self, phase: str) -> timedelta:
        return timedelta(seconds=self.durations[phase] / self.scale * self.rng.uniform(0.8, 1.2))

    def tick(self) -> timedelta:
        return timedelta(seconds=0.05 / self.scale)


@dataclass
class LaunchPlan:
    server_id: str
    outcome: str
    snapshot_id: str | None
    replace_previous: bool
    instance_type: str
    replication_state: str
    stuck_seconds: float | None = None  # STUCK: how long until DRS gives up on the conversion (None: never)


def plan_launch(job: Job, plans: list[LaunchPlan], timing: Timing) -> None:
    """JOB_START, then per server: snapshot (on-demand or a chosen PIT), conversion, launch; JOB_END after the last."""
    started = job.created_at + timing("pending")
    steps = [Step(started, "start", event="JOB_START")]
    ends: list[datetime] = []
    for plan in plans:
        t, sid = started, plan.server_id
        if plan.snapshot_id:
            steps.append(Step(t, "progress", sid, "USING_PREVIOUS_SNAPSHOT"))
            t += timing("snapshot") * 0.2
            if plan.outcome in (UNRECOVERABLE, BAD_SNAPSHOT):
                why = (f"recovery snapshot {plan.snapshot_id} not found for the source server"
                       if plan.outcome == BAD_SNAPSHOT else f"data replication is {plan.replication_state}")
                steps.append(Step(t, "failed", sid, "USING_PREVIOUS_SNAPSHOT_FAILED", {"eventData": {"rawError": why}}))
                ends.append(t)
                continue
        else:
            steps.append(Step(t, "progress", sid, "SNAPSHOT_START"))
            t += timing("snapshot")
            if plan.outcome == UNRECOVERABLE:
                raw = f"Failed to take a snapshot: source server data replication is {plan.replication_state}"
                steps.append(Step(t, "log", sid, "SNAPSHOT_FAIL", {"eventData": {"rawError": raw}}))
                t += timing.tick()
                steps.append(Step(t, "failed", sid, "USING_PREVIOUS_SNAPSHOT_FAILED", {"eventData": {
                    "rawError": "No consistent point-in-time snapshot is available for this source server"}}))
                ends.append(t)
                continue
            steps.append(Step(t, "snapshot", sid, "SNAPSHOT_END"))
        conversion_server = hex_id(timing.rng, "i-")
        steps.append(Step(t, "log", sid, "CONVERSION_START", {"eventData": {"conversionServerID": conversion_server}}))
        if plan.outcome == STUCK:
            if plan.stuck_seconds is None:
                continue  # the job never ends
            t += timedelta(seconds=plan.stuck_seconds / timing.scale)
            steps.append(Step(t, "failed", sid, "CONVERSION_FAIL", {"eventData": {
                "rawError": "The conversion server did not finish converting the replicated volumes in time"}}))
            ends.append(t)
            continue
        t += timing("conversion")
        steps.append(Step(t, "log", sid, "CONVERSION_END"))
        if plan.replace_previous:
            steps.append(Step(t, "log", sid, "CLEANUP_START"))
            t += timing.tick()
            steps.append(Step(t, "cleanup", sid, "CLEANUP_END"))
        steps.append(Step(t, "log", sid, "LAUNCH_START"))
        t += timing("launch")
        if plan.outcome == LAUNCH_FAILS:
            raw = LAUNCH_ERROR.format(type=plan.instance_type)
            steps.append(Step(t, "failed", sid, "LAUNCH_FAILED", {"eventData": {"rawError": raw, "attemptCount": 3,
                                                                                 "maxAttemptsCount": 3}}))
        else:
            steps.append(Step(t, "launched", sid))
        ends.append(t)
    if len(ends) == len(plans):
        steps.append(Step(max(ends, default=started) + timing.tick(), "end", event="JOB_END"))
    job.steps = sorted(steps, key=lambda s: s.at)


def plan_terminate(job: Job, timing: Timing) -> None:
    started = job.created_at + timing("pending")
    steps = [Step(started, "start", event="JOB_START")]
    ends = []
    for sid in job.participants:
        steps.append(Step(started, "progress", sid, "CLEANUP_START"))
        end = started + timing("terminate")
        steps.append(Step(end, "terminated", sid, "CLEANUP_END"))
        ends.append(end)
    steps.append(Step(max(ends, default=started) + timing.tick(), "end", event="JOB_END"))
    job.steps = sorted(steps, key=lambda s: s.at)


def plan_failback(job: Job, timing: Timing) -> None:
    """On-premises failback: the failback client writes back to the original machine; no EC2 instance is made."""
    started = job.created_at + timing("pending")
    steps = [Step(started, "start", event="JOB_START")]
    ends = []
    for sid in job.participants:
        steps.append(Step(started, "progress", sid, "CONVERSION_START"))
        t = started + timing("conversion")
        steps.append(Step(t, "log", sid, "CONVERSION_END"))
        steps.append(Step(t, "log", sid, "LAUNCH_START"))
        t += timing("launch")
        steps.append(Step(t, "failback", sid))
        ends.append(t)
    steps.append(Step(max(ends, default=started) + timing.tick(), "end", event="JOB_END"))
    job.steps = sorted(steps, key=lambda s: s.at)
