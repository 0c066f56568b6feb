"""DRS in plans: protection groups, drs.recovery parameters and their waves as a graph. Every broken plan must be
reported at the right line and field, never with a traceback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from ruamel.yaml import YAML

from drctl.plan_cmd import plan as plan_cli
from plans import drs, model
from plans.drs import DrsRecoveryParameters, LaunchSettings, Wave, find_cycle, wave_levels
from plans.validation import check_drs_parameters
from tests.plan_loading import load_plan, load_plan_text, parse_plan, validate_plan

THREE_TIER = Path(__file__).resolve().parents[1] / "plans" / "examples" / "three-tier.yaml"


def waves(**deps: list[str]) -> list[Wave]:
    return [Wave(name=name, protection_groups=[f"{name}-group"], depends_on=after) for name, after in deps.items()]


# --- the wave graph ---------------------------------------------------------------------------------------------

def test_diamond_runs_in_three_levels() -> None:
    diamond = waves(web=["app", "cache"], app=["db"], cache=["db"], db=[])
    assert wave_levels(diamond) == [["db"], ["app", "cache"], ["web"]]
    assert find_cycle(diamond) is None


def test_independent_waves_share_a_level_in_declaration_order() -> None:
    assert wave_levels(waves(b=[], a=[], c=["a"])) == [["b", "a"], ["c"]]
    assert wave_levels({"x": [], "y": []}) == [["x", "y"]]
    assert wave_levels([]) == []


def test_a_wave_is_one_level_after_its_deepest_dependency() -> None:
    assert wave_levels({"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"]}) == [["a"], ["b"], ["c"], ["d"]]


def test_cycle_of_three_is_returned_as_a_path() -> None:
    graph = {"start": [], "a": ["start", "b"], "b": ["c"], "c": ["a"]}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    with pytest.raises(ValueError, match="cycle: a -> b -> c -> a"):
        wave_levels(graph)


def test_self_loop_is_a_cycle() -> None:
    assert find_cycle(waves(a=["a"])) == ["a", "a"]


def test_graph_functions_are_deterministic_and_ignore_unknown_names_for_cycles() -> None:
    graph = {"a": ["b", "ghost"], "b": ["a"], "c": ["c"]}
    assert {tuple(find_cycle(graph) or []) for _ in range(5)} == {("a", "b", "a")}
    with pytest.raises(ValueError, match="depends on 'ghost', which is not a wave"):
        wave_levels(graph)


def test_long_chain_needs_no_recursion() -> None:
    chain = {f"w{i}": [f"w{i - 1}"] if i else [] for i in range(3000)}
    assert len(wave_levels(chain)) == 3000
    assert find_cycle({**chain, "w0": ["w2999"]}) is not None


# --- drs.recovery parameters ------------------------------------------------------------------------------------

def test_parameters_defaults_and_camel_case() -> None:
    params = DrsRecoveryParameters.model_validate(
        {"waves": [{"name": "db", "protectionGroups": ["db-tier"], "pauseBefore": True}], "maxConcurrentWaves": 2}
    )
    assert params.point_in_time == "latest"
    assert params.waves[0].pause_before and params.waves[0].timeout_seconds == 7200
    assert params.waves[0].max_failed_percent == 0 and params.max_concurrent_waves == 2


def test_point_in_time_is_an_aware_timestamp() -> None:
    params = DrsRecoveryParameters.model_validate(
        {"waves": [{"name": "db", "protectionGroups": ["g"]}], "pointInTime": "2026-11-26T10:00:00Z"}
    )
    assert params.point_in_time == datetime(2026, 11, 26, 10, tzinfo=UTC)


@pytest.mark.parametrize(("change", "where", "fragment"), [
    ({"waves": []}, ("waves",), "at least 1 item"),
    ({"pointInTime": "2026-11-26T10:00:00"}, ("pointInTime",), "give the timezone"),
    ({"pointInTime": "yesterday"}, ("pointInTime",), "'latest' or a timestamp"),
    ({"maxConcurrentWaves": 0}, ("maxConcurrentWaves",), "greater than or equal to 1"),
    ({"waves": [{"name": "db", "protectionGroups": []}]}, ("waves", 0, "protectionGroups"), "at least 1 item"),
    ({"waves": [{"name": "db", "protectionGroups": ["db-tier"], "maxFailedPercent": 101}]},
     ("waves", 0, "maxFailedPercent"), "less than or equal to 100"),
    ({"waves": [{"name": "db", "protectionGroups": ["db-tier"], "timeoutSeconds": 5}]},
     ("waves", 0, "timeoutSeconds"), "greater than or equal to 60"),
    ({"waves": [{"name": "db", "protectionGroups": ["db-tier"], "dependOn": ["x"]}]},
     ("waves", 0, "dependOn"), "did you mean 'dependsOn'?"),
])
def test_parameter_schema_errors(change: dict[str, object], where: tuple[object, ...], fragment: str) -> None:
    params = {"waves": [{"name": "db", "protectionGroups": ["db-tier"]}], **change}
    issues = check_drs_parameters(PLAN_DATA, "ACTIVATE", 0, 0, params)
    assert [tuple(issue.path) for issue in issues] == [(*PARAMS, *where)], issues
    assert fragment in issues[0].message


PARAMS = ("phases", "ACTIVATE", "layers", 0, "resources", 0, "parameters")
GROUPS = {name: {"selection": {"tags": {"Tier": name}}} for name in ("db-tier", "app-tier", "web-tier")}
PLAN_DATA = {"protectionGroups": GROUPS, "phases": {"ACTIVATE": {"layers": [{"name": "servers", "resources": []}]}}}


def check(*wave_list: dict[str, object], plan: dict[str, object] | None = None) -> list[tuple[tuple[object, ...], str]]:
    issues = check_drs_parameters(PLAN_DATA if plan is None else plan, "ACTIVATE", 0, 0, {"waves": list(wave_list)})
    return [(tuple(issue.path)[len(PARAMS):], issue.message) for issue in issues]


def test_valid_waves_have_no_issues() -> None:
    assert check({"name": "db", "protectionGroups": ["db-tier"]},
                 {"name": "app", "protectionGroups": ["app-tier", "web-tier"], "dependsOn": ["db"]}) == []


def test_duplicate_wave_name() -> None:
    assert check({"name": "db", "protectionGroups": ["db-tier"]}, {"name": "db", "protectionGroups": ["app-tier"]}) \
        == [(("waves", 1, "name"), "wave name 'db' is used twice (first at waves.0)")]


def test_unknown_dependency_is_named_with_a_suggestion() -> None:
    [(where, message)] = check({"name": "db", "protectionGroups": ["db-tier"]},
                               {"name": "app", "protectionGroups": ["app-tier"], "dependsOn": ["dbs"]})
    assert where == ("waves", 1, "dependsOn", 0)
    assert message == "unknown wave 'dbs' (did you mean 'db'?); the waves of this resource: db, app"


def test_wave_depending_on_itself() -> None:
    assert check({"name": "db", "protectionGroups": ["db-tier"], "dependsOn": ["db"]}) \
        == [(("waves", 0, "dependsOn", 0), "wave 'db' depends on itself")]


def test_cycle_names_its_path_at_a_depends_on_of_the_cycle() -> None:
    found = check({"name": "a", "protectionGroups": ["db-tier"], "dependsOn": ["c"]},
                  {"name": "b", "protectionGroups": ["app-tier"], "dependsOn": ["a"]},
                  {"name": "c", "protectionGroups": ["web-tier"], "dependsOn": ["b"]})
    assert found == [(("waves", 0, "dependsOn", 0), "waves depend on each other in a cycle: a -> c -> b -> a")]


def test_two_separate_cycles_are_both_reported() -> None:
    found = check({"name": "a", "protectionGroups": ["db-tier"], "dependsOn": ["b"]},
                  {"name": "b", "protectionGroups": ["app-tier"], "dependsOn": ["a"]},
                  {"name": "c", "protectionGroups": ["web-tier"], "dependsOn": ["d"]},
                  {"name": "d", "protectionGroups": ["web-tier"], "dependsOn": ["c"]})
    cycles = [message for _, message in found if "cycle" in message]
    assert cycles == ["waves depend on each other in a cycle: a -> b -> a",
                      "waves depend on each other in a cycle: c -> d -> c"]


def test_unknown_protection_group() -> None:
    [(where, message)] = check({"name": "db", "protectionGroups": ["db-teir"]})
    assert where == ("waves", 0, "protectionGroups", 0)
    assert message.startswith("unknown protection group 'db-teir' (did you mean 'db-tier'?); the plan's groups: ")


def test_unknown_protection_group_in_a_plan_without_groups() -> None:
    [(_, message)] = check({"name": "db", "protectionGroups": ["db-tier"]}, plan={})
    assert message.endswith("the plan's groups: none: add a protectionGroups section")


def test_group_in_two_waves_of_one_resource() -> None:
    assert check({"name": "db", "protectionGroups": ["db-tier"]},
                 {"name": "app", "protectionGroups": ["app-tier", "db-tier"]}) \
        == [(("waves", 1, "protectionGroups", 1), "protection group 'db-tier' is already in wave 'db': a resource "
                                                  "recovers each group once")]


def test_group_in_two_drs_resources_of_one_phase() -> None:
    earlier = {"name": "first-servers", "action": "drs.recovery",
               "parameters": {"waves": [{"name": "w", "protectionGroups": ["db-tier"]}]}}
    plan = {**PLAN_DATA, "phases": {"ACTIVATE": {"layers": [{"name": "early", "resources": [earlier]},
                                                           {"name": "late", "resources": []}]}}}
    issues = check_drs_parameters(plan, "ACTIVATE", 1, 0, {"waves": [{"name": "db", "protectionGroups": ["db-tier"]}]})
    assert [issue.message for issue in issues] == [
        "protection group 'db-tier' is already recovered in ACTIVATE by resource 'first-servers' (layer 'early'): "
        "a phase recovers each group once"]
    # ...but the earlier resource is not blamed for the later one.
    assert check_drs_parameters(plan, "ACTIVATE", 0, 0, earlier["parameters"]) == []


def test_malformed_parameters_do_not_crash_the_checks() -> None:
    for params in (None, [], {"waves": "db"}, {"waves": [None, 3, {"name": 5, "dependsOn": "x"}]}):
        assert check_drs_parameters(PLAN_DATA, "ACTIVATE", 0, 0, params)  # schema errors, no traceback
    assert check_drs_parameters(None, "ACTIVATE", 0, 0, {"waves": [{"name": "a", "protectionGroups": ["g"]}]})


# --- protection groups in plan files ----------------------------------------------------------------------------

# The line numbers below are those of this text; each broken plan changes one spot of it.
BASE = """\
name: demo
accounts:
  data:
    id: "111122223333"
  apps:
    id: "444455556666"
regions:
  primary: us-east-1
  recovery: us-west-2
defaults:
  account: apps
protectionGroups:
  db-tier:
    account: data
    selection:
      tags:
        Application: orders
        Tier: [db, database]
    launchSettings:
      copyPrivateIp: false
      perServer:
        orders-db-01:
          staticPrivateIp: 10.20.1.10
  reporting:
    impact: optional
    selection:
      hostnames: [report-01, report-02]
      sourceServerIds: [s-1234567890abcdef0]
phases:
  ACTIVATE:
    layers:
      - name: traffic
        resources:
          - name: app-dns
            action: route53.record
            parameters: {recordName: www.example.com, recoveryValue: web.us-west-2.example.com}
"""

DB = "protectionGroups.db-tier"
REPORTING = "protectionGroups.reporting"


def broken(old: str, new: str) -> str:
    assert BASE.count(old) == 1, f"{old!r} must occur once in BASE"
    return BASE.replace(old, new)


# (case id, plan text, expected line, expected field path, message fragment)
BROKEN = [
    ("bad tag value type", broken("Application: orders", "Application: 7"),
     17, f"{DB}.selection.tags.Application", "a string or a list of strings, not a number 7 (quote numbers"),
    ("tag value mapping", broken("Application: orders", "Application: {name: orders}"),
     17, f"{DB}.selection.tags.Application", "not a mapping"),
    ("empty tag value list", broken("Tier: [db, database]", "Tier: []"),
     18, f"{DB}.selection.tags.Tier", "an empty list of tag values matches no server"),
    ("empty selection",
     broken("      hostnames: [report-01, report-02]\n      sourceServerIds: [s-1234567890abcdef0]\n",
            "      hostnames: []\n"),
     26, f"{REPORTING}.selection", "select servers by tags, sourceServerIds or hostnames"),
    ("bad source server id", broken("s-1234567890abcdef0", "s-12345"),
     28, f"{REPORTING}.selection.sourceServerIds.0", "'s-12345' is not a DRS source server id"),
    ("unknown account", broken("account: data", "account: dta"),
     14, f"{DB}.account", "'dta' is not one of the plan's accounts (did you mean 'data'?)"),
    ("staticPrivateIp with copyPrivateIp", broken("copyPrivateIp: false", "copyPrivateIp: true"),
     23, f"{DB}.launchSettings.perServer.orders-db-01.staticPrivateIp",
     "staticPrivateIp needs copyPrivateIp: false, but copyPrivateIp is true (from the group's launchSettings)"),
    ("invalid IP", broken("10.20.1.10", "10.20.1.300"),
     23, f"{DB}.launchSettings.perServer.orders-db-01.staticPrivateIp", "'10.20.1.300' is not an IPv4 address"),
    ("static IP for a whole group",
     broken("      copyPrivateIp: false\n", "      copyPrivateIp: false\n      staticPrivateIp: 10.20.1.11\n"),
     21, f"{DB}.launchSettings.staticPrivateIp", "every server of the group would get this address"),
    ("same static IP twice",
     broken("staticPrivateIp: 10.20.1.10\n", "staticPrivateIp: 10.20.1.10\n        orders-db-02: "
                                              "{staticPrivateIp: 10.20.1.10}\n"),
     24, f"{DB}.launchSettings.perServer.orders-db-02.staticPrivateIp",
     "10.20.1.10 is already the staticPrivateIp of protectionGroups.db-tier.launchSettings.perServer.orders-db-01"),
    ("instanceType with rightSizing",
     broken("copyPrivateIp: false", "rightSizing: BASIC\n      instanceType: m5.large"),
     21, f"{DB}.launchSettings.instanceType", "instanceType is not used with rightSizing BASIC"),
    ("hostname listed twice", broken("[report-01, report-02]", "[report-01, Report-01]"),
     27, f"{REPORTING}.selection.hostnames.1", "'Report-01' is listed twice (first at hostnames.0)"),
    ("server in two groups",
     broken("    impact: optional\n", "    impact: optional\n    account: data\n").replace(
         "        Tier: [db, database]\n", "        Tier: [db, database]\n      hostnames: [report-02]\n"),
     29, f"{REPORTING}.selection.hostnames.1", "'report-02' is already in protection group 'db-tier'"),
    ("perServer key not in an explicit group",
     broken("    impact: optional\n", "    impact: optional\n    launchSettings: {perServer: {report-03: {}}}\n"),
     26, f"{REPORTING}.launchSettings.perServer.report-03", "'report-03' is not a server of this group"),
    ("group name", broken("  reporting:", "  reporting tools:"),
     24, "protectionGroups.reporting tools", "invalid key 'reporting tools'"),
    ("unknown group field", broken("impact: optional", "impcat: optional"),
     25, f"{REPORTING}.impcat", "did you mean 'impact'?"),
    ("bad impact", broken("impact: optional", "impact: nice-to-have"),
     25, f"{REPORTING}.impact", "'critical' or 'optional'"),
    ("bad group region", broken("    account: data\n", "    account: data\n    region: us-west2\n"),
     15, f"{DB}.region", "'us-west2' is not an AWS region name"),
]


@pytest.mark.parametrize(("text", "line", "path", "fragment"), [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_broken_protection_group_reports_line_and_field(text: str, line: int, path: str, fragment: str) -> None:
    result = parse_plan(text, "broken.yaml")
    assert result.plan is None
    assert [(e.line, e.where()) for e in result.errors] == [(line, path)], [e.render() for e in result.errors]
    assert fragment in result.errors[0].message, result.errors[0].message
    assert result.errors[0].render().startswith(f"broken.yaml:{line}: {path}: ")


def test_same_hostname_in_another_account_is_another_server() -> None:
    text = broken("        Tier: [db, database]\n", "        Tier: [db, database]\n      hostnames: [report-02]\n")
    assert parse_plan(text, "ok.yaml").errors == []


def test_group_without_account_in_an_ambiguous_plan() -> None:
    result = parse_plan(broken("defaults:\n  account: apps\n", ""), "broken.yaml")
    group_errors = [e for e in result.errors if e.where().startswith("protectionGroups")]
    assert [(e.line, e.where()) for e in group_errors] == [(22, REPORTING)]
    assert "set account here or defaults.account" in group_errors[0].message


def test_base_plan_is_valid_and_resolves_groups() -> None:
    plan = load_plan_text(BASE)
    db, reporting = plan.protection_groups["db-tier"], plan.protection_groups["reporting"]
    assert plan.account_key_for(db) == "data" and plan.account_key_for(reporting) == "apps"
    assert plan.region_for(db) == "us-west-2"
    assert db.selection.tags == {"Application": "orders", "Tier": ["db", "database"]}
    assert db.impact == "critical" and reporting.impact == "optional"
    assert validate_plan(plan) == []


def test_per_server_settings_override_the_group() -> None:
    settings = LaunchSettings.model_validate(
        {"copyPrivateIp": False, "copyTags": True, "perServer": {"db-01": {"staticPrivateIp": "10.0.0.5"}}}
    )
    server = settings.for_server("s-1234567890abcdef0", "db-01")
    assert (server.copy_private_ip, server.copy_tags, server.static_private_ip) == (False, True, "10.0.0.5")
    assert settings.for_server("other").static_private_ip is None




# --- the three-tier example -------------------------------------------------------------------------------------

def test_three_tier_example_validates() -> None:
    plan = load_plan(THREE_TIER)
    assert set(plan.protection_groups) == {"db-tier", "app-tier", "web-tier", "reporting"}
    assert validate_plan(plan) == []
    result = CliRunner().invoke(plan_cli, ["validate", str(THREE_TIER)])
    assert result.exit_code == 0, result.output


def test_three_tier_waves_are_valid() -> None:
    # db first, then app and reporting together, then web; CLEANUP names the same resource, so it terminates exactly
    # the drill instances ACTIVATE launched; no launch setting names a resource the sandbox cannot have (ids, IPs).
    text = THREE_TIER.read_text()
    result = parse_plan(text, "three-tier.yaml")
    assert [(e.where(), e.message) for e in result.errors] == []
    data = YAML(typ="safe").load(text)
    layers = data["phases"]["ACTIVATE"]["layers"]
    index = next(i for i, layer in enumerate(layers) if layer["name"] == "servers")
    resource = layers[index]["resources"][0]
    assert (resource["name"], resource["action"]) == ("servers", "drs.recovery")
    params = resource["parameters"]
    assert check_drs_parameters(data, "ACTIVATE", index, 0, params) == []
    recovery = DrsRecoveryParameters.model_validate(params)
    assert wave_levels(recovery.waves) == [["db"], ["app", "reporting"], ["web"]]
    cleanup = [r for layer in data["phases"]["CLEANUP"]["layers"] for r in layer["resources"]
               if r["action"] == "drs.recovery"]
    assert [(r["name"], r["parameters"]) for r in cleanup] == [("servers", params)]
    for group in data["protectionGroups"].values():
        settings = group.get("launchSettings", {})
        assert not {"subnetId", "securityGroupIds", "instanceProfile", "staticPrivateIp", "perServer"} & set(settings)


# --- the module stays import-light ------------------------------------------------------------------------------

def test_drs_models_share_the_plan_conventions() -> None:
    assert drs.NAME_PATTERN == model.NAME.pattern
    assert drs.REGION.pattern == model.REGION.pattern
    for key in ("alias_generator", "populate_by_name", "extra", "frozen"):
        assert drs.DrsModel.model_config[key] == model.PlanModel.model_config[key]  # type: ignore[literal-required]


def test_plan_model_does_not_need_boto3() -> None:
    import subprocess
    import sys

    code = "import sys, plans.model, plans.drs; sys.exit('boto3' in sys.modules or 'botocore' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_invalid_wave_is_a_validation_error_not_a_crash() -> None:
    with pytest.raises(ValidationError):
        Wave.model_validate({"name": "has space", "protectionGroups": ["g"]})
