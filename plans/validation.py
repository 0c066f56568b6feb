"""Checks of a plan that its schema cannot make alone: they need the module registry or look across the plan.

Every issue names the exact field as written in the plan file (camelCase keys, list indexes), so the loader can
point at its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from activities import registry
from activities.contract import PlanIssue
from plans.errors import Path, describe_errors, suggest
from plans.model import PHASE_ORDER, Phase, Plan


def validate_plan(plan: Plan) -> list[PlanIssue]:
    return check_plan_data(plan.model_dump(by_alias=True))


def check_plan_data(data: Any) -> list[PlanIssue]:
    """The checks on a plan as written (plain data), even one the schema rejects.

    Working on plain data lets the loader report these issues next to the schema errors, so an operator sees every
    problem in one run. Parts too malformed to check are skipped: the schema errors already cover them.
    """
    if not isinstance(data, Mapping):
        return []
    issues: list[PlanIssue] = []
    accounts = data.get("accounts")
    account_keys = [str(key) for key in accounts] if isinstance(accounts, Mapping) else None
    defaults = data.get("defaults")
    default_account = defaults.get("account") if isinstance(defaults, Mapping) else None
    if isinstance(default_account, str) and account_keys is not None and default_account not in account_keys:
        issues.append(_issue(("defaults", "account"), _not_an_account(default_account, account_keys)))
    # Several accounts and no default: a resource without an account would land in whichever account comes first.
    ambiguous = account_keys is not None and len(account_keys) > 1 and default_account is None

    phases = data.get("phases")
    if not isinstance(phases, Mapping):
        return issues
    layer_count = 0
    for phase_key, phase_plan in phases.items():
        layers = phase_plan.get("layers") if isinstance(phase_plan, Mapping) else None
        if not isinstance(layers, list):
            continue
        layer_count += len(layers)
        issues += _check_phase(str(phase_key), layers, account_keys, ambiguous)
    if layer_count == 0:
        issues.append(_issue(("phases",), "the plan has no layers: there is nothing to recover"))
    return issues


def _check_phase(phase_key: str, layers: list[Any], account_keys: list[str] | None, ambiguous: bool) -> list[PlanIssue]:
    phase = Phase(phase_key) if phase_key in Phase.__members__ else None
    issues: list[PlanIssue] = []
    layer_names: set[str] = set()
    # Status queries and activity ids are keyed by phase, layer and resource name, so a resource name may appear
    # only once in a phase, even in different layers.
    resource_layer: dict[str, str] = {}
    for layer_index, layer in enumerate(layers):
        if not isinstance(layer, Mapping):
            continue
        layer_path: Path = ("phases", phase_key, "layers", layer_index)
        layer_name = layer.get("name")
        if isinstance(layer_name, str) and layer_name in layer_names:
            issues.append(_issue((*layer_path, "name"), f"layer name {layer_name!r} is used twice in {phase_key}"))
        elif isinstance(layer_name, str):
            layer_names.add(layer_name)
        resources = layer.get("resources")
        for index, resource in enumerate(resources if isinstance(resources, list) else []):
            if not isinstance(resource, Mapping):
                continue
            path: Path = (*layer_path, "resources", index)
            issues += _check_resource(resource, path, phase, account_keys, ambiguous)
            name = resource.get("name")
            if isinstance(name, str) and name in resource_layer:
                issues.append(_issue(
                    (*path, "name"),
                    f"resource name {name!r} is used twice in {phase_key} (first in layer {resource_layer[name]!r}); "
                    "names must be unique within a phase",
                ))
            elif isinstance(name, str):
                resource_layer[name] = str(layer_name)
    return issues


def _check_resource(
    resource: Mapping[str, Any], path: Path, phase: Phase | None, account_keys: list[str] | None, ambiguous: bool
) -> list[PlanIssue]:
    issues: list[PlanIssue] = []
    action = resource.get("action")
    module = registry.get(action) if isinstance(action, str) else None
    if isinstance(action, str) and module is None:
        known = registry.actions()
        issues.append(_issue(
            (*path, "action"), f"unknown action {action!r}{suggest(action, known)}; known actions: {', '.join(known)}"
        ))
    if module is not None and phase is not None and phase not in module.phases:
        supported = ", ".join(p.value for p in PHASE_ORDER if p in module.phases)
        issues.append(_issue(
            (*path, "action"), f"{action} cannot run in {phase.value}; it supports {supported}"
        ))
    parameters = resource.get("parameters", {})
    if module is not None and isinstance(parameters, Mapping):
        try:
            module.Parameters.model_validate(dict(parameters))
        except ValidationError as exc:
            for loc, message in describe_errors(exc.errors(include_url=False), module.Parameters):
                issues.append(_issue((*path, "parameters", *loc), message))

    account = resource.get("account")
    if isinstance(account, str) and account_keys is not None and account not in account_keys:
        issues.append(_issue((*path, "account"), _not_an_account(account, account_keys)))
    elif account is None and ambiguous:
        issues.append(_issue(
            path,
            f"no account given and the plan has several accounts ({', '.join(account_keys or [])}) but no "
            "defaults.account: set account here or defaults.account",
        ))
    return issues


def _not_an_account(key: str, account_keys: list[str]) -> str:
    return f"{key!r} is not one of the plan's accounts{suggest(key, account_keys)}: {', '.join(account_keys)}"


def _issue(path: Path, message: str) -> PlanIssue:
    return PlanIssue(path=path, message=message)
