"""EventBridge: switch which region's rules process events (`eventbridge.rule`), and replay archived events that
the failover may have missed (`eventbridge.replay`).

Double processing is the risk both guard against: when events reach both regions (global endpoints, cross-region
rules), a rule enabled in each region runs every event twice. So a real failover disables the old primary's rules
(before enabling the recovery ones when `disablePrimary` is `activate`), and a drill touches no rule unless the plan
opts in with `drillEnableRecoveryRules`; then CLEANUP disables again exactly the rules the drill enabled (their state
before is kept in a tag on each rule, named after the execution). A drill replays only to `drillRules`, never to the
production rules of the bus, and otherwise skips the replay and says so.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AwareDatetime, Field, model_validator

from activities.core.context import ResourceContext
from activities.core.aws import aws_call, aws_errors, error_code, fatal, unreachable
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, ServiceModule, register
from plans.model import Mode

_TAG_PREFIX = "dr:previous-state:"
_RULE = re.compile(r"^[\.\-_A-Za-z0-9]{1,64}$")
_BUS = r"^[/\.\-_A-Za-z0-9]{1,256}$"
_DISABLED = "DISABLED"
_REPLAY_FAILED = frozenset({"FAILED", "CANCELLED", "CANCELLING"})


class EventBridgeRuleParameters(ModuleParameters):
    rules: list[str] = Field(min_length=1)  # rule names in the recovery region
    event_bus_name: str = Field(default="default", pattern=_BUS)
    primary_rules: list[str] | None = None  # default: the same names
    primary_event_bus_name: str | None = Field(default=None, pattern=_BUS)  # default: eventBusName
    # Real failover: when the old primary's rules are disabled. `activate`: before the recovery rules are enabled
    # (in a disaster, if the primary does not answer, CLEANUP does it); `cleanup`: after; `none`: never.
    disable_primary: Literal["activate", "cleanup", "none"] = "activate"
    drill_enable_recovery_rules: bool = False  # a drill enables the recovery rules only with this opt-in

    @model_validator(mode="after")
    def _names(self) -> EventBridgeRuleParameters:
        for name in [*self.rules, *(self.primary_rules or [])]:
            if not _RULE.match(name):
                raise ValueError(f"{name!r} is not an EventBridge rule name")
        return self


@register
class EventBridgeRule(ServiceModule):
    action = "eventbridge.rule"
    summary = "Enable EventBridge rules in the recovery region and disable them in the old primary"
    Parameters = EventBridgeRuleParameters

    def instantiate(self, ctx: ResourceContext, params: EventBridgeRuleParameters) -> Operation:
        states = _states(ctx, ctx.recovery_region, params.event_bus_name, params.rules)
        return Operation(done=True, outputs={"recovery": states}, message=f"rules found: {_summary(states)}")

    def status(self, ctx: ResourceContext, params: EventBridgeRuleParameters) -> dict[str, Any]:
        return {"recovery": _states(ctx, ctx.recovery_region, params.event_bus_name, params.rules)}

    def activate(self, ctx: ResourceContext, params: EventBridgeRuleParameters) -> Operation:
        region, bus = ctx.recovery_region, params.event_bus_name
        if ctx.is_drill:
            states = _states(ctx, region, bus, params.rules)
            if not params.drill_enable_recovery_rules:
                return Operation(done=True, outputs={"recovery": states},
                                 message=f"drill: rules left as they are ({_summary(states)}); "
                                         "drillEnableRecoveryRules opts in")
            tag = _TAG_PREFIX + ctx.call.execution_id
            for name in params.rules:
                rule = _rule(ctx, region, bus, name)
                if tag not in _tags(ctx, region, rule["Arn"]):
                    # Before changing anything, and only once: a retry must not record its own enabled state.
                    with aws_errors(f"TagResource {name}"):
                        _events(ctx, region).tag_resource(ResourceARN=rule["Arn"],
                                                          Tags=[{"Key": tag, "Value": rule["State"]}])
                _set(ctx, region, bus, rule, enabled=True)
            return _done(ctx, params, "drill: recovery rules enabled until CLEANUP")
        outputs: dict[str, Any] = {}
        if params.disable_primary == "activate":
            outputs["primary"] = _disable_primary(ctx, params, tolerate_unreachable=ctx.mode is Mode.DISASTER)
        for name in params.rules:
            _set(ctx, region, bus, _rule(ctx, region, bus, name), enabled=True)
        return _done(ctx, params, "recovery rules enabled", outputs)

    def cleanup(self, ctx: ResourceContext, params: EventBridgeRuleParameters) -> Operation:
        region, bus = ctx.recovery_region, params.event_bus_name
        if ctx.is_drill:
            tag = _TAG_PREFIX + ctx.call.execution_id
            restored = 0
            for name in params.rules:
                rule = _rule(ctx, region, bus, name)
                previous = _tags(ctx, region, rule["Arn"]).get(tag)
                if previous is None:
                    continue
                if previous == _DISABLED:
                    _set(ctx, region, bus, rule, enabled=False)
                aws_call(f"UntagResource {name}", _events(ctx, region).untag_resource, ResourceARN=rule["Arn"],
                         TagKeys=[tag])
                restored += 1
            if not restored:
                return Operation(done=True, message="nothing this drill changed is left")
            return _done(ctx, params, f"{restored} rule(s) back as before the drill")
        if params.disable_primary == "none":
            return Operation(done=True, message="the old primary's rules are kept as they are (plan)")
        # Not tolerated here: an unreachable primary fails the activity, and Temporal retries until it answers.
        primary = _disable_primary(ctx, params, tolerate_unreachable=False)
        return Operation(done=True, outputs={"primary": primary}, message=f"old primary rules: {_summary(primary)}")


class EventBridgeReplayParameters(ModuleParameters):
    archive_name: str = Field(pattern=r"^[\.\-_A-Za-z0-9]{1,48}$")  # in the recovery region
    start_time: AwareDatetime | None = None  # absolute window ...
    end_time: AwareDatetime | None = None  # ... (default: now)
    last_minutes: int | None = Field(default=None, ge=1, le=60 * 24 * 90)  # ... or the last N minutes
    rules: list[str] | None = None  # real failover: only these rules of the archive's bus (default: all)
    drill_rules: list[str] | None = None  # drill: replay only to these rules; without them a drill skips

    @model_validator(mode="after")
    def _window(self) -> EventBridgeReplayParameters:
        if (self.start_time is None) == (self.last_minutes is None):
            raise ValueError("set either startTime (and optionally endTime) or lastMinutes")
        if self.end_time is not None and self.start_time is None:
            raise ValueError("endTime needs startTime")
        if self.start_time and self.end_time and self.start_time >= self.end_time:
            raise ValueError("startTime must be before endTime")
        for name in [*(self.rules or []), *(self.drill_rules or [])]:
            if not _RULE.match(name):
                raise ValueError(f"{name!r} is not an EventBridge rule name")
        return self


@register
class EventBridgeReplay(ServiceModule):
    action = "eventbridge.replay"
    summary = "Replay an EventBridge archive over a time window to its event bus, and wait until it completes"
    Parameters = EventBridgeReplayParameters

    def instantiate(self, ctx: ResourceContext, params: EventBridgeReplayParameters) -> Operation:
        archive = _archive(ctx, params.archive_name)
        outputs = {key: archive.get(key) for key in ("State", "EventCount", "EventSourceArn")}
        if archive["State"] not in ("ENABLED", "DISABLED"):
            raise fatal(f"archive {params.archive_name} is {archive['State']}", "ArchiveNotUsable")
        return Operation(done=True, outputs=outputs, message=f"archive {params.archive_name}: {archive['State']}")

    def activate(self, ctx: ResourceContext, params: EventBridgeReplayParameters) -> Operation:
        region = ctx.recovery_region
        if ctx.is_drill and not params.drill_rules:
            return Operation(done=True, message="drill: replay skipped; it would re-deliver archived events to "
                                                "production rules (drillRules names rules that may receive them)")
        name = _replay_name(ctx)
        handle = {"replay": name}
        existing = aws_call(f"DescribeReplay {name}", _events(ctx, region).describe_replay,
                            ("ResourceNotFoundException",), ReplayName=name)
        if existing is not None:
            return self.poll(ctx, params, handle)
        archive = _archive(ctx, params.archive_name)
        bus_arn = archive["EventSourceArn"]
        bus = bus_arn.split("/", 1)[1] if "/" in bus_arn else "default"
        only = params.drill_rules if ctx.is_drill else params.rules
        destination: dict[str, Any] = {"Arn": bus_arn}
        if only:
            # Replays can only go back to the archive's own bus; FilterArns is how they reach some rules only.
            destination["FilterArns"] = [_rule(ctx, region, bus, rule)["Arn"] for rule in only]
        start, end = _window(params)
        aws_call(f"StartReplay {name}", _events(ctx, region).start_replay, ("ResourceAlreadyExistsException",),
                 ReplayName=name, Description=f"DR {ctx.call.mode.value} {ctx.call.execution_id}"[:512],
                 EventSourceArn=archive["ArchiveArn"], EventStartTime=start, EventEndTime=end,
                 Destination=destination)
        ctx.log.info("eventbridge.replay_started", replay=name, archive=params.archive_name,
                     start=start.isoformat(), end=end.isoformat(), rules=only or "all")
        return self.poll(ctx, params, handle)

    def poll(self, ctx: ResourceContext, params: EventBridgeReplayParameters, handle: dict[str, Any]) -> Operation:
        name = handle["replay"]
        with aws_errors(f"DescribeReplay {name}"):
            replay = _events(ctx, ctx.recovery_region).describe_replay(ReplayName=name)
        state = replay["State"]
        outputs = {"replay": name, "state": state, "destination": replay.get("Destination"),
                   "lastReplayed": str(replay.get("EventLastReplayedTime") or "")}
        if state in _REPLAY_FAILED:
            raise fatal(f"replay {name} is {state}: {replay.get('StateReason', '')}", "ReplayFailed")
        return Operation(done=state == "COMPLETED", handle=handle, outputs=outputs,
                         message=f"replay {name} of {params.archive_name}: {state}", poll_interval_seconds=10.0)


# --- helpers --------------------------------------------------------------------------------------------------------


def _events(ctx: ResourceContext, region: str) -> Any:
    return ctx.client("events", region=region)


def _rule(ctx: ResourceContext, region: str, bus: str, name: str) -> dict[str, Any]:
    try:
        return dict(_events(ctx, region).describe_rule(Name=name, EventBusName=bus))
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise fatal(f"EventBridge rule {name} not found on bus {bus} in {region}", "RuleNotFound") from exc
        with aws_errors(f"DescribeRule {name}"):
            raise


def _set(ctx: ResourceContext, region: str, bus: str, rule: dict[str, Any], enabled: bool) -> None:
    if (rule["State"] != _DISABLED) == enabled:
        return
    call = _events(ctx, region).enable_rule if enabled else _events(ctx, region).disable_rule
    with aws_errors(f"{'EnableRule' if enabled else 'DisableRule'} {rule['Name']}"):
        call(Name=rule["Name"], EventBusName=bus)
    ctx.log.info("eventbridge.rule_switched", rule=rule["Name"], bus=bus, region=region, enabled=enabled)


def _states(ctx: ResourceContext, region: str, bus: str, names: list[str]) -> dict[str, str]:
    return {name: _rule(ctx, region, bus, name)["State"] for name in names}


def _tags(ctx: ResourceContext, region: str, arn: str) -> dict[str, str]:
    with aws_errors(f"ListTagsForResource {arn}"):
        found = _events(ctx, region).list_tags_for_resource(ResourceARN=arn)
    return {t["Key"]: t["Value"] for t in found.get("Tags", [])}


def _disable_primary(ctx: ResourceContext, params: EventBridgeRuleParameters, tolerate_unreachable: bool) -> dict[str, Any]:
    region = ctx.primary_region
    bus = params.primary_event_bus_name or params.event_bus_name
    try:
        for name in params.primary_rules or params.rules:
            _set(ctx, region, bus, _rule(ctx, region, bus, name), enabled=False)
        return _states(ctx, region, bus, params.primary_rules or params.rules)
    except (BotoCoreError, ClientError) as exc:
        # A disaster: the primary region may not answer. The recovery rules must not wait for it; CLEANUP (or a
        # retry of it once the region is back) disables the old rules.
        if not tolerate_unreachable or not unreachable(exc):
            raise
        ctx.log.warning("eventbridge.primary_unreachable", region=region, error=str(exc))
        return {"unreachable": True}


def _done(ctx: ResourceContext, params: EventBridgeRuleParameters, what: str, outputs: dict[str, Any] | None = None) -> Operation:
    states = _states(ctx, ctx.recovery_region, params.event_bus_name, params.rules)
    return Operation(done=True, outputs={"recovery": states, **(outputs or {})}, message=f"{what}: {_summary(states)}")


def _summary(states: dict[str, Any]) -> str:
    return ", ".join(f"{name} {state}" for name, state in states.items())


def _archive(ctx: ResourceContext, name: str) -> dict[str, Any]:
    try:
        return dict(_events(ctx, ctx.recovery_region).describe_archive(ArchiveName=name))
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise fatal(f"EventBridge archive {name} not found in {ctx.recovery_region}", "ArchiveNotFound") from exc
        with aws_errors(f"DescribeArchive {name}"):
            raise


def _replay_name(ctx: ResourceContext) -> str:
    # One replay per execution and resource, so a retried start finds it; names are at most 64 characters.
    digest = hashlib.sha256(f"{ctx.call.execution_id}/{ctx.call.resource.name}".encode()).hexdigest()[:24]
    return f"dr-{ctx.call.mode.value}-{digest}"


def _window(params: EventBridgeReplayParameters) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    if params.last_minutes is not None:
        return now - timedelta(minutes=params.last_minutes), now
    assert params.start_time is not None
    return params.start_time, params.end_time or now
