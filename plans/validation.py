"""Checks of a plan that its schema cannot make alone: they need the catalogue of actions or look across the plan.

Every issue names the exact field as written in the plan file (camelCase keys, list indexes), so the loader can
point at its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from plans.drs import DRS_ACTION, DrsRecoveryParameters, find_cycle
from plans.catalogue import Catalogue
from plans.errors import Path, PlanIssue, describe_errors, suggest
from plans.hooks import LAMBDA_ACTION
from plans.model import PHASE_ORDER, Phase, Plan
from plans.references import Reference, find_references, under_reference


def validate_plan(plan: Plan, catalogue: Catalogue) -> list[PlanIssue]:
    return check_plan_data(plan.model_dump(by_alias=True), catalogue)


def check_plan_data(data: Any, catalogue: Catalogue) -> list[PlanIssue]:
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
    issues += _check_protection_groups(data, account_keys, ambiguous)
    notify_account = _mapping(data.get("notifications")).get("account")
    if isinstance(notify_account, str) and account_keys is not None and notify_account not in account_keys:
        issues.append(_issue(("notifications", "account"), _not_an_account(notify_account, account_keys)))

    phases = data.get("phases")
    if not isinstance(phases, Mapping):
        return issues
    layer_count = 0
    for phase_key, phase_plan in phases.items():
        layers = phase_plan.get("layers") if isinstance(phase_plan, Mapping) else None
        if not isinstance(layers, list):
            continue
        layer_count += len(layers)
        issues += _check_phase(data, str(phase_key), layers, account_keys, ambiguous, catalogue)
    if layer_count == 0:
        issues.append(_issue(("phases",), "the plan has no layers: there is nothing to recover"))
    return issues


def _check_phase(
    data: Mapping[str, Any], phase_key: str, layers: list[Any], account_keys: list[str] | None, ambiguous: bool,
    catalogue: Catalogue,
) -> list[PlanIssue]:
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
        issues += _check_hooks(layer_path, layer, account_keys)
        resources = layer.get("resources")
        for index, resource in enumerate(resources if isinstance(resources, list) else []):
            if not isinstance(resource, Mapping):
                continue
            path: Path = (*layer_path, "resources", index)
            issues += _check_resource(resource, path, phase, account_keys, ambiguous, catalogue)
            if resource.get("action") == DRS_ACTION:
                issues += check_drs_parameters(data, phase_key, layer_index, index, resource.get("parameters", {}))
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
    resource: Mapping[str, Any], path: Path, phase: Phase | None, account_keys: list[str] | None, ambiguous: bool,
    catalogue: Catalogue,
) -> list[PlanIssue]:
    issues: list[PlanIssue] = []
    action = resource.get("action")
    spec = catalogue.get(action) if isinstance(action, str) else None
    if isinstance(action, str) and spec is None:
        issues.append(_issue(
            (*path, "action"), f"unknown action {action!r}{suggest(action, catalogue)}; known actions: "
                               f"{', '.join(catalogue)}"
        ))
    if spec is not None and phase is not None and phase not in spec.phases:
        supported = ", ".join(p.value for p in PHASE_ORDER if p in spec.phases)
        issues.append(_issue(
            (*path, "action"), f"{action} cannot run in {phase.value}; it supports {supported}"
        ))
    parameters = resource.get("parameters", {})
    # check_drs_parameters validates drs.recovery's parameters along with their references to the rest of the plan.
    if spec is not None and action != DRS_ACTION and isinstance(parameters, Mapping):
        issues += check_parameters(spec.parameters, parameters, (*path, "parameters"))

    issues += _account_issues(path, resource.get("account"), account_keys, ambiguous)
    timeout = _mapping(parameters).get("timeoutSeconds")
    if action == LAMBDA_ACTION and isinstance(timeout, int) and timeout > LAMBDA_RESOURCE_MAX_SECONDS:
        issues.append(_issue((*path, "parameters", "timeoutSeconds"), (
            f"as a plain resource, a Lambda invoke must answer within the start activity's "
            f"{LAMBDA_RESOURCE_MAX_SECONDS} s; run a longer function as a preHook or postHook (up to 900 s)")))
    return issues


# The lifecycle's start activity has 5 minutes; a hook's start is given the hook's own timeout instead.
LAMBDA_RESOURCE_MAX_SECONDS = 240


def _check_hooks(path: Path, step: Mapping[str, Any], account_keys: list[str] | None) -> list[PlanIssue]:
    """The accounts the preHooks / postHooks of a layer or a wave name (their schema is the model's)."""
    issues: list[PlanIssue] = []
    for when in ("preHooks", "postHooks"):
        for index, hook in enumerate(_list(step.get(when))):
            account = _mapping(hook).get("account")
            if isinstance(account, str) and account_keys is not None and account not in account_keys:
                issues.append(_issue((*path, when, index, "account"), _not_an_account(account, account_keys)))
    return issues


def _account_keys(plan_data: Any) -> list[str] | None:
    accounts = _mapping(plan_data).get("accounts")
    return [str(key) for key in accounts] if isinstance(accounts, Mapping) else None


def check_drs_parameters(
    plan_data: Any, phase: str, layer_index: int, resource_index: int, params: Any
) -> list[PlanIssue]:
    """The problems of the parameters of the `drs.recovery` resource at phases.PHASE.layers.N.resources.M: their
    schema, their waves as a graph, and the protection groups they name. `plan_data` is the whole plan as written."""
    path: Path = ("phases", phase, "layers", layer_index, "resources", resource_index, "parameters")
    issues = check_parameters(DrsRecoveryParameters, params, path)
    waves = params.get("waves") if isinstance(params, Mapping) else None
    if not isinstance(waves, list):
        return issues
    waves_at: list[tuple[Path, Mapping[str, Any]]] = [
        ((*path, "waves", index), wave) for index, wave in enumerate(waves) if isinstance(wave, Mapping)
    ]
    issues += _check_wave_graph(waves_at)
    for wave_path, wave in waves_at:
        issues += _check_hooks(wave_path, wave, _account_keys(plan_data))
    groups = _mapping(_mapping(plan_data).get("protectionGroups"))
    recovered_by = _groups_of_drs_resources_before(plan_data, phase, layer_index, resource_index)
    wave_of: dict[str, str] = {}
    for wave_path, wave in waves_at:
        names = wave.get("protectionGroups")
        for index, group in enumerate(names if isinstance(names, list) else []):
            if not isinstance(group, str):
                continue
            where: Path = (*wave_path, "protectionGroups", index)
            wave_name = str(wave.get("name"))
            if group not in groups:
                known = ", ".join(map(str, groups)) or "none: add a protectionGroups section"
                issues.append(_issue(where, f"unknown protection group {group!r}{suggest(group, map(str, groups))}; "
                                            f"the plan's groups: {known}"))
            elif group in wave_of:
                other = "this wave" if wave_of[group] == wave_name else f"wave {wave_of[group]!r}"
                issues.append(_issue(where, f"protection group {group!r} is already in {other}: a resource "
                                            "recovers each group once"))
            elif group in recovered_by:
                issues.append(_issue(where, f"protection group {group!r} is already recovered in {phase} by "
                                            f"{recovered_by[group]}: a phase recovers each group once"))
            wave_of.setdefault(group, wave_name)
    return issues


def check_parameters(model: Any, params: Any, path: Path) -> list[PlanIssue]:
    """A module's parameters against its model. A value given as a reference (`!Import x`, `resolve:ssm:/y`) is
    only known at run time, so errors about it are left to the resolve activity; the other fields are still checked."""
    issues: list[PlanIssue] = []
    references: set[Path] = set()
    for loc, found in find_references(params):
        if isinstance(found, Reference):
            references.add(loc)
        else:
            issues.append(_issue((*path, *loc), str(found)))
            references.add(loc)  # reported once, as a malformed reference, not again as a wrong type
    try:
        model.model_validate(dict(params) if isinstance(params, Mapping) else params)
    except ValidationError as exc:
        for loc, message in describe_errors(exc.errors(include_url=False), model):
            if not under_reference(loc, references):
                issues.append(_issue((*path, *loc), message))
    return issues


def _check_wave_graph(waves_at: list[tuple[Path, Mapping[str, Any]]]) -> list[PlanIssue]:
    issues: list[PlanIssue] = []
    first: dict[str, Path] = {}
    for wave_path, wave in waves_at:
        name = wave.get("name")
        if isinstance(name, str) and name in first:
            issues.append(_issue((*wave_path, "name"), f"wave name {name!r} is used twice (first at "
                                                       f"waves.{first[name][-1]})"))
        elif isinstance(name, str):
            first[name] = wave_path
    graph: dict[str, list[str]] = {name: [] for name in first}
    edge_at: dict[tuple[str, str], Path] = {}
    for wave_path, wave in waves_at:
        name, deps = wave.get("name"), wave.get("dependsOn")
        for index, dep in enumerate(deps if isinstance(deps, list) else []):
            if not isinstance(dep, str):
                continue
            where: Path = (*wave_path, "dependsOn", index)
            if dep == name:
                issues.append(_issue(where, f"wave {dep!r} depends on itself"))
            elif dep not in first:
                issues.append(_issue(where, f"unknown wave {dep!r}{suggest(dep, first)}; the waves of this "
                                            f"resource: {', '.join(first) or 'none'}"))
            elif isinstance(name, str) and first[name] == wave_path and (name, dep) not in edge_at:
                graph[name].append(dep)
                edge_at[(name, dep)] = where
    # One issue per cycle: breaking the reported edge lets the next search find the next cycle, if any.
    while cycle := find_cycle(graph):
        graph[cycle[0]].remove(cycle[1])
        issues.append(_issue(edge_at[(cycle[0], cycle[1])],
                             f"waves depend on each other in a cycle: {' -> '.join(cycle)}"))
    return issues


def _groups_of_drs_resources_before(
    plan_data: Any, phase: str, layer_index: int, resource_index: int
) -> dict[str, str]:
    """The protection groups of the drs.recovery resources that come before this one in its phase, with a
    description of the resource that recovers each."""
    phase_plan = _mapping(_mapping(_mapping(plan_data).get("phases")).get(phase))
    layers = phase_plan.get("layers")
    found: dict[str, str] = {}
    for li, layer in enumerate(layers[: layer_index + 1] if isinstance(layers, list) else []):
        resources = _mapping(layer).get("resources")
        for ri, resource in enumerate(resources if isinstance(resources, list) else []):
            if (li, ri) >= (layer_index, resource_index):
                break
            resource = _mapping(resource)
            if resource.get("action") != DRS_ACTION:
                continue
            described = f"resource {resource.get('name')!r} (layer {_mapping(layer).get('name')!r})"
            for wave in _list(_mapping(resource.get("parameters")).get("waves")):
                for group in _list(_mapping(wave).get("protectionGroups")):
                    if isinstance(group, str):
                        found.setdefault(group, described)
    return found


def _check_protection_groups(
    data: Mapping[str, Any], account_keys: list[str] | None, ambiguous: bool
) -> list[PlanIssue]:
    groups = data.get("protectionGroups")
    if not isinstance(groups, Mapping):
        return []
    issues: list[PlanIssue] = []
    default_account = _mapping(data.get("defaults")).get("account") or (account_keys[0] if account_keys else None)
    recovery_region = _mapping(data.get("regions")).get("recovery")
    # A server (or static address) is unique per account and region: the same id elsewhere is another server.
    owner: dict[tuple[Any, ...], str] = {}
    for name, group in groups.items():
        if not isinstance(group, Mapping):
            continue
        group_path: Path = ("protectionGroups", str(name))
        account = group.get("account")
        issues += _account_issues(group_path, account, account_keys, ambiguous)
        where = (account or default_account, group.get("region") or recovery_region)
        selection = _mapping(group.get("selection"))
        for field in ("sourceServerIds", "hostnames"):
            listed: dict[str, int] = {}
            for index, server in enumerate(_list(selection.get(field))):
                if not isinstance(server, str):
                    continue
                server_path: Path = (*group_path, "selection", field, index)
                key = server.lower() if field == "hostnames" else server  # host names ignore case
                if key in listed:
                    issues.append(_issue(server_path, f"{server!r} is listed twice (first at {field}.{listed[key]})"))
                elif (*where, field, key) in owner:
                    other = owner[(*where, field, key)]
                    issues.append(_issue(server_path, f"{server!r} is already in protection group {other!r}: a "
                                                      "server belongs to one group"))
                listed.setdefault(key, index)
                owner.setdefault((*where, field, key), str(name))
        settings = group.get("launchSettings")
        if isinstance(settings, Mapping):
            issues += _check_launch_settings((*group_path, "launchSettings"), settings, selection, where, owner)
    return issues


def _check_launch_settings(
    path: Path, settings: Mapping[str, Any], selection: Mapping[str, Any], where: tuple[Any, ...],
    owner: dict[tuple[Any, ...], str],
) -> list[PlanIssue]:
    issues = _check_settings(path, settings, {})
    listed = _list(selection.get("sourceServerIds")) + _list(selection.get("hostnames"))
    explicit = [server for server in listed if isinstance(server, str)]
    by_tags = bool(selection.get("tags"))
    if isinstance(settings.get("staticPrivateIp"), str) and (by_tags or len(explicit) > 1):
        issues.append(_issue((*path, "staticPrivateIp"), "every server of the group would get this address: set "
                                                         "staticPrivateIp under perServer, for one server"))
    addresses = [(path, settings)]
    for key, override in _mapping(settings.get("perServer")).items():
        override_path: Path = (*path, "perServer", str(key))
        if not by_tags and explicit and str(key).lower() not in {s.lower() for s in explicit}:
            issues.append(_issue(override_path, f"{key!r} is not a server of this group{suggest(str(key), explicit)}; "
                                                f"its servers: {', '.join(explicit)}"))
        if isinstance(override, Mapping):
            issues += _check_settings(override_path, override, settings)
            addresses.append((override_path, override))
    for at, block in addresses:
        address = block.get("staticPrivateIp")
        if not isinstance(address, str):
            continue
        first = owner.setdefault((*where, "staticPrivateIp", address), ".".join(map(str, at)))
        if first != ".".join(map(str, at)):
            issues.append(_issue((*at, "staticPrivateIp"), f"{address} is already the staticPrivateIp of {first}"))
    return issues


def _check_settings(path: Path, settings: Mapping[str, Any], group: Mapping[str, Any]) -> list[PlanIssue]:
    """Contradictions in one server's settings: those of `settings` over those of its `group` (empty for the
    group's own settings). Each is reported where it is written, so a group's is not repeated for every override."""
    def effective(key: str) -> Any:
        return settings[key] if settings.get(key) is not None else group.get(key)

    def blame(*keys: str) -> Path | None:
        set_here = [key for key in keys if settings.get(key) is not None]
        return (*path, set_here[0]) if set_here else None

    issues: list[PlanIssue] = []
    inherited = " (from the group's launchSettings)" if settings.get("copyPrivateIp") is None and group else ""
    at = blame("staticPrivateIp", "copyPrivateIp")
    if at and isinstance(effective("staticPrivateIp"), str) and effective("copyPrivateIp") is True:
        issues.append(_issue(at, f"staticPrivateIp needs copyPrivateIp: false, but copyPrivateIp is true{inherited} "
                                 "(DRS would give the instance the source server's address instead)"))
    at = blame("instanceType", "rightSizing")
    if at and isinstance(effective("instanceType"), str) and effective("rightSizing") in ("BASIC", "IN_AWS"):
        issues.append(_issue(at, f"instanceType is not used with rightSizing {effective('rightSizing')} (DRS picks "
                                 "the type): set rightSizing: NONE to launch this instanceType"))
    return issues


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _account_issues(path: Path, account: Any, account_keys: list[str] | None, ambiguous: bool) -> list[PlanIssue]:
    """A resource's or a group's `account`: a key of the plan's accounts, or implied by defaults.account."""
    if isinstance(account, str) and account_keys is not None and account not in account_keys:
        return [_issue((*path, "account"), _not_an_account(account, account_keys))]
    if account is None and ambiguous:
        return [_issue(path, f"no account given and the plan has several accounts ({', '.join(account_keys or [])}) "
                             "but no defaults.account: set account here or defaults.account")]
    return []


def _not_an_account(key: str, account_keys: list[str]) -> str:
    return f"{key!r} is not one of the plan's accounts{suggest(key, account_keys)}: {', '.join(account_keys)}"


def _issue(path: Path, message: str) -> PlanIssue:
    return PlanIssue(path=path, message=message)
