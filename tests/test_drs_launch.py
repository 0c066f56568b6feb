"""Launch settings as desired state, on the sandbox's DRS emulator and moto's EC2: applied in order, idempotent,
static addresses checked, drift reported; the INSTANTIATE phase and `drctl plan preview|drift`."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.core.aws import AwsClients
from activities.drs.activities import DrsActivities
from contracts.drs import DRS_APPLY_LAUNCH, DrsTarget, LaunchGroup, LaunchRequest, LaunchServer
from activities.drs.launch import (
    SERVER_TRIES,
    VERSION_DESCRIPTION,
    apply_launch_settings,
    desired_for,
    drift,
)
from drctl.plan_cmd import plan as plan_cli
from plans.drs import LaunchSettings
from plans.model import Account, Mode, Plan
from sandbox.drs.models import DrsWorld, reset_world
from tests.conftest import HUB_ACCOUNT
from tests.lifecycle_helpers import finish, last_start, resource, start_run, status_of
from contracts.drs_recovery import DrsRecoveryState
from contracts.lifecycle import RunOptions, RunStatus, StepStatus

REGION = "us-west-2"


@pytest.fixture
def world(sandbox: Any) -> Iterator[DrsWorld]:
    yield reset_world(time_scale=40, seed=11)
    reset_world()


@pytest.fixture
def clients(sandbox: Any) -> tuple[Any, Any]:
    return boto3.client("drs", region_name=REGION), boto3.client("ec2", region_name=REGION)


@pytest.fixture
def network(clients: tuple[Any, Any]) -> dict[str, str]:
    ec2 = clients[1]
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.7.0/24")["Subnet"]["SubnetId"]
    name = uuid.uuid4().hex[:8]
    groups = [ec2.create_security_group(GroupName=f"{role}-{name}", Description=role, VpcId=vpc)["GroupId"]
              for role in ("web", "admin")]
    return {"vpc": vpc, "subnet": subnet, "sg_web": groups[0], "sg_admin": groups[1]}


def add_servers(world: DrsWorld, count: int, tier: str = "web") -> tuple[str, list[LaunchServer]]:
    app = f"app-{uuid.uuid4().hex[:6]}"
    servers = []
    for n in range(count):
        hostname = f"{tier}-{n}.{app}.example.com"
        sid = world.add_source_server(HUB_ACCOUNT, REGION, hostname, tags={"App": app, "Tier": tier})
        servers.append(LaunchServer(id=sid, hostname=hostname))
    return app, servers


def template_of(clients: tuple[Any, Any], server_id: str) -> tuple[str, list[dict[str, Any]], int]:
    """(template id, every version oldest first, default version number)."""
    drs, ec2 = clients
    template = drs.get_launch_configuration(sourceServerID=server_id)["ec2LaunchTemplateID"]
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=template)["LaunchTemplateVersions"]
    default = ec2.describe_launch_templates(LaunchTemplateIds=[template])["LaunchTemplates"][0]["DefaultVersionNumber"]
    return template, sorted(versions, key=lambda v: v["VersionNumber"]), default


def full_settings(network: dict[str, str], hostname: str) -> LaunchSettings:
    return LaunchSettings.model_validate({
        "instanceType": "m5.large", "subnetId": network["subnet"],
        "securityGroupIds": [network["sg_web"], network["sg_admin"]], "instanceProfile": "dr-web",
        "copyTags": True, "launchDisposition": "STOPPED", "osByol": False,
        "perServer": {hostname: {"staticPrivateIp": "10.42.7.20"}},
    })


def test_apply_writes_drs_first_then_one_template_version_as_default_and_a_rerun_changes_nothing(
        world, clients, network):
    _, (server,) = add_servers(world, 1)
    drs, ec2 = clients
    desired = desired_for(server, full_settings(network, server.hostname))
    _, before, _ = template_of(clients, server.id)

    changes = apply_launch_settings(drs, ec2, [(server, desired)])

    assert len(changes) == 1 and changes[0].drs_updated
    assert {f.field for f in changes[0].fields} == {
        "instanceType", "rightSizing", "subnetId", "securityGroupIds", "instanceProfile", "copyPrivateIp",
        "copyTags", "staticPrivateIp", "launchDisposition", "osByol"} - {"copyPrivateIp"}  # already false
    config = drs.get_launch_configuration(sourceServerID=server.id)
    assert config["copyTags"] is True and config["launchDisposition"] == "STOPPED"
    assert config["licensing"] == {"osByol": False} and config["targetInstanceTypeRightSizingMethod"] == "NONE"
    assert config["copyPrivateIp"] is False
    _, after, default = template_of(clients, server.id)
    ours = [v for v in after if v.get("VersionDescription") == VERSION_DESCRIPTION]
    # DRS's own update wrote a version too (as on AWS); ours is the single one after it, and it is the default.
    assert len(ours) == 1 and ours[0]["VersionNumber"] == after[-1]["VersionNumber"] == default
    assert changes[0].template_version == default and len(after) == len(before) + 2
    data = ours[0]["LaunchTemplateData"]
    assert data["InstanceType"] == "m5.large" and data["IamInstanceProfile"] == {"Name": "dr-web"}
    assert data["ImageId"] == before[0]["LaunchTemplateData"]["ImageId"]  # the rest of the template kept
    (interface,) = data["NetworkInterfaces"]
    assert interface["SubnetId"] == network["subnet"] and interface["PrivateIpAddress"] == "10.42.7.20"
    assert sorted(interface["Groups"]) == sorted([network["sg_web"], network["sg_admin"]])

    assert apply_launch_settings(drs, ec2, [(server, desired)]) == []
    _, again, default_again = template_of(clients, server.id)
    assert len(again) == len(after) and default_again == default
    assert drift(drs, ec2, server, desired) == []


def test_only_template_fields_make_a_single_version_and_no_drs_update(world, clients, network):
    _, (server,) = add_servers(world, 1)
    drs, ec2 = clients
    desired = desired_for(server, LaunchSettings.model_validate({"subnetId": network["subnet"]}))
    _, before, _ = template_of(clients, server.id)
    (change,) = apply_launch_settings(drs, ec2, [(server, desired)])
    _, after, default = template_of(clients, server.id)
    assert not change.drs_updated and len(after) == len(before) + 1 and default == after[-1]["VersionNumber"]


@pytest.mark.parametrize("address, why", [("10.42.8.20", "outside subnet"), ("10.42.7.0", "reserved"),
                                          ("10.42.7.3", "reserved"), ("10.42.7.255", "reserved")])
def test_a_static_address_outside_the_subnet_or_reserved_is_refused_naming_the_server(
        world, clients, network, address, why):
    _, servers = add_servers(world, 2)
    drs, ec2 = clients
    settings = LaunchSettings.model_validate({"subnetId": network["subnet"], "copyTags": True,
                                              "perServer": {servers[1].id: {"staticPrivateIp": address}}})
    _, before, _ = template_of(clients, servers[0].id)
    with pytest.raises(ApplicationError) as raised:
        apply_launch_settings(drs, ec2, [(s, desired_for(s, settings)) for s in servers])
    assert raised.value.non_retryable and why in raised.value.message
    assert servers[1].id in raised.value.message and address in raised.value.message
    # Checked before any write: the good server was not changed either.
    _, after, _ = template_of(clients, servers[0].id)
    assert len(after) == len(before)
    assert drs.get_launch_configuration(sourceServerID=servers[0].id)["copyTags"] is False


def test_drift_lists_exactly_the_fields_that_differ(world, clients, network):
    _, (server,) = add_servers(world, 1)
    drs, ec2 = clients
    # The emulator's defaults: STARTED, copyTags false, BASIC right-sizing, t3.medium, no subnet.
    desired = desired_for(server, LaunchSettings.model_validate({
        "launchDisposition": "STOPPED", "copyTags": False, "subnetId": network["subnet"], "rightSizing": "BASIC"}))
    fields = {f.field: (f.live, f.desired) for f in drift(drs, ec2, server, desired)}
    assert fields == {"launchDisposition": ("STARTED", "STOPPED"), "subnetId": (None, network["subnet"])}
    apply_launch_settings(drs, ec2, [(server, desired)])
    assert drift(drs, ec2, server, desired) == []


def plan_dict(name: str, app: str, settings: dict[str, Any] | None, phase: str = "INSTANTIATE") -> dict[str, Any]:
    resource = {"name": "servers", "action": "drs.recovery",
                "parameters": {"waves": [{"name": "web", "protectionGroups": ["web"]}]}}
    group: dict[str, Any] = {"selection": {"tags": {"App": app, "Tier": "web"}}}
    if settings:
        group["launchSettings"] = settings
    return {
        "name": name, "accounts": {"hub": {"id": HUB_ACCOUNT}},
        "regions": {"primary": "us-east-1", "recovery": REGION}, "defaults": {"account": "hub"},
        "protectionGroups": {"web": group},
        "phases": {phase: {"layers": [{"name": "servers", "resources": [resource]}]}},
    }


async def test_instantiate_applies_the_groups_launch_settings(worker, world, clients, network):
    app, servers = add_servers(world, 2)
    settings = {"instanceType": "c5.xlarge", "subnetId": network["subnet"], "launchDisposition": "STOPPED"}
    plan = Plan.model_validate(plan_dict("drs-launch", app, settings))
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL,
                             options=RunOptions(phases=["INSTANTIATE"]))
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED, result.message
    step = resource(await status_of(handle), "INSTANTIATE", "servers", "servers")
    assert step.status is StepStatus.SUCCEEDED
    child = await worker.client.get_workflow_handle(f"{handle.id}/INSTANTIATE/servers/servers").query(
        "status", result_type=DrsRecoveryState)
    assert "launch settings changed on 2 server(s)" in child.waves[0].message
    drs = clients[0]
    for server in servers:
        assert drs.get_launch_configuration(sourceServerID=server.id)["launchDisposition"] == "STOPPED"
        _, versions, default = template_of(clients, server.id)
        data = versions[default - 1]["LaunchTemplateData"]
        assert data["InstanceType"] == "c5.xlarge" and data["NetworkInterfaces"][0]["SubnetId"] == network["subnet"]


async def test_instantiate_fails_the_wave_on_a_bad_static_address(worker, world, network):
    app, servers = add_servers(world, 1)
    settings = {"subnetId": network["subnet"], "perServer": {servers[0].hostname: {"staticPrivateIp": "10.9.9.9"}}}
    plan = Plan.model_validate(plan_dict("drs-launch-bad", app, settings))
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL,
                             options=RunOptions(phases=["INSTANTIATE"]))
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    step = resource(await status_of(handle), "INSTANTIATE", "servers", "servers")
    assert step.status is StepStatus.FAILED and servers[0].id in step.error and "10.9.9.9" in step.error


def test_a_throttled_server_is_tried_again_alone(world, clients, network):
    _, servers = add_servers(world, 2)
    world.set_faults(throttled_calls={f"UpdateLaunchConfiguration:{servers[1].id}": 6})  # twice botocore's 3
    pauses: list[float] = []
    settings = LaunchSettings.model_validate({"copyTags": True})
    changes = apply_launch_settings(*clients, [(s, desired_for(s, settings)) for s in servers], pause=pauses.append)
    assert [c.server_id for c in changes] == [s.id for s in servers] and pauses == [1.0, 2.0]
    assert [world.answered[("UpdateLaunchConfiguration", s.id)] for s in servers] == [1, 1]


def test_a_bad_address_fails_its_group_alone_naming_the_server(world, network):
    _, good = add_servers(world, 2)
    _, bad = add_servers(world, 1, tier="db")
    request = LaunchRequest(target=DrsTarget(account_key="hub", account=Account(id=HUB_ACCOUNT), region=REGION),
                            groups=[LaunchGroup(group="db", servers=bad, settings=LaunchSettings.model_validate(
                                        {"subnetId": network["subnet"], "staticPrivateIp": "10.9.9.9"})),
                                    LaunchGroup(group="web", servers=good,
                                                settings=LaunchSettings.model_validate({"copyTags": True}))])
    result = ActivityEnvironment().run(DrsActivities(AwsClients()).apply_launch, request)
    assert list(result.failed) == ["db"] and bad[0].id in result.failed["db"] and "10.9.9.9" in result.failed["db"]
    assert sorted((c.group, c.server_id) for c in result.changes) == sorted(("web", s.id) for s in good)
    assert world.answered[("UpdateLaunchConfiguration", bad[0].id)] == 0


async def test_launch_settings_go_on_from_the_servers_done_after_a_failed_attempt(worker, world, network):
    app, servers = add_servers(world, 3)
    # The last server's update is throttled past every try of the first attempt; the second attempt gets through.
    world.set_faults(throttled_calls={f"UpdateLaunchConfiguration:{servers[-1].id}": 3 * SERVER_TRIES})
    plan = Plan.model_validate(plan_dict("drs-launch-resume", app, {"copyTags": True, "subnetId": network["subnet"]}))
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL,
                             options=RunOptions(phases=["INSTANTIATE"]))
    assert (await finish(handle)).status is RunStatus.COMPLETED
    child = worker.client.get_workflow_handle(f"{handle.id}/INSTANTIATE/servers/servers")
    assert (await last_start(child, DRS_APPLY_LAUNCH))[0] == 2
    state = await child.query("status", result_type=DrsRecoveryState)
    assert "launch settings changed on 3 server(s)" in state.waves[0].message  # the first attempt's changes kept
    assert [world.answered[("UpdateLaunchConfiguration", s.id)] for s in servers] == [1, 1, 1]
    # Read by the first attempt's check and write, never again: the second attempt began at the last server.
    assert [world.answered[("GetLaunchConfiguration", s.id)] for s in servers[:-1]] == [2, 2]


def write_plan(tmp_path: Path, plan: dict[str, Any]) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(json.dumps(plan, indent=2))  # JSON is YAML
    return str(path)


def test_plan_preview_shows_servers_replication_and_quotas(world, tmp_path):
    app, _ = add_servers(world, 3)
    world.add_source_server(HUB_ACCOUNT, REGION, f"web-sick.{app}.example.com", tags={"App": app, "Tier": "web"},
                            replication_state="STALLED", lag_seconds=5400)
    file = write_plan(tmp_path, plan_dict("drs-preview", app, None, phase="ACTIVATE"))
    out = CliRunner().invoke(plan_cli, ["preview", file, "--show", "2"])
    assert out.exit_code == 1, out.output  # one server cannot be recovered now
    assert "wave web" in out.output and "4 server(s)" in out.output and "(+2 more)" in out.output
    assert "UNHEALTHY web-sick" in out.output and "STALLED" in out.output and "1h30m" in out.output
    assert f"{HUB_ACCOUNT}/{REGION}: 20 concurrent jobs, 100 servers per job" in out.output
    assert "largest wave: servers/web, 4 server(s) -> 1 job(s)" in out.output
    assert "within the free quota" in out.output
    assert re.search(r"^plan drs-preview sha256:[0-9a-f]{64}$", out.output, re.M)  # to compare with the run's


def test_plan_drift_exits_1_with_drift_and_0_after_apply(world, clients, network, tmp_path):
    app, servers = add_servers(world, 2)
    settings = {"subnetId": network["subnet"], "copyTags": True}
    file = write_plan(tmp_path, plan_dict("drs-drift", app, settings))
    out = CliRunner().invoke(plan_cli, ["drift", file])
    assert out.exit_code == 1, out.output
    for server in servers:
        assert f"{server.hostname} ({server.id})  subnetId: live (not set), plan {network['subnet']}" in out.output
        assert f"{server.hostname} ({server.id})  copyTags: live false, plan true" in out.output
    assert "drift: 2 of 2 server(s)" in out.output
    group = LaunchSettings.model_validate(settings)
    apply_launch_settings(*clients, [(s, desired_for(s, group)) for s in servers])
    out = CliRunner().invoke(plan_cli, ["drift", file])
    assert out.exit_code == 0 and "no drift: 2 server(s) in 1 group(s)" in out.output, out.output


def test_plan_commands_fail_clearly_on_a_bad_plan_or_unreachable_aws(world, tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nphases: {}\n")
    for command in ("preview", "drift"):
        out = CliRunner().invoke(plan_cli, [command, str(bad)])
        assert out.exit_code == 2 and "Traceback" not in out.output
    app, _ = add_servers(world, 1)
    file = write_plan(tmp_path, plan_dict("drs-down", app, {"copyTags": True}))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    out = CliRunner().invoke(plan_cli, ["drift", file])
    assert out.exit_code == 3 and "error: cannot read AWS" in out.output, out.output
    assert "Traceback" not in out.output
