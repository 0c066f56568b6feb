"""The IAM templates in deploy/iam/ against the AWS calls the orchestrator makes.

Checks here: cfn-lint is clean; every allowed action is needed (recorded in deploy/iam/calls.json, or listed below
with the reason no sandbox test records it) and every needed one allowed; no wildcard or administrator grants;
resource scoping fits each action's ARN formats (from cfn-lint's IAM data, so offline).

The calls themselves are checked once every test has run: `tests.aws_calls` records them in each process (each
pytest-xdist worker), and at the end of the session conftest merges them and applies `recorded_call_problems`:
every call the session made is allowed for its identity (hub / target) and is in calls.json. A failure there is
reported under "IAM calls" in the summary and fails the session.

Refresh calls.json after adding or removing AWS calls: `make iam-calls` (the whole suite with DR_IAM_CALLS_WRITE=1,
which writes the merged recording at the end of a passing session, then this file against the new calls.json).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode

from tests import aws_calls

ROOT = Path(__file__).resolve().parent.parent
IAM_DIR = ROOT / "deploy" / "iam"
CALLS_FILE = IAM_DIR / "calls.json"
TEMPLATES = {"hub": IAM_DIR / "hub-role.yaml", "target": IAM_DIR / "target-role.yaml"}
KINDS = tuple(TEMPLATES)

# Calls the code makes that no sandbox test reaches: action -> (activities file, operation's Python name, reason).
UNREACHED: dict[str, dict[str, tuple[str, str, str]]] = {
    "hub": {},
    "target": {
        "states:SendTaskFailure": ("activities/callback.py", "send_task_failure",
                                   "tests send failures only to hub state machines, successes to plan accounts"),
    },
}

# Allowed although the orchestrator never names them: AWS evaluates them on its behalf. action -> reason.
IMPLICIT: dict[str, dict[str, str]] = {
    # kms:Decrypt (SSM SecureStrings under a customer managed key) is no longer implicit: the worker calls it
    # itself, unwrapping KMS-wrapped payload keys (workers/encryption.py).
    "hub": {},
    "target": {
        # DRS StartRecovery / TerminateRecoveryInstances / ReverseReplication dependent actions (AWS Service
        # Authorization Reference): DRS launches, converts and cleans up with the caller's permissions.
        "drs:CreateRecoveryInstanceForDrs": "StartRecovery registers each launched recovery instance",
        "drs:DescribeReplicationConfigurationTemplates": "ReverseReplication reads the replication template",
        "drs:ListTagsForResource": "StartRecovery reads the source server's tags",
        "drs:TagResource": "StartRecovery(tags=...) tags the job it creates",
        "ec2:AttachVolume": "DRS launch", "ec2:AuthorizeSecurityGroupEgress": "DRS launch",
        "ec2:AuthorizeSecurityGroupIngress": "DRS launch", "ec2:CreateLaunchTemplate": "DRS launch",
        "ec2:CreateSnapshot": "DRS launch", "ec2:CreateTags": "DRS launch (tag on create)",
        "ec2:CreateVolume": "DRS launch", "ec2:DeleteLaunchTemplateVersions": "DRS launch",
        "ec2:DeleteSnapshot": "DRS launch", "ec2:DeleteVolume": "DRS launch / TerminateRecoveryInstances",
        "ec2:DescribeAccountAttributes": "DRS launch", "ec2:DescribeAvailabilityZones": "DRS launch",
        "ec2:DescribeImages": "DRS launch", "ec2:DescribeInstanceAttribute": "DRS launch",
        "ec2:DescribeInstanceStatus": "DRS launch", "ec2:DescribeInstanceTypes": "DRS launch",
        "ec2:DescribeLaunchTemplates": "DRS launch", "ec2:DescribeSecurityGroups": "DRS launch",
        "ec2:DescribeSnapshots": "DRS launch", "ec2:DescribeVolumes": "DRS launch / TerminateRecoveryInstances",
        "ec2:DetachVolume": "DRS launch", "ec2:ModifyInstanceAttribute": "DRS launch",
        "ec2:RevokeSecurityGroupEgress": "DRS launch", "ec2:RunInstances": "DRS launch",
        "ec2:StartInstances": "DRS launch", "ec2:StopInstances": "DRS launch",
        "ec2:TerminateInstances": "DRS launch / TerminateRecoveryInstances",
        "iam:PassRole": "DRS passes its recovery instance role to EC2; Automation hooks pass AutomationAssumeRole",
        # Tagging on create: AWS authorizes the Tags of a Create*/Restore*/Start* call as this action as well.
        "rds:AddTagsToResource": "RDS / Aurora drill copies are created with Tags",
        "elasticache:AddTagsToResource": "ElastiCache drill snapshots and copies are created with Tags",
        "memorydb:TagResource": "MemoryDB drill restores are created with Tags",
        "ssm:AddTagsToResource": "StartAutomationExecution(Tags=...) of hooks",
    },
}


# --- the templates ------------------------------------------------------------------------------------------------

@cache
def template(kind: str) -> dict[str, Any]:
    parsed, errors = decode(str(TEMPLATES[kind]))
    assert not errors, errors
    return parsed


def statements(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource name, statement) of every identity policy: trust policies grant nothing to the role."""
    for name, resource in template(kind)["Resources"].items():
        props = resource.get("Properties", {})
        docs = [props.get("PolicyDocument")] + [p.get("PolicyDocument") for p in props.get("Policies", [])]
        for doc in filter(None, docs):
            for statement in _listify(doc["Statement"]):
                yield from ((name, s) for s in _branches(statement))


def _branches(value: Any) -> Iterator[dict[str, Any]]:
    # A conditional statement counts as granted: the check is on what a deployment can hold.
    if isinstance(value, dict) and "Fn::If" in value:
        for branch in value["Fn::If"][1:]:
            yield from _branches(branch)
    elif isinstance(value, dict) and "Effect" in value:
        yield value


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed_patterns(kind: str) -> list[str]:
    return [a for _, s in statements(kind) if s["Effect"] == "Allow" for a in _listify(s.get("Action", []))]


def matches(pattern: str, action: str) -> bool:
    """IAM's action matching: case-insensitive, * any run of characters, ? one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, action, re.IGNORECASE) is not None


@cache
def iam_data() -> dict[str, Any]:
    """cfn-lint's copy of the IAM service authorization data (actions, their resource types, ARN formats)."""
    import cfnlint.data.AdditionalSpecs as specs

    return json.loads((Path(specs.__file__).parent / "Policies.json").read_text())


def expand(pattern: str) -> list[str]:
    """Every real action a pattern grants (one for a plain name)."""
    if "*" not in pattern and "?" not in pattern:
        return [pattern]
    service, _, name = pattern.partition(":")
    actions = iam_data().get(service.lower(), {}).get("Actions", {})
    return [f"{service}:{a}" for a in actions if matches(name, a)] or [pattern]


# --- the recorded calls -----------------------------------------------------------------------------------------

def recorded() -> dict[str, set[str]]:
    """The calls recorded in this process, merged with those of every xdist worker once they have finished."""
    found: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for kind, action in aws_calls.recorded():
        found[kind].add(action)
    return found


def committed() -> dict[str, set[str]]:
    return {kind: set(values) for kind, values in json.loads(CALLS_FILE.read_text()).items()}


def needed(kind: str) -> set[str]:
    return committed()[kind] | set(UNREACHED[kind]) | set(IMPLICIT[kind])


def recorded_call_problems(found: dict[str, set[str]], writing: bool) -> list[str]:
    """What is wrong with the calls a session recorded: calls the templates do not allow, and (unless calls.json is
    being rewritten from them) calls missing from calls.json."""
    problems = []
    for kind in KINDS:
        patterns = allowed_patterns(kind)
        denied = sorted(a for a in found[kind] if not any(matches(p, a) for p in patterns))
        if denied:
            problems.append(f"{TEMPLATES[kind].name} does not allow calls the {kind} identity makes: {denied}")
        missing = sorted(found[kind] - committed()[kind])
        if missing and not writing:
            problems.append(
                f"calls made this session are missing from deploy/iam/calls.json[{kind!r}]: {missing}; refresh it "
                "with `make iam-calls` (the whole suite with DR_IAM_CALLS_WRITE=1) and review the templates")
    return problems


def write_calls(found: dict[str, set[str]]) -> None:
    """`make iam-calls`: the whole suite has just passed, so the recording is the complete list of calls."""
    CALLS_FILE.write_text(json.dumps({kind: sorted(found[kind]) for kind in KINDS}, indent=2) + "\n")


# --- the checks -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_cfn_lint_is_clean(kind: str) -> None:
    found = lint_file(TEMPLATES[kind])
    assert not found, "\n".join(f"{m.rule.id} {m.message} ({m.filename}:{m.linenumber})" for m in found)


def test_the_session_check_finds_a_call_the_templates_do_not_allow() -> None:
    """The end-of-session check (conftest) on a recording with a call no template grants, and one not in calls.json."""
    found = {kind: set(committed()[kind]) for kind in KINDS}
    found["target"].add("ec2:DeleteVpc")
    problems = recorded_call_problems(found, writing=False)
    assert len(problems) == 2 and all("ec2:DeleteVpc" in p for p in problems)
    assert "target-role.yaml does not allow" in problems[0] and "missing from deploy/iam/calls.json" in problems[1]
    assert recorded_call_problems({kind: set(committed()[kind]) for kind in KINDS}, writing=False) == []


@pytest.mark.parametrize("kind", KINDS)
def test_every_allowed_action_is_needed(kind: str) -> None:
    need = needed(kind)
    unneeded = sorted({a for p in allowed_patterns(kind) for a in expand(p)
                       if not any(matches(a, n) for n in need)})
    assert not unneeded, f"{TEMPLATES[kind].name} allows actions nothing needs: {unneeded}"


@pytest.mark.parametrize("kind", KINDS)
def test_every_needed_action_is_allowed(kind: str) -> None:
    # calls.json covers tests this session may not have run: the templates must allow those too.
    patterns = allowed_patterns(kind)
    missing = sorted(a for a in needed(kind) if not any(matches(p, a) for p in patterns))
    assert not missing, f"{TEMPLATES[kind].name} does not allow needed actions: {missing}"


@pytest.mark.parametrize("kind", KINDS)
def test_exceptions_are_neither_stale_nor_duplicated(kind: str) -> None:
    calls = committed()[kind]
    assert not (calls & set(UNREACHED[kind])), "a test reaches these now: drop them from UNREACHED"
    assert not (calls & set(IMPLICIT[kind])), "the code calls these itself: drop them from IMPLICIT"
    for action, (path, python_name, _) in UNREACHED[kind].items():
        assert python_name in (ROOT / path).read_text(), f"{action}: {path} no longer calls {python_name}"


@pytest.mark.parametrize("kind", KINDS)
def test_no_wildcard_or_administrator_grants(kind: str) -> None:
    for name, statement in statements(kind):
        assert "NotAction" not in statement and "NotResource" not in statement, name
        for action in _listify(statement.get("Action", [])):
            assert action not in ("*", "*:*") and not action.endswith(":*"), f"{name}: {action}"
    text = TEMPLATES[kind].read_text()
    assert "AdministratorAccess" not in text and "PowerUserAccess" not in text


def _arn_formats(service: str, action: str) -> list[str]:
    spec = iam_data()[service]
    return [f for r in spec["Actions"][action].get("Resources", [])
            for f in spec["Resources"].get(r.lower(), {}).get("ARNFormats", [])]


def _fits(pattern: str, arn_format: str) -> bool:
    """Whether a Resource glob and an ARN format (IAM data: ${Placeholders} and .* regex) can name the same ARN:
    a sample of either side matches the other."""
    fill = {"${Partition}": "aws", "${Region}": "us-east-1", "${Account}": "123456789012"}
    sample_of_format = arn_format
    for key, value in fill.items():
        sample_of_format = sample_of_format.replace(key, value)
    sample_of_format = re.sub(r"\$\{[^}]+\}", "x", sample_of_format).replace(".*", "x")
    parts = re.split(r"(\$\{[^}]+\}|\.\*)", arn_format)
    regex = "".join("[^:]*" if part in ("${Region}", "${Account}") else ".*" if part.startswith(("${", ".*"))
                    else re.escape(part) for part in parts)
    sample_of_pattern = pattern.replace("*", "x").replace("?", "x")
    return matches(pattern, sample_of_format) or re.fullmatch(regex, sample_of_pattern) is not None


def _resource_patterns(statement: dict[str, Any]) -> list[str]:
    concrete = []
    for resource in _listify(statement["Resource"]):
        if isinstance(resource, dict):  # Fn::Sub / Ref: the shape is what matters here
            resource = resource.get("Fn::Sub", "arn:aws:*")
        resource = resource.replace("${AWS::Partition}", "aws").replace("${AWS::AccountId}", "123456789012")
        concrete.append(re.sub(r"\$\{[^}]+\}", "*", resource))
    return concrete


@pytest.mark.parametrize("kind", KINDS)
def test_scoped_resources_fit_the_actions(kind: str) -> None:
    """A Resource narrower than "*" must name an ARN the action is authorized on, or the grant is dead."""
    problems = []
    for name, statement in statements(kind):
        patterns = _resource_patterns(statement)
        if patterns == ["*"]:
            continue
        for action in _listify(statement["Action"]):
            service, _, op = action.lower().partition(":")
            if op not in iam_data().get(service, {}).get("Actions", {}):
                problems.append(f"{name}: {action} is not in cfn-lint's IAM data")
                continue
            formats = _arn_formats(service, op)
            if not formats:
                problems.append(f"{name}: {action} has no resource-level permissions: Resource must be *")
            elif not any(_fits(p, f) for p in patterns for f in formats):
                problems.append(f"{name}: {action} is authorized on {formats}, which {patterns} cannot name")
    assert not problems, "\n".join(problems)


def test_target_role_trusts_only_the_hub_role_with_the_external_id() -> None:
    role = template("target")["Resources"]["TargetRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${HubAccountId}:role/${HubRoleName}"}}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    assert template("target")["Parameters"]["ExternalId"].get("NoEcho") is True


def test_hub_role_assumes_only_the_target_role() -> None:
    grants = [s for _, s in statements("hub") if "sts:AssumeRole" in _listify(s["Action"])]
    assert [s["Resource"] for s in grants] == [{"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${TargetRoleName}"}]
