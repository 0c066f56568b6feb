"""DR Orchestrator Framework manifests: parsing and its errors, the name mapping, `!Import` / `resolve:ssm:`
references resolved at run time, and a manifest imported with `drctl plan import` and run on the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from activities.core.aws import AwsClients
from activities.core.context import ResourceContext
from contracts.activities import ResourceCall
from activities.core.references import resolve_resource
from drctl.plan_cmd import plan as plan_cli
from tests.identity_helpers import session_converter
from tests.plan_loading import load_plan, map_manifest, parse_plan
from plans.manifest_names import NAMES
from plans.model import Mode, Phase, Regions, Resource
from plans.references import Reference, ReferenceSyntaxError, find_references, parse_reference, substitute
from tests.aws_helpers import PRIMARY_REGION, RECOVERY_REGION, app_account, unique
from tests.conftest import APP_ACCOUNT, account_session
from tests.lifecycle_helpers import finish, start_run, status_of, timer_summaries
from tests.cli_helpers import drctl
from workers.main import workflow_runner
from workflows.lifecycle import DrLifecycleWorkflow
from contracts.lifecycle import RunStatus, StepStatus

EXAMPLES = Path(__file__).resolve().parents[1] / "plans" / "examples" / "framework"
ACCOUNTS = {APP_ACCOUNT: "app"}

# --- references -------------------------------------------------------------------------------------------------


def test_reference_syntax() -> None:
    assert parse_reference("!Import orders-db-id") == Reference("import", "orders-db-id")
    assert parse_reference("resolve:ssm:/app/count:3") == Reference("ssm", "/app/count:3")
    assert parse_reference("{{resolve:ssm:/app/count}}") == Reference("ssm", "/app/count")
    assert parse_reference("plain") is None and parse_reference(3) is None
    for bad in ("!Import", "!Importx", "!Import a b", "resolve:ssm:", "resolve:ssm:/a b"):
        with pytest.raises(ReferenceSyntaxError):
            parse_reference(bad)
    nested = {"a": [{"b": "!Import x"}, "resolve:ssm:/y"], "c": 1}
    assert [path for path, _ in find_references(nested)] == [("a", 0, "b"), ("a", 1)]
    assert substitute(nested, {Reference("import", "x"): "X", Reference("ssm", "/y"): "Y"}) == \
        {"a": [{"b": "X"}, "Y"], "c": 1}


def test_plan_accepts_a_reference_for_a_typed_parameter_and_still_checks_the_rest() -> None:
    text = """\
name: refs
accounts: {app: {id: "210987654321"}}
regions: {primary: us-east-1, recovery: us-west-2}
phases:
  ACTIVATE:
    layers:
      - name: web
        resources:
          - name: ok
            action: ecs.service
            parameters: {cluster: !Import web-cluster, service: web, desiredCount: "resolve:ssm:/web/count"}
          - name: broken
            action: ecs.service
            parameters: {cluster: "!Import", desiredCount: "resolve:ssm:/web/count"}
"""
    result = parse_plan(text, "refs.yaml")
    # Resource "ok" is valid though its count is text for now; "broken" still has its missing field reported.
    assert [error.render() for error in result.errors] == [
        "refs.yaml:14: phases.ACTIVATE.layers.0.resources.1.parameters.cluster: '!Import' is not a valid "
        "reference: write '!Import <export name>' (letters, digits, '-', ':')",
        "refs.yaml:14: phases.ACTIVATE.layers.0.resources.1.parameters.service: required field is missing",
    ]


# --- manifests: errors and mapping -------------------------------------------------------------------------------


def _plan(tmp_path: Path, phases: str) -> Path:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f'name: m\naccounts: {{app: {{id: "{APP_ACCOUNT}", roleName: dr-orchestrator}}}}\n'
                    f"regions: {{primary: us-east-1, recovery: us-west-2}}\nphases:\n{phases}")
    return plan


def test_manifest_errors_name_file_line_and_field_all_at_once(tmp_path: Path) -> None:
    (tmp_path / "activate.json").write_text("""\
[
  {"layer": 1, "resources": [
    {"action": "ECSS", "resourceName": "x", "parameters": {}},
    {"action": "ECS", "resourceName": "web", "AccountId": "999999999999",
     "parameters": [{"EcsClusterName": "c", "EcsServiceName": "s", "EcsDesiredSize": "many", "Colour": "red"}]},
    {"resourceType": "R53Record", "resourceName": "dns",
     "parameters": [{"HostedZoneId": "Z1", "R53RecordName": "www.x.com", "Alias": "Yes", "RecordValue": "v"}]}
  ]}
]
""")
    plan = _plan(tmp_path, "  ACTIVATE: {manifest: activate.json}\n")
    result = CliRunner().invoke(plan_cli, ["validate", str(plan)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    manifest = tmp_path / "activate.json"
    expected = [
        f"{manifest}:3: 0.resources.0.action: unknown Framework module 'ECSS' (did you mean 'ECS'?); supported: ",
        f"{manifest}:4: 0.resources.1.AccountId: account 999999999999 is not one of the plan's accounts: app",
        f"{manifest}:5: 0.resources.1.parameters.0.EcsDesiredSize: input should be a valid integer",
        f"{manifest}:5: 0.resources.1.parameters.0.Colour: unknown field 'Colour'",
        f"{manifest}:7: 0.resources.2.parameters.0.Alias: 'Yes' is not supported: route53.record switches simple",
    ]
    for fragment in expected:
        assert fragment in result.output, result.output
    assert "R53Record, UnPlannedFailoverAurora; or one of our actions: " in result.output
    ours = result.output.split("or one of our actions: ")[1].split("\n")[0]
    assert {"control.wait", "ecs.service", "route53.record"} <= set(ours.replace(",", " ").split())


def test_yaml_manifest_with_import_tags_and_its_syntax_errors(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text((EXAMPLES / "instantiate.yaml").read_text())
    (tmp_path / "bad.yaml").write_text("- layer: 1\n  resources:\n    - action: ECS\n      parameters: [\n")
    plan = _plan(tmp_path, "  INSTANTIATE: {manifest: good.yaml}\n  ACTIVATE: {manifest: bad.yaml}\n"
                           "  CLEANUP: {manifest: missing.json}\n")
    errors = [error.render() for error in parse_plan(plan.read_text(), str(plan)).errors]
    assert any(line.startswith(f"{tmp_path / 'bad.yaml'}:5: YAML syntax error") for line in errors), errors
    assert f"{tmp_path / 'missing.json'}: no such manifest file" in errors
    good = parse_plan(_plan(tmp_path, "  INSTANTIATE: {manifest: good.yaml}\n").read_text(), str(plan)).plan
    assert good is not None
    resource = good.layers(Phase.INSTANTIATE)[0].resources[0]
    assert resource.parameters == {"cluster": "!Import orders-web-cluster-name", "service": "web",
                                   "desiredCount": "resolve:ssm:/orders/web/desired-count"}


def test_an_inline_manifest_is_located_in_the_plan(tmp_path: Path) -> None:
    plan = _plan(tmp_path, """\
  REPLICATE:
    manifest:
      - layer: 1
        resources:
          - {action: R53Record, resourceName: web, parameters: [{HostedZoneId: Z1, R53RecordName: a.b, RecordValue: x}]}
""")
    errors = [error.render() for error in parse_plan(plan.read_text(), str(plan)).errors]
    assert errors == [f"{plan}:9: phases.REPLICATE.manifest.0.resources.0.parameters.0: action: route53.record "
                      "cannot run in REPLICATE; it supports INSTANTIATE, ACTIVATE, CLEANUP"]


# Each supported Framework name: a manifest resource as the Framework writes it, and what it becomes.
SAMPLES: dict[str, tuple[Any, dict[str, Any]]] = {
    "PlannedFailoverAurora": ({"GlobalClusterIdentifier": "g", "DBClusterIdentifier": "c"},
                              {"globalClusterIdentifier": "g", "recoveryClusterIdentifier": "c"}),
    "UnPlannedFailoverAurora": ({"GlobalClusterIdentifier": "g", "DBClusterIdentifier": "c",
                                 "ClusterRegion": "us-west-2"}, {"globalClusterIdentifier": "g",
                                                                 "recoveryClusterIdentifier": "c",
                                                                 "disasterMethod": "detach"}),
    "AuroraMySQL": ({"DBClusterIdentifier": "c", "DBInstanceIdentifier": ["r1"], "GlobalClusterIdentifier": "g",
                     "AccountId": APP_ACCOUNT}, {"recoveryClusterIdentifier": "c", "globalClusterIdentifier": "g"}),
    "AuroraPostgreSQL": ({"GlobalClusterIdentifier": "g", "DBClusterIdentifier": "c",
                          "PrimaryClusterIdentifier": "p"},
                         {"globalClusterIdentifier": "g", "recoveryClusterIdentifier": "c",
                          "primaryClusterIdentifier": "p"}),
    "PromoteRDSReadReplica": ({"RDSInstanceIdentifier": "!Import replica-id", "TargetClusterIdentifier": "arn",
                               "PrimaryIdentifier": "orders"},
                              {"replicaIdentifier": "!Import replica-id", "primaryIdentifier": "orders"}),
    "FailoverElastiCacheCluster": ({"GlobalReplicationGroupId": "g", "TargetRegion": "us-west-2",
                                    "TargetReplicationGroupId": "r"},
                                   {"globalReplicationGroupId": "g", "replicationGroupId": "r"}),
    "ElastiCache": ({"GlobalClusterIdentifier": "g", "DBClusterIdentifier": "r"},
                    {"globalReplicationGroupId": "g", "replicationGroupId": "r"}),
    "ECS": ([{"EcsClusterName": "c", "EcsServiceName": "s", "EcsDesiredSize": "4"}],
            {"cluster": "c", "service": "s", "desiredCount": "4"}),
    "EcsService": ([{"EcsClusterName": "c", "EcsServiceName": "s", "EcsDesiredSize": 2}],
                   {"cluster": "c", "service": "s", "desiredCount": 2}),
    "R53Record": ([{"HostedZoneId": "/hostedzone/Z123", "R53RecordName": "api.example.com", "RecordType": "CNAME",
                    "Alias": "No", "RecordValue": "dr.example.com"}],
                  {"hostedZoneId": "/hostedzone/Z123", "recordName": "api.example.com", "recordType": "CNAME",
                   "recoveryValue": "dr.example.com"}),
    "EventBridge": ([{"EventRuleName": "daily", "BusName": "default"}], {"rules": ["daily"],
                                                                          "eventBusName": "default"}),
    "EventArchive": ({"ArchiveName": "a", "EventBusName": "b", "LastMinutes": 30},
                     {"archiveName": "a", "lastMinutes": 30}),
    "AutoScaling": ({"Autoscalinggroupnames": ["worker-asg"], "DesiredCount": 3},
                    {"groupName": "worker-asg", "desiredCapacity": 3}),
    "LambdaFunction": ({"FunctionName": "f", "Payload": {"k": "v"}}, {"functionName": "f", "payload": {"k": "v"}}),
    "MemoryDB": ({"ClusterName": "m", "SnapshotName": "nightly"},
                 {"clusterName": "m", "snapshotName": "nightly", "method": "snapshot-restore"}),
    "OpenSearchService": ({"DomainName": "dom", "RepositoryName": "r", "SnapshotName": "s"},
                          {"domainName": "dom", "repository": "r", "snapshot": "s", "method": "snapshotRestore"}),
    "DRS": ({"HostNames": ["web-1"], "Tags": {"Tier": "web"}},
            {"waves": [{"name": "servers", "protectionGroups": ["servers"]}]}),
}


def test_every_supported_name_has_a_sample() -> None:
    assert set(SAMPLES) == set(NAMES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_supported_name_maps_onto_our_action(name: str) -> None:
    parameters, expected = SAMPLES[name]
    manifest = {"StatePayload": [{"layer": 1, "resources": [{"action": name, "resourceName": "servers",
                                                             "parameters": parameters}]}]}
    mapped = map_manifest(manifest, "m.json", {}, accounts=ACCOUNTS)
    assert mapped.errors == []
    [resource] = mapped.layers[0]["resources"]
    assert resource["action"] == NAMES[name].action and resource["parameters"] == expected
    if name in ("UnPlannedFailoverAurora", "FailoverElastiCacheCluster"):
        assert resource["region"] == "us-west-2"
    if name == "AuroraMySQL":
        assert resource["account"] == "app"
    if name == "DRS":
        assert mapped.protection_groups == {"servers": {"selection": {"hostnames": ["web-1"],
                                                                      "tags": {"Tier": "web"}}}}


def test_layers_run_by_number_and_list_parameters_become_one_resource_each() -> None:
    manifest = [
        {"layer": 2, "resources": [{"action": "control.wait", "resourceName": "pause", "parameters": {"seconds": 1}}]},
        {"layer": 1, "resources": [{"action": "ECS", "resourceName": "web tier (api & worker)", "parameters": [
            {"EcsClusterName": "c", "EcsServiceName": "api", "EcsDesiredSize": 2},
            {"EcsClusterName": "c", "EcsServiceName": "worker", "EcsDesiredSize": 1}]}]},
    ]
    mapped = map_manifest(manifest, "m.json", {}, accounts=ACCOUNTS)
    assert mapped.errors == []
    assert [layer["name"] for layer in mapped.layers] == ["layer-1", "layer-2"]
    assert [r["name"] for r in mapped.layers[0]["resources"]] == ["web-tier-api-worker-1", "web-tier-api-worker-2"]
    assert mapped.layers[1]["resources"] == [{"name": "pause", "action": "control.wait",
                                              "parameters": {"seconds": 1}}]


# --- resolving references (the activity's work) --------------------------------------------------------------------


def _ctx(action: str, parameters: dict[str, Any], region: str = RECOVERY_REGION) -> ResourceContext:
    call = ResourceCall(execution_id=unique("exec"), plan_name="p", mode=Mode.DRILL, phase=Phase.ACTIVATE,
                        layer="l", resource=Resource(name="res", action=action, parameters=parameters),
                        account_key="app", account=app_account(), region=region,
                        regions=Regions(primary=PRIMARY_REGION, recovery=RECOVERY_REGION))
    return ResourceContext(call=call, aws=AwsClients())


def _export_stack(region: str, exports: dict[str, str]) -> None:
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {f"Out{i}": {"Value": value, "Export": {"Name": name}}
                            for i, (name, value) in enumerate(exports.items())}}
    cfn = account_session(APP_ACCOUNT).client("cloudformation", region_name=region)
    cfn.create_stack(StackName=unique("exports"), TemplateBody=json.dumps(template))


def _ssm(region: str, name: str, value: str, kind: str = "String") -> None:
    account_session(APP_ACCOUNT).client("ssm", region_name=region).put_parameter(Name=name, Value=value, Type=kind)


def test_references_resolve_in_the_resources_account_and_region_across_export_pages(sandbox) -> None:
    prefix = unique("ref")
    _export_stack(RECOVERY_REGION, {f"{prefix}-filler-{i}": "x" for i in range(105)})  # ListExports pages at 100
    _export_stack(RECOVERY_REGION, {f"{prefix}-reason": "DNS TTL"})
    _export_stack(PRIMARY_REGION, {f"{prefix}-reason": "wrong region"})
    _ssm(RECOVERY_REGION, f"/{prefix}/seconds", "2")
    ctx = _ctx("control.wait", {"seconds": f"resolve:ssm:/{prefix}/seconds", "reason": f"!Import {prefix}-reason"})
    resolved = resolve_resource(ctx)
    assert resolved.parameters == {"seconds": "2", "reason": "DNS TTL"}
    assert ctx.call.resource.parameters["reason"] == f"!Import {prefix}-reason"  # the plan itself is unchanged


def test_missing_references_are_permanent_errors_naming_the_reference_and_resource(sandbox) -> None:
    prefix = unique("ref")
    for params, fragment, kind in (
        ({"seconds": 1, "reason": f"!Import {prefix}-nope"}, f"!Import {prefix}-nope: no CloudFormation export",
         "ExportNotFound"),
        ({"seconds": f"resolve:ssm:/{prefix}/nope"}, f"resolve:ssm:/{prefix}/nope: no SSM parameter",
         "ParameterNotFound"),
    ):
        with pytest.raises(ApplicationError) as failure:
            resolve_resource(_ctx("control.wait", params))
        assert failure.value.non_retryable and failure.value.type == kind
        assert "resource res" in failure.value.message and fragment in failure.value.message
        assert f"account {APP_ACCOUNT}, {RECOVERY_REGION}" in failure.value.message


def test_secure_strings_are_refused_and_a_wrong_value_is_named_without_echoing_it(sandbox) -> None:
    prefix = unique("ref")
    _ssm(RECOVERY_REGION, f"/{prefix}/secret", "hunter2", kind="SecureString")
    _ssm(RECOVERY_REGION, f"/{prefix}/seconds", "soon-ish")
    with pytest.raises(ApplicationError) as refused:
        resolve_resource(_ctx("control.wait", {"seconds": 1, "reason": f"resolve:ssm:/{prefix}/secret"}))
    assert refused.value.type == "SecureStringRefused" and "hunter2" not in refused.value.message
    with pytest.raises(ApplicationError) as invalid:
        resolve_resource(_ctx("control.wait", {"seconds": f"resolve:ssm:/{prefix}/seconds"}))
    message = invalid.value.message
    assert invalid.value.type == "InvalidParameters" and invalid.value.non_retryable
    assert f"parameters.seconds (from resolve:ssm:/{prefix}/seconds): " in message and "soon-ish" not in message


# --- a Framework manifest imported with `drctl plan import` and run -----------------------------------------------


class Estate:
    """An ECS service and a DNS record in the app account; the manifests find them through exports and SSM."""

    def __init__(self, tmp_path: Path) -> None:
        self.prefix = p = unique("fw")
        app = account_session(APP_ACCOUNT)
        self.ecs = app.client("ecs", region_name=RECOVERY_REGION)
        self.ecs.create_cluster(clusterName=p)
        self.ecs.register_task_definition(family="web", containerDefinitions=[{"name": "web", "image": "nginx",
                                                                               "memory": 128}])
        self.ecs.create_service(cluster=p, serviceName="web", taskDefinition="web", desiredCount=1)
        self.route53 = app.client("route53", region_name="us-east-1")
        zone = f"{p}.example.com"
        self.zone_id = self.route53.create_hosted_zone(Name=zone, CallerReference=p)["HostedZone"]["Id"]
        self.record, self.primary, self.recovery = f"www.{zone}", f"web.us-east-1.{zone}", f"web.us-west-2.{zone}"
        self._upsert(self.record, self.primary)
        _export_stack(RECOVERY_REGION, {f"{p}-cluster": p, f"{p}-zone-id": self.zone_id.split("/")[-1],
                                        f"{p}-recovery-endpoint": self.recovery})
        _ssm(RECOVERY_REGION, f"/{p}/web/desired-count", "3")
        ecs = {"action": "ECS", "resourceName": "web tier", "AccountId": APP_ACCOUNT, "parameters": [
            {"EcsClusterName": f"!Import {p}-cluster", "EcsServiceName": "web",
             "EcsDesiredSize": f"resolve:ssm:/{p}/web/desired-count"}]}
        dns = {"resourceType": "R53Record", "resourceName": "dns", "parameters": [
            {"HostedZoneId": f"!Import {p}-zone-id", "R53RecordName": self.record, "RecordType": "CNAME",
             "Alias": "No", "RecordValue": f"!Import {p}-recovery-endpoint"}]}
        pause = {"action": "control.wait", "resourceName": "ttl", "parameters": {"seconds": 1}}
        self.manifests = {"instantiate": tmp_path / "instantiate.yaml", "activate": tmp_path / "activate.json",
                          "cleanup": tmp_path / "cleanup.json"}
        self.manifests["instantiate"].write_text(
            f"- layer: 1\n  resources:\n    - action: ECS\n      resourceName: web tier\n      parameters:\n"
            f"        - {{EcsClusterName: !Import {p}-cluster, EcsServiceName: web, EcsDesiredSize: 1}}\n")
        self.manifests["activate"].write_text(json.dumps(
            [{"layer": 1, "resources": [ecs]}, {"layer": 2, "resources": [dns, pause]}], indent=2))
        self.manifests["cleanup"].write_text(json.dumps({"StatePayload": [{"layer": 1, "resources": [dns, ecs]}]}))

    def _upsert(self, name: str, value: str) -> None:
        self.route53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={"Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {"Name": name, "Type": "CNAME", "TTL": 60,
                                                      "ResourceRecords": [{"Value": value}]}}]})

    def records(self) -> dict[str, str]:
        sets = self.route53.list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]
        return {r["Name"].rstrip("."): r["ResourceRecords"][0]["Value"] for r in sets if r["Type"] == "CNAME"}

    def desired(self) -> int:
        return int(self.ecs.describe_services(cluster=self.prefix, services=["web"])["services"][0]["desiredCount"])


async def test_framework_manifests_import_and_run_in_drill_and_planned_mode(worker, sandbox, tmp_path: Path):
    estate = Estate(tmp_path)
    out = tmp_path / "imported.yaml"
    code, _, err = await drctl(
        "plan", "import", "--name", "framework-e2e", "--primary-region", "us-east-1", "--recovery-region",
        "us-west-2", "--account", f"app={APP_ACCOUNT}:dr-orchestrator", "--instantiate",
        str(estate.manifests["instantiate"]), "--activate", str(estate.manifests["activate"]), "--cleanup",
        str(estate.manifests["cleanup"]), "-o", str(out), env={})
    assert code == 0, err
    plan = load_plan(out)
    assert f"'!Import {estate.prefix}-cluster'" in out.read_text()  # references are kept, resolved when run

    drill = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    assert (await finish(drill)).status is RunStatus.COMPLETED
    # The drill scaled the service to the count from SSM and wrote a drill record with the exported endpoint;
    # CLEANUP put the count back and removed the drill record: production is as it was.
    activate = (await status_of(drill)).phases[1]
    assert activate.layers[0].resources[0].outputs["desiredCount"] == 3
    assert activate.layers[1].resources[0].outputs["value"] == estate.recovery
    assert estate.desired() == 1 and estate.records() == {estate.record: estate.primary}

    planned = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED)
    assert (await finish(planned)).status is RunStatus.COMPLETED
    assert estate.desired() == 3 and estate.records() == {estate.record: estate.recovery}
    # Only resources with references paid for the resolve activity.
    scheduled = [event.activity_task_scheduled_event_attributes.activity_id
                 async for event in planned.fetch_history_events()
                 if event.HasField("activity_task_scheduled_event_attributes")]
    assert "ACTIVATE/layer-1/web-tier/resolve" in scheduled and "ACTIVATE/layer-2/dns/resolve" in scheduled
    assert not [a for a in scheduled if a.startswith("ACTIVATE/layer-2/ttl/")]  # the wait is a timer
    assert "ttl: wait 1 s" in await timer_summaries(planned)
    replayer = Replayer(workflows=[DrLifecycleWorkflow], data_converter=session_converter(),
                        workflow_runner=workflow_runner())
    replay = await replayer.replay_workflow(await planned.fetch_history(), raise_on_replay_failure=False)
    assert replay.replay_failure is None, replay.replay_failure


async def test_a_missing_export_fails_the_resource_at_run_time(worker, sandbox, tmp_path: Path):
    estate = Estate(tmp_path)
    activate = json.loads(estate.manifests["activate"].read_text())
    activate[0]["resources"][0]["parameters"][0]["EcsClusterName"] = f"!Import {estate.prefix}-gone"
    estate.manifests["activate"].write_text(json.dumps(activate))
    plan = _plan(tmp_path, "  ACTIVATE: {manifest: activate.json}\n")
    handle = await start_run(worker.client, worker.task_queue, load_plan(plan), mode=Mode.PLANNED)
    with pytest.raises(Exception):
        await handle.result()
    web = (await status_of(handle)).phases[1].layers[0].resources[0]
    assert web.status is StepStatus.FAILED and web.error_type == "ExportNotFound"
    assert f"resource web-tier: !Import {estate.prefix}-gone: no CloudFormation export" in (web.error or "")
    assert estate.desired() == 1


def test_the_example_plan_and_its_manifests_are_valid() -> None:
    loaded = load_plan(EXAMPLES / "plan.yaml")
    assert [r.action for layer in loaded.layers(Phase.ACTIVATE) for r in layer.resources] == \
        ["rds.read_replica", "ecs.service", "route53.record"]


def test_import_prints_every_problem_and_writes_nothing(tmp_path: Path) -> None:
    manifest = tmp_path / "activate.json"
    manifest.write_text('[{"layer": 1, "resources": [\n  {"action": "Route53", "resourceName": "dns"}]}]\n')
    out = tmp_path / "plan.yaml"
    result = CliRunner().invoke(plan_cli, ["import", "--name", "bad", "--primary-region", "us-east-1",
                                           "--recovery-region", "us-east-1", "--account", f"app={APP_ACCOUNT}",
                                           "--activate", str(manifest), "-o", str(out)])
    assert result.exit_code == 2 and not out.exists() and "Traceback" not in result.output
    assert f"{manifest}:2: 0.resources.0.action: unknown Framework module 'Route53'" in result.output
    assert "drctl plan import: regions: primary and recovery regions must differ" in result.output
