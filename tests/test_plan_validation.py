"""Plan loading and validation: every broken plan must be reported at the right line and field, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from drctl.plan_cmd import plan as plan_cli
from plans.errors import PlanError
from tests.plan_loading import load_plan, load_plan_text, parse_plan, read_plan
from plans.model import Phase, Plan
from tests.plan_loading import validate_plan

EXAMPLE = Path(__file__).resolve().parents[1] / "plans" / "examples" / "web-app.yaml"

# The line numbers below are those of this text; each broken plan changes one spot of it.
BASE = """\
apiVersion: dr.orchestrator/v1
name: demo
accounts:
  hub:
    id: "123456789012"
  app:
    id: "210987654321"
    roleName: DrTarget
    externalId: {env: DR_EXTERNAL_ID}
regions:
  primary: us-east-1
  recovery: us-west-2
defaults:
  account: app
phases:
  ACTIVATE:
    layers:
      - name: database
        timeoutSeconds: 600
        resources:
          - name: orders-db
            action: rds.read_replica
            parameters: {replicaIdentifier: orders-db-replica, primaryIdentifier: orders-db}
      - name: traffic
        resources:
          - name: app-dns
            action: route53.record
            parameters:
              recordName: www.app.example.com
              ttl: 60
              recoveryValue: web.us-west-2.app.example.com
  REPLICATE:
    layers:
      - name: reverse
        resources:
          - name: orders-db
            action: rds.read_replica
            parameters: {replicaIdentifier: r, primaryIdentifier: p, newReplicaIdentifier: orders-db-new}
"""

DNS = "phases.ACTIVATE.layers.1.resources.0"


def broken(old: str, new: str) -> str:
    assert BASE.count(old) == 1, f"{old!r} must occur once in BASE"
    return BASE.replace(old, new)


# (case id, plan text, expected line, expected field path, message fragment)
BROKEN = [
    ("unknown action", broken("action: route53.record", "action: route53.recrod"),
     27, f"{DNS}.action", "unknown action 'route53.recrod' (did you mean 'route53.record'?)"),
    ("bad account id", broken('id: "210987654321"', 'id: "21098765432"'),
     7, "accounts.app.id", "12 digits"),
    ("region typo", broken("recovery: us-west-2", "recovery: us-west2"),
     12, "regions.recovery", "'us-west2' is not an AWS region name"),
    ("missing name", broken("name: demo", "description: no name"),
     1, "name", "required field is missing"),
    ("duplicate layer name", broken("- name: traffic", "- name: database"),
     24, "phases.ACTIVATE.layers.1.name", "layer name 'database' is used twice"),
    ("duplicate resource across layers", broken("- name: app-dns", "- name: orders-db"),
     26, f"{DNS}.name", "resource name 'orders-db' is used twice in ACTIVATE (first in layer 'database')"),
    ("duplicate resource in a layer",
     broken("newReplicaIdentifier: orders-db-new}\n",
            "newReplicaIdentifier: orders-db-new}\n"
            "          - {name: orders-db, action: rds.read_replica,"
            " parameters: {replicaIdentifier: r, primaryIdentifier: p}}\n"),
     39, "phases.REPLICATE.layers.0.resources.1.name", "resource name 'orders-db' is used twice in REPLICATE"),
    ("resource account unknown",
     broken("action: route53.record\n", "action: route53.record\n            account: ap\n"),
     28, f"{DNS}.account", "'ap' is not one of the plan's accounts (did you mean 'app'?)"),
    ("defaults.account unknown", broken("account: app", "account: application"),
     14, "defaults.account", "'application' is not one of the plan's accounts"),
    ("action in wrong phase",
     broken("action: rds.read_replica\n"
            "            parameters: {replicaIdentifier: r, primaryIdentifier: p, newReplicaIdentifier: orders-db-new}",
            "action: route53.record\n            parameters: {recordName: w, recoveryValue: v}"),
     37, "phases.REPLICATE.layers.0.resources.0.action",
     "route53.record cannot run in REPLICATE; it supports INSTANTIATE, ACTIVATE, CLEANUP"),
    ("bad parameter type", broken("ttl: 60", "ttl: sixty"),
     30, f"{DNS}.parameters.ttl", "valid integer"),
    ("unknown parameter", broken("ttl: 60", "tll: 60"),
     30, f"{DNS}.parameters.tll", "unknown field 'tll'; did you mean 'ttl'?"),
    ("missing parameter", broken("recordName: www.app.example.com", "zoneName: app.example.com"),
     28, f"{DNS}.parameters.recordName", "required field is missing"),
    ("externalId with two sources", broken("{env: DR_EXTERNAL_ID}", "{env: DR_EXTERNAL_ID, value: literal}"),
     9, "accounts.app.externalId", "exactly one of value, env or ssm"),
    ("externalId without roleName", broken("roleName: DrTarget", "description: no role"),
     6, "accounts.app", "externalId is only used with roleName"),
    ("primary is recovery", broken("recovery: us-west-2", "recovery: us-east-1"),
     10, "regions", "primary and recovery regions must differ"),
    ("timeout out of range", broken("timeoutSeconds: 600", "timeoutSeconds: 5"),
     19, "phases.ACTIVATE.layers.0.timeoutSeconds", "greater than or equal to 10 (got 5)"),
    ("unknown top-level key", broken("apiVersion: dr", "apiVersoin: dr"),
     1, "apiVersoin", "unknown field 'apiVersoin'; did you mean 'apiVersion'?"),
    ("wrong apiVersion", broken("orchestrator/v1", "orchestrator/v2"),
     1, "apiVersion", "unsupported apiVersion 'dr.orchestrator/v2'"),
    ("phase typo", broken("  REPLICATE:", "  REPLICATED:"),
     32, "phases.REPLICATED", "invalid key 'REPLICATED'"),
    ("layer without resources",
     BASE.split("      - name: traffic")[0] + "      - name: traffic\n        resources: []\n"
     + "  REPLICATE:" + BASE.split("  REPLICATE:")[1],
     25, "phases.ACTIVATE.layers.1.resources", "at least 1 item"),
    ("no layers", BASE.split("phases:")[0] + "phases:\n  ACTIVATE:\n    layers: []\n",
     15, "phases", "the plan has no layers"),
    ("plan name", broken("name: demo", "name: Demo_Plan"),
     2, "name", "got 'Demo_Plan'"),
]


@pytest.mark.parametrize(("text", "line", "path", "fragment"), [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_broken_plan_reports_line_and_field(text: str, line: int, path: str, fragment: str) -> None:
    result = parse_plan(text, "broken.yaml")
    assert result.plan is None
    assert [(e.line, e.where()) for e in result.errors] == [(line, path)], _rendered(result.errors)
    assert fragment in result.errors[0].message
    assert result.errors[0].render().startswith(f"broken.yaml:{line}: {path}: ")


YAML_FAILURES = [
    ("syntax error", broken("  recovery: us-west-2", " recovery: us-west-2"), 12, "YAML syntax error"),
    ("unclosed flow", broken("name: demo", "name: [demo"), 3, "expected ',' or ']'"),
    ("tab indent", broken("  account: app", "\taccount: app"), 14, "spaces, not tabs"),
    ("custom tag", broken("name: demo", "name: !secret demo"), 2, "YAML tag !secret is not allowed"),
    ("undefined alias", broken("name: demo", "name: *demo"), 2, "undefined alias 'demo'"),
    ("two documents", BASE + "---\nname: other\n", 39, "single document"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), [case[1:] for case in YAML_FAILURES],
                         ids=[case[0] for case in YAML_FAILURES])
def test_yaml_problems_report_their_line(text: str, line: int, fragment: str) -> None:
    errors = parse_plan(text, "broken.yaml").errors
    assert len(errors) == 1 and errors[0].line == line, _rendered(errors)
    assert fragment in errors[0].message


def test_every_duplicate_key_is_reported_with_its_path() -> None:
    text = broken("  primary: us-east-1\n", "  primary: us-east-1\n  primary: us-east-2\n") + "name: again\n"
    errors = parse_plan(text, "dup.yaml").errors
    assert [(e.line, e.where(), e.message) for e in errors] == [
        (12, "regions.primary", "duplicate key (first on line 11)"),
        (40, "name", "duplicate key (first on line 2)"),
    ]


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = broken("recovery: us-west-2", "recovery: us-west2")
    text = text.replace("ttl: 60", "tll: 60").replace('"210987654321"', '"2109"')
    errors = parse_plan(text, "many.yaml").errors
    assert [(e.line, e.where()) for e in errors] == [
        (7, "accounts.app.id"), (12, "regions.recovery"), (30, f"{DNS}.parameters.tll"),
    ]


def test_several_accounts_without_default_need_an_account_per_resource() -> None:
    text = broken("defaults:\n  account: app\n", "defaults:\n  maxParallelResources: 5\n")
    errors = parse_plan(text, "accounts.yaml").errors
    assert [(e.line, e.where()) for e in errors] == [
        (21, "phases.ACTIVATE.layers.0.resources.0"), (26, DNS), (36, "phases.REPLICATE.layers.0.resources.0"),
    ]
    assert "several accounts (hub, app) but no defaults.account" in errors[0].message


@pytest.mark.parametrize("text", ["", "  \n", "# only a comment\n"])
def test_empty_file(text: str) -> None:
    errors = parse_plan(text, "empty.yaml").errors
    assert len(errors) == 1 and errors[0].line is None and "empty" in errors[0].message
    assert errors[0].render().startswith("empty.yaml: the file is empty")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just words\n", "str")])
def test_a_plan_must_be_a_mapping(text: str, kind: str) -> None:
    errors = parse_plan(text, "odd.yaml").errors
    assert [(e.line, e.message.endswith(f"not a {kind}")) for e in errors] == [(1, True)]


def test_alias_bombs_are_refused() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{c}: &{c} [{', '.join(['*' + p] * 10)}]" for p, c in zip("abcde", "bcdef", strict=True)]
    errors = parse_plan("\n".join(lines) + "\n", "bomb.yaml").errors
    assert len(errors) == 1 and "more than" in errors[0].message


def test_example_plan_is_valid() -> None:
    plan = load_plan(EXAMPLE)
    assert plan.name == "web-app"
    assert list(plan.phases) == [Phase.INSTANTIATE, Phase.ACTIVATE, Phase.CLEANUP, Phase.REPLICATE]
    assert [layer.name for layer in plan.layers(Phase.ACTIVATE)] == ["database", "traffic"]
    assert plan.accounts["hub"].role_name is None
    assert plan.accounts["app"].external_id is not None and plan.accounts["app"].external_id.value
    replicate = plan.layers(Phase.REPLICATE)[0].resources[0]
    assert replicate.parameters["newReplicaIdentifier"] == "orders-db-new-replica"
    assert replicate.parameters["replicaIdentifier"] == "orders-db-replica"  # merged from the anchor
    assert validate_plan(plan) == []


def test_validate_plan_works_on_a_plan_built_in_code() -> None:
    plan = load_plan(EXAMPLE)
    data = plan.model_dump(by_alias=True)
    data["phases"][Phase.ACTIVATE]["layers"][1]["resources"][0]["action"] = "route53.nope"
    issues = validate_plan(Plan.model_validate(data))
    assert [issue.where() for issue in issues] == ["phases.ACTIVATE.layers.1.resources.0.action"]


JSON_PLAN = {
    "apiVersion": "dr.orchestrator/v1",
    "name": "json-plan",
    "accounts": {"main": {"id": "123456789012"}},
    "regions": {"primary": "eu-west-1", "recovery": "eu-central-1"},
    "phases": {"ACTIVATE": {"layers": [{"name": "dns", "resources": [
        {"name": "app-dns", "action": "route53.record",
         "parameters": {"recordName": "www.example.com", "recoveryValue": "dr.example.com"}},
    ]}]}},
}


def test_json_plan_loads() -> None:
    plan = load_plan_text(json.dumps(JSON_PLAN, indent=2), "plan.json")
    assert plan.name == "json-plan"
    assert plan.account_key_for(plan.layers(Phase.ACTIVATE)[0].resources[0]) == "main"


def test_json_errors_have_lines_too() -> None:
    data = json.loads(json.dumps(JSON_PLAN))
    data["phases"]["ACTIVATE"]["layers"][0]["resources"][0]["parameters"]["ttl"] = -1
    text = json.dumps(data, indent=2)
    line = next(n for n, row in enumerate(text.splitlines(), start=1) if '"ttl"' in row)
    with pytest.raises(PlanError) as raised:
        load_plan_text(text, "plan.json")
    assert raised.value.render() == (
        f"plan.json:{line}: phases.ACTIVATE.layers.0.resources.0.parameters.ttl: "
        "input should be greater than or equal to 0 (got -1)"
    )


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ('{"name": "x",\n "a": 1,\n}', 3, "invalid JSON"),
    ('{"name": "x", // no comments in JSON\n}', 1, "invalid JSON"),
    ('{"name": "x",\n "name": "y"}', 2, "duplicate key (first on line 1)"),
])
def test_json_syntax(text: str, line: int, fragment: str) -> None:
    errors = parse_plan(text, "plan.json").errors
    assert len(errors) == 1 and errors[0].line == line and fragment in errors[0].message


def test_file_problems(tmp_path: Path) -> None:
    assert read_plan(tmp_path / "missing.yaml").errors[0].render() == f"{tmp_path / 'missing.yaml'}: no such file"
    assert "must end in .yaml" in read_plan(tmp_path / "plan.txt").errors[0].message
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    assert "not UTF-8" in read_plan(tmp_path / "latin1.yaml").errors[0].message
    with pytest.raises(PlanError, match="no such file"):
        load_plan(tmp_path / "missing.yml")


def test_cli_validate_broken_plan(tmp_path: Path) -> None:
    broken_file = tmp_path / "broken.yaml"
    broken_file.write_text(broken("ttl: 60", "tll: 60"))
    result = CliRunner().invoke(plan_cli, ["validate", str(broken_file)])
    assert result.exit_code == 2
    assert f"{broken_file}:30: {DNS}.parameters.tll: unknown field 'tll'" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_top_level_cli_has_plan_validate(tmp_path: Path) -> None:
    cli = pytest.importorskip("drctl.cli").cli  # needs every command module of drctl to be importable
    broken_file = tmp_path / "broken.yaml"
    broken_file.write_text(broken("recovery: us-west-2", "recovery: us-west2"))
    result = CliRunner().invoke(cli, ["plan", "validate", str(broken_file)])
    assert result.exit_code == 2
    assert f"{broken_file}:12: regions.recovery: " in result.output and "Traceback" not in result.output


def test_cli_validate_valid_and_missing(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(plan_cli, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0
    assert result.output.startswith(f"OK: {EXAMPLE} (plan web-app: 4 phases, 5 layers, 7 resources)")
    result = runner.invoke(plan_cli, ["validate", str(EXAMPLE), str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and f"{tmp_path / 'nope.yaml'}: no such file" in result.output
    assert "Traceback" not in result.output


def test_cli_show_prints_the_tree() -> None:
    result = CliRunner().invoke(plan_cli, ["show", str(EXAMPLE)])
    assert result.exit_code == 0
    assert "  2. layer traffic  (timeout 900s)" in result.output
    assert "app-dns  route53.record  account app  region us-west-2" in result.output
    assert "hub  123456789012  the worker's own credentials" in result.output


def _rendered(errors: list) -> str:
    return "\n".join(error.render() for error in errors)
