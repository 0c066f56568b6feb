"""The compute estate of the every-module plan: a Lambda function, an Auto Scaling group, EventBridge rules and an
archive, in both regions of the application account, and the checks of what each phase leaves behind."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

from plans.model import Mode, Phase
from tests.aws_helpers import an_image
from tests.conftest import APP_ACCOUNT, account_session
from tests.estates import Estate

PRIMARY, RECOVERY = "us-east-1", "us-west-2"
_PATTERN = json.dumps({"source": ["orders"]})


def build(prefix: str) -> Estate:
    session = account_session(APP_ACCOUNT)
    fn, group, bus, archive = f"{prefix}-fn", f"{prefix}-web", f"{prefix}-bus", f"{prefix}-arc"
    lam = {region: session.client("lambda", region_name=region) for region in (PRIMARY, RECOVERY)}
    mappings = {region: _function(session, region, fn) for region in (PRIMARY, RECOVERY)}
    lam[PRIMARY].update_event_source_mapping(UUID=mappings[PRIMARY], Enabled=True)
    for _ in range(10):  # Enabling -> Enabled: the primary consumes events before the plan runs
        if lam[PRIMARY].get_event_source_mapping(UUID=mappings[PRIMARY])["State"] == "Enabled":
            break
    asg = {RECOVERY: _group(session, RECOVERY, group, 0, 1, 0), PRIMARY: _group(session, PRIMARY, group, 1, 4, 2)}
    events = {region: session.client("events", region_name=region) for region in (PRIMARY, RECOVERY)}
    for region, state in ((PRIMARY, "ENABLED"), (RECOVERY, "DISABLED")):
        events[region].create_event_bus(Name=bus)
        events[region].put_rule(Name="orders", EventBusName=bus, EventPattern=_PATTERN, State=state)
    queues = _archive(session, events[RECOVERY], bus, archive)

    resources = [
        {"name": "compute-lambda", "action": "lambda.function", "parameters": {
            "functionName": fn, "alias": "live", "version": "2", "reservedConcurrency": 10,
            "provisionedConcurrency": 2, "drillAlias": "dr-drill", "disablePrimaryEventSourceMappings": True,
            "removePrimaryConcurrency": True}},
        {"name": "compute-asg", "action": "autoscaling.group", "parameters": {
            "groupName": group, "primaryPercent": 50, "scaleDownPrimary": True}},
        {"name": "compute-rules", "action": "eventbridge.rule", "parameters": {
            "rules": ["orders"], "eventBusName": bus, "disablePrimary": "activate"}},
        {"name": "compute-replay", "action": "eventbridge.replay", "parameters": {
            "archiveName": archive, "lastMinutes": 60, "rules": ["replay-check"], "drillRules": ["replay-check"]}},
    ]

    def check(phase: Phase, mode: Mode) -> None:
        drill = mode is Mode.DRILL
        activated = phase is Phase.ACTIVATE
        done = phase in (Phase.ACTIVATE, Phase.CLEANUP, Phase.REPLICATE)
        # Lambda: production in the recovery region moves only in a real failover; the old primary stops in CLEANUP.
        west = _lambda_state(lam[RECOVERY], fn, mappings[RECOVERY])
        if drill or not done:
            assert west == ("1", None, "Disabled"), west
        else:
            assert west == ("2", 10, "Enabled"), west
        drill_aliases = [a["Name"] for a in lam[RECOVERY].list_aliases(FunctionName=fn)["Aliases"]]
        assert ("dr-drill" in drill_aliases) == (drill and activated), drill_aliases
        east = _lambda_state(lam[PRIMARY], fn, mappings[PRIMARY])
        stopped = not drill and phase in (Phase.CLEANUP, Phase.REPLICATE)
        assert east == (("1", None, "Disabled") if stopped else ("1", None, "Enabled")), east
        # Auto Scaling: the recovery group runs 50% of the primary's 2 while scaled; a drill's CLEANUP undoes it.
        west_size = _size(asg[RECOVERY], group)
        assert west_size == ((0, 1, 1, 1) if (activated or (done and not drill)) else (0, 1, 0, 0)), west_size
        assert _size(asg[PRIMARY], group) == ((0, 4, 0, 0) if stopped else (1, 4, 2, 2))
        # EventBridge: a drill leaves both regions' rules as they are; a failover swaps them in ACTIVATE.
        swapped = not drill and done
        assert _rule(events[RECOVERY], bus) == ("ENABLED" if swapped else "DISABLED")
        assert _rule(events[PRIMARY], bus) == ("DISABLED" if swapped else "ENABLED")
        # Replay: the last hour's two events reach the check rule only, once.
        sqs = session.client("sqs", region_name=RECOVERY)
        assert _received(sqs, queues["replay-check"]) == ([5, 10] if activated else [])
        assert _received(sqs, queues["production"]) == []

    return Estate(resources=resources, check=check, notes=[
        "lambda.function drill: only the drill alias dr-drill moves; mappings and reserved concurrency never do",
        "eventbridge.replay: replays go to the archive's bus, limited to the replay-check rule (FilterArns)",
    ])


def _function(session: Any, region: str, name: str) -> str:
    """Versions 1 and 2, alias live on 1, and a disabled SQS mapping on the alias; returns the mapping's UUID."""
    role = session.client("iam").create_role(RoleName=f"{name}-{region}", AssumeRolePolicyDocument="{}")["Role"]
    lam = session.client("lambda", region_name=region)
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return 1\n")
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role["Arn"], Handler="index.handler",
                        Code={"ZipFile": code.getvalue()}, Publish=True)
    lam.update_function_configuration(FunctionName=name, Description="release 2")
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    sqs = session.client("sqs", region_name=region)
    url = sqs.create_queue(QueueName=f"{name}-in")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return str(lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=f"{name}:live",
                                               Enabled=False)["UUID"])


def _group(session: Any, region: str, name: str, min_size: int, max_size: int, desired: int) -> Any:
    ec2 = session.client("ec2", region_name=region)
    image = an_image(ec2)
    ec2.create_launch_template(LaunchTemplateName=f"{name}-lt",
                               LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"})
    autoscaling = session.client("autoscaling", region_name=region)
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": f"{name}-lt"}, MinSize=min_size,
        MaxSize=max_size, DesiredCapacity=desired, VPCZoneIdentifier=ec2.describe_subnets()["Subnets"][0]["SubnetId"])
    return autoscaling


def _archive(session: Any, events: Any, bus: str, archive: str) -> dict[str, str]:
    """An archive of the recovery bus with events of 5, 10 and 180 minutes ago; then two rules with a queue each,
    created after the events so that only a replay reaches them."""
    events.create_archive(ArchiveName=archive, EventSourceArn=events.describe_event_bus(Name=bus)["Arn"])
    now = datetime.now(UTC)
    for ago in (5, 10, 180):
        events.put_events(Entries=[{"Source": "orders", "DetailType": "order", "EventBusName": bus,
                                    "Detail": json.dumps({"ago": ago}), "Time": now - timedelta(minutes=ago)}])
    sqs = session.client("sqs", region_name=RECOVERY)
    queues = {}
    for rule in ("replay-check", "production"):
        url = sqs.create_queue(QueueName=f"{bus}-{rule}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=_PATTERN)
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        queues[rule] = url
    return queues


def _lambda_state(lam: Any, name: str, mapping: str) -> tuple[str, int | None, str]:
    """(production alias version, reserved concurrency, mapping state)."""
    return (lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"],
            lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions"),
            lam.get_event_source_mapping(UUID=mapping)["State"])


def _size(autoscaling: Any, name: str) -> tuple[int, int, int, int]:
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    in_service = sum(1 for i in group["Instances"] if i["LifecycleState"] == "InService")
    return group["MinSize"], group["MaxSize"], group["DesiredCapacity"], in_service


def _rule(events: Any, bus: str) -> str:
    return str(events.describe_rule(Name="orders", EventBusName=bus)["State"])


def _received(sqs: Any, url: str) -> list[int]:
    """What arrived since the last look (deleted, so a later check sees only what is new)."""
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return sorted(json.loads(m["Body"])["detail"]["ago"] for m in messages)
