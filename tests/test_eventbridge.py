"""eventbridge.rule and eventbridge.replay on the sandbox: which rules process events, in each region and mode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.core.aws import AwsClients
from activities.eventbridge import EventBridgeReplay, EventBridgeRule
from plans.model import Mode, Phase
from tests.aws_helpers import PRIMARY_REGION, RECOVERY_REGION, drive, make_ctx, unique, with_phase
from tests.conftest import APP_ACCOUNT, account_session

rules_module = EventBridgeRule()
replay_module = EventBridgeReplay()
PATTERN = json.dumps({"source": ["orders"]})


def make_bus(region: str, bus: str, rules: dict[str, str]) -> Any:
    """A custom bus with the given rules (name -> State); returns the events client."""
    events = account_session(APP_ACCOUNT).client("events", region_name=region)
    events.create_event_bus(Name=bus)
    for name, state in rules.items():
        events.put_rule(Name=name, EventBusName=bus, EventPattern=PATTERN, State=state)
    return events


def states(events: Any, bus: str, *names: str) -> list[str]:
    return [events.describe_rule(Name=name, EventBusName=bus)["State"] for name in names]


def drill_tags(events: Any, bus: str, name: str) -> list[str]:
    arn = events.describe_rule(Name=name, EventBusName=bus)["Arn"]
    return [t["Key"] for t in events.list_tags_for_resource(ResourceARN=arn)["Tags"]
            if t["Key"].startswith("dr:previous-state:")]


# --- eventbridge.rule -----------------------------------------------------------------------------------------------


def test_drill_leaves_every_rule_alone_without_the_opt_in(sandbox):
    bus = unique("bus")
    west = make_bus(RECOVERY_REGION, bus, {"orders": "DISABLED"})
    east = make_bus(PRIMARY_REGION, bus, {"orders": "ENABLED"})
    ctx, parsed = make_ctx(rules_module, {"rules": ["orders"], "eventBusName": bus}, mode=Mode.DRILL,
                           phase=Phase.ACTIVATE)
    assert "left as they are" in drive(rules_module, ctx, parsed)[-1].message
    drive(rules_module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert states(west, bus, "orders") == ["DISABLED"] and states(east, bus, "orders") == ["ENABLED"]
    assert rules_module.status(ctx, parsed) == {"recovery": {"orders": "DISABLED"}}


def test_drill_with_the_opt_in_enables_recovery_rules_and_cleanup_restores_exactly(sandbox):
    bus = unique("bus")
    west = make_bus(RECOVERY_REGION, bus, {"orders": "DISABLED", "audit": "ENABLED"})
    east = make_bus(PRIMARY_REGION, bus, {"orders": "ENABLED", "audit": "ENABLED"})
    params = {"rules": ["orders", "audit"], "eventBusName": bus, "drillEnableRecoveryRules": True}
    ctx, parsed = make_ctx(rules_module, params, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    drive(rules_module, ctx, parsed)
    assert states(west, bus, "orders", "audit") == ["ENABLED", "ENABLED"]
    drive(rules_module, ctx, parsed)  # a retry must not record ENABLED as "the state before"
    assert len(drill_tags(west, bus, "orders")) == 1
    assert states(east, bus, "orders", "audit") == ["ENABLED", "ENABLED"]  # production untouched
    drive(rules_module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert states(west, bus, "orders", "audit") == ["DISABLED", "ENABLED"]
    assert drill_tags(west, bus, "orders") == [] and drill_tags(west, bus, "audit") == []
    assert "nothing this drill changed" in drive(rules_module, with_phase(ctx, Phase.CLEANUP), parsed)[-1].message


@pytest.mark.parametrize("when", ["activate", "cleanup"])
def test_real_failover_enables_recovery_rules_and_disables_the_old_primary(sandbox, when):
    bus = unique("bus")
    west = make_bus(RECOVERY_REGION, bus, {"orders": "DISABLED"})
    east = make_bus(PRIMARY_REGION, bus, {"orders-east": "ENABLED"})
    params = {"rules": ["orders"], "eventBusName": bus, "primaryRules": ["orders-east"], "disablePrimary": when}
    ctx, parsed = make_ctx(rules_module, params, mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    drive(rules_module, ctx, parsed)
    assert states(west, bus, "orders") == ["ENABLED"]
    assert states(east, bus, "orders-east") == ["DISABLED" if when == "activate" else "ENABLED"]
    assert drive(rules_module, ctx, parsed)[-1].done  # idempotent
    drive(rules_module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert states(east, bus, "orders-east") == ["DISABLED"] and states(west, bus, "orders") == ["ENABLED"]


def test_real_failover_keeps_the_old_primary_rules_when_told_to(sandbox):
    bus = unique("bus")
    make_bus(RECOVERY_REGION, bus, {"orders": "DISABLED"})
    east = make_bus(PRIMARY_REGION, bus, {"orders": "ENABLED"})
    ctx, parsed = make_ctx(rules_module, {"rules": ["orders"], "eventBusName": bus, "disablePrimary": "none"},
                           mode=Mode.FAILBACK, phase=Phase.ACTIVATE)
    drive(rules_module, ctx, parsed)
    drive(rules_module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert states(east, bus, "orders") == ["ENABLED"]


class PrimaryRegionDown(AwsClients):
    """The primary region's endpoints refuse connections, as in a regional outage; the recovery region works."""

    def client(self, service: str, account: Any, region: str) -> Any:
        if region != PRIMARY_REGION:
            return super().client(service, account, region)
        import boto3
        from botocore.config import Config

        return boto3.client(service, region_name=region, endpoint_url="http://127.0.0.1:9",
                            config=Config(retries={"max_attempts": 1}, connect_timeout=1))


def test_a_disaster_enables_recovery_rules_although_the_primary_does_not_answer(sandbox):
    bus = unique("bus")
    west = make_bus(RECOVERY_REGION, bus, {"orders": "DISABLED"})
    params = {"rules": ["orders"], "eventBusName": bus}
    ctx, parsed = make_ctx(rules_module, params, mode=Mode.DISASTER, phase=Phase.ACTIVATE, aws=PrimaryRegionDown())
    step = drive(rules_module, ctx, parsed)[-1]
    assert step.done and step.outputs["primary"] == {"unreachable": True}
    assert states(west, bus, "orders") == ["ENABLED"]
    # CLEANUP must not claim the old rules are off: it fails (retryably) until the region answers.
    with pytest.raises(Exception) as failure:
        drive(rules_module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert not isinstance(failure.value, ApplicationError) or not failure.value.non_retryable


def test_a_missing_rule_is_a_clear_permanent_error(sandbox):
    bus = unique("bus")
    make_bus(RECOVERY_REGION, bus, {})
    ctx, parsed = make_ctx(rules_module, {"rules": ["gone"], "eventBusName": bus}, mode=Mode.PLANNED,
                           phase=Phase.INSTANTIATE)
    with pytest.raises(ApplicationError) as failure:
        rules_module.start(ctx, parsed)
    assert failure.value.non_retryable and "gone not found" in failure.value.message


# --- eventbridge.replay ---------------------------------------------------------------------------------------------


def make_archive(bus: str, archive: str) -> tuple[Any, Any, dict[str, str]]:
    """A recovery-region bus with an archive holding 2 recent events and 1 of three hours ago, then two rules
    (created after the events, so only a replay reaches them), each sending to its own queue."""
    session = account_session(APP_ACCOUNT)
    events = make_bus(RECOVERY_REGION, bus, {})
    bus_arn = events.describe_event_bus(Name=bus)["Arn"]
    events.create_archive(ArchiveName=archive, EventSourceArn=bus_arn)
    now = datetime.now(UTC)
    for minutes_ago in (5, 10, 180):
        events.put_events(Entries=[{"Source": "orders", "DetailType": "order", "EventBusName": bus,
                                    "Detail": json.dumps({"ago": minutes_ago}),
                                    "Time": now - timedelta(minutes=minutes_ago)}])
    sqs = session.client("sqs", region_name=RECOVERY_REGION)
    queues = {}
    for rule in ("production", "drill"):
        url = sqs.create_queue(QueueName=unique(rule))["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=PATTERN)
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        queues[rule] = url
    return events, sqs, queues


def received(sqs: Any, url: str) -> list[int]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return sorted(json.loads(m["Body"])["detail"]["ago"] for m in messages)


def test_drill_replays_the_window_only_to_the_drill_rules(sandbox):
    bus, archive = unique("bus"), unique("arc")
    events, sqs, queues = make_archive(bus, archive)
    params = {"archiveName": archive, "lastMinutes": 60, "drillRules": ["drill"]}
    ctx, parsed = make_ctx(replay_module, params, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    steps = drive(replay_module, ctx, parsed)
    assert steps[-1].done and steps[-1].outputs["state"] == "COMPLETED"
    assert steps[-1].outputs["destination"]["FilterArns"] == [events.describe_rule(Name="drill", EventBusName=bus)["Arn"]]
    assert received(sqs, queues["drill"]) == [5, 10]  # the event of three hours ago is outside the window
    assert received(sqs, queues["production"]) == []
    again = drive(replay_module, ctx, parsed)[-1]  # a retry finds the replay by name and starts nothing
    assert again.outputs["replay"] == steps[-1].outputs["replay"]
    assert received(sqs, queues["drill"]) == [] and len(events.list_replays(NamePrefix="dr-")["Replays"]) >= 1


def test_drill_without_drill_rules_skips_the_replay(sandbox):
    bus, archive = unique("bus"), unique("arc")
    events, sqs, queues = make_archive(bus, archive)
    ctx, parsed = make_ctx(replay_module, {"archiveName": archive, "lastMinutes": 60}, mode=Mode.DRILL,
                           phase=Phase.ACTIVATE)
    assert "replay skipped" in drive(replay_module, ctx, parsed)[-1].message
    assert events.list_replays(EventSourceArn=events.describe_archive(ArchiveName=archive)["ArchiveArn"])[
        "Replays"] == []
    assert received(sqs, queues["production"]) == [] and received(sqs, queues["drill"]) == []


def test_real_failover_replays_an_absolute_window_to_the_bus(sandbox):
    bus, archive = unique("bus"), unique("arc")
    _, sqs, queues = make_archive(bus, archive)
    now = datetime.now(UTC)
    params = {"archiveName": archive, "startTime": (now - timedelta(hours=4)).isoformat(),
              "endTime": (now - timedelta(minutes=7)).isoformat()}
    ctx, parsed = make_ctx(replay_module, params, mode=Mode.DISASTER, phase=Phase.ACTIVATE)
    assert drive(replay_module, ctx, parsed)[-1].done
    assert received(sqs, queues["production"]) == [10, 180] and received(sqs, queues["drill"]) == [10, 180]


def test_a_missing_archive_is_a_clear_permanent_error(sandbox):
    name = unique("arc")
    ctx, parsed = make_ctx(replay_module, {"archiveName": name, "lastMinutes": 5}, mode=Mode.PLANNED,
                           phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as failure:
        replay_module.start(ctx, parsed)
    assert failure.value.non_retryable and f"archive {name} not found" in failure.value.message


@pytest.mark.parametrize("params", [
    {"archiveName": "a"},  # no window
    {"archiveName": "a", "lastMinutes": 5, "startTime": "2026-01-01T00:00:00Z"},
    {"archiveName": "a", "startTime": "2026-01-02T00:00:00Z", "endTime": "2026-01-01T00:00:00Z"},
    {"archiveName": "a", "startTime": "2026-01-01T00:00:00"},  # no time zone: ambiguous
    {"archiveName": "a", "lastMinutes": 5, "drillRules": ["not a rule"]},
])
def test_replay_windows_are_validated(params):
    with pytest.raises(ValidationError):
        replay_module.Parameters.model_validate(params)


def test_rule_names_are_validated():
    with pytest.raises(ValidationError):
        rules_module.Parameters.model_validate({"rules": ["no spaces"]})
