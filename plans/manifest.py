"""DR Orchestrator Framework manifests: one phase as `[{"layer": N, "resources": [{"action"|"resourceType",
"resourceName", "parameters"}]}]` (or the Step Functions input `{"StatePayload": [...]}`), turned into our layers.

Names and parameter names are mapped through plans/manifest_names.py; a resource whose `action` is one of our own
actions passes through as written. `!Import x` (a YAML tag, or the string "!Import x" in JSON) and
`resolve:ssm:/path` stay in the parameters as references, resolved at run time (plans/references.py). Every problem
is reported at once, at the manifest's file, line and field, in the manifest's own terms.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from plans.catalogue import Catalogue
from plans.drs import ServerSelection
from plans.errors import LocatedError, Path, describe_errors, suggest, unknown_key_message
from plans.manifest_names import ACCOUNT_KEYS, NAMES, FrameworkName, framework_parameter, our_parameter
from plans.model import ACCOUNT_ID, REGION
from plans.parsing import ParseFailed, parse_text, read_source
from plans.references import looks_like_reference

from plans.validation import check_parameters

_LAYER_KEYS = ["layer", "resources"]
_RESOURCE_KEYS = ["action", "resourceType", "resourceName", "parameters", *ACCOUNT_KEYS]
_GROUP = "__protection_group__"  # carried from _drs to _resource, which knows the name
_NAME_MAX = 56  # our names are at most 63 characters: room for a "-NN" suffix


@dataclass(frozen=True)
class Spot:
    """Where something generated from a manifest was written: errors about it are reported there."""

    file: str
    line: int | None
    path: Path


@dataclass
class MappedPhase:
    layers: list[dict[str, Any]] = field(default_factory=list)
    protection_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[LocatedError] = field(default_factory=list)
    # Generated plan paths, relative to the phase (("layers", i) and ("layers", i, "resources", j)) and to the plan
    # (("protectionGroups", name)) -> the manifest spot they came from.
    origins: dict[Path, Spot] = field(default_factory=dict)


class _Mapper:
    def __init__(self, file: str, lines: Mapping[Path, int], base: Path, accounts: Mapping[str, str],
                 taken: set[str], catalogue: Catalogue) -> None:
        self.file, self.lines, self.base = file, lines, base
        self.catalogue = catalogue
        self.accounts = accounts  # account id -> the plan's key for it
        self.taken = taken  # resource names used in this phase so far
        self.out = MappedPhase()

    def spot(self, path: Path) -> Spot:
        full = (*self.base, *path)
        for end in range(len(full), -1, -1):
            if full[:end] in self.lines:
                return Spot(self.file, self.lines[full[:end]], full)
        return Spot(self.file, None, full)

    def error(self, path: Path, message: str) -> None:
        spot = self.spot(path)
        self.out.errors.append(LocatedError(spot.file, spot.line, spot.path, message))

    # --- layers ---------------------------------------------------------------------------------------------------

    def map(self, data: Any) -> MappedPhase:
        path: Path = ()
        if isinstance(data, Mapping) and "StatePayload" in data:  # the Framework's Step Functions input
            data, path = data["StatePayload"], ("StatePayload",)
        if not isinstance(data, list):
            self.error(path, "a manifest is a list of layers: [{\"layer\": 1, \"resources\": [...]}, ...]")
            return self.out
        if not data:
            self.error(path, "the manifest has no layers")
        numbered: list[tuple[int, int, Mapping[str, Any]]] = []
        first: dict[int, int] = {}
        for index, layer in enumerate(data):
            at = (*path, index)
            if not isinstance(layer, Mapping):
                self.error(at, "a layer is an object with 'layer' (its number) and 'resources'")
                continue
            for key in layer:
                if key not in _LAYER_KEYS:
                    self.error((*at, key), unknown_key_message(str(key), _LAYER_KEYS))
            number = layer.get("layer")
            if isinstance(number, str) and number.isdigit():
                number = int(number)
            if not isinstance(number, int) or isinstance(number, bool) or number < 0:
                self.error((*at, "layer"), f"the layer number is a whole number, not {number!r}")
                continue
            if number in first:
                self.error((*at, "layer"), f"layer {number} is given twice (first at item {first[number]})")
                continue
            first[number] = index
            numbered.append((number, index, layer))
        # Layers run in the order of their numbers, as the Framework documents, whatever their order in the file.
        for number, index, layer in sorted(numbered, key=lambda item: item[0]):
            self._layer(number, (*path, index), layer)
        return self.out

    def _layer(self, number: int, at: Path, layer: Mapping[str, Any]) -> None:
        resources = layer.get("resources")
        if not isinstance(resources, list) or not resources:
            self.error((*at, "resources"), "a layer needs a non-empty list of resources")
            return
        layer_index = len(self.out.layers)
        mapped: list[dict[str, Any]] = []
        self.out.origins[("layers", layer_index)] = self.spot(at)
        for index, resource in enumerate(resources):
            for item, where in self._resource((*at, "resources", index), resource):
                self.out.origins[("layers", layer_index, "resources", len(mapped))] = self.spot(where)
                mapped.append(item)
        self.out.layers.append({"name": f"layer-{number}", "resources": mapped})

    # --- resources ------------------------------------------------------------------------------------------------

    def _resource(self, at: Path, resource: Any) -> list[tuple[dict[str, Any], Path]]:
        if not isinstance(resource, Mapping):
            self.error(at, "a resource is an object with 'action' (or 'resourceType'), 'resourceName' and "
                           "'parameters'")
            return []
        for key in resource:
            if key not in _RESOURCE_KEYS:
                self.error((*at, key), unknown_key_message(str(key), _RESOURCE_KEYS))
        kind_key = "action" if "action" in resource else "resourceType"
        kind = resource.get(kind_key)
        if "action" in resource and "resourceType" in resource:
            self.error((*at, "resourceType"), "give 'action' or 'resourceType', not both")
        title = resource.get("resourceName")
        if not isinstance(title, str) or not title.strip():
            self.error((*at, "resourceName"), "every resource needs a resourceName (any text)")
            title = str(kind or "resource")
        if not isinstance(kind, str):
            self.error(at if kind_key not in resource else (*at, kind_key),
                       "every resource needs an 'action' (or 'resourceType'): the module to run")
            return []
        account = self._account(at, resource)
        parameters = resource.get("parameters", {})
        if kind in self.catalogue:  # one of our own actions, written our way
            return self._own(at, kind, title, account, parameters)
        entry = NAMES.get(kind)
        if entry is None:
            supported = sorted(NAMES)
            ours = sorted(self.catalogue)
            self.error((*at, kind_key), f"unknown Framework module {kind!r}{suggest(kind, supported + ours)}; "
                                        f"supported: {', '.join(supported)}; or one of our actions: {', '.join(ours)}")
            return []
        if isinstance(parameters, list):
            if not entry.list_parameters:
                self.error((*at, "parameters"), f"the parameters of {kind} are one object, not a list")
                return []
            items = [((*at, "parameters", index), item) for index, item in enumerate(parameters)]
        else:
            items = [((*at, "parameters"), parameters)]
        out: list[tuple[dict[str, Any], Path]] = []
        for where, item in items:
            if not isinstance(item, Mapping):
                self.error(where, f"the parameters of {kind} are an object of parameter names and values")
                continue
            out += self._item(kind, entry, where, item, account)
        names = self._names(title, len(out))
        for (resource_dict, where), name in zip(out, names, strict=True):
            resource_dict["name"] = name
            group = resource_dict.pop(_GROUP, None)
            if group is not None:  # DRS: the group is named after its resource, recovered in one wave
                self.out.protection_groups[name] = group
                self.out.origins[("protectionGroups", name)] = self.spot(where)
                resource_dict["parameters"] = {"waves": [{"name": name, "protectionGroups": [name]}]}
        return out

    def _own(self, at: Path, action: str, title: str, account: str | None,
             parameters: Any) -> list[tuple[dict[str, Any], Path]]:
        if not isinstance(parameters, Mapping):
            self.error((*at, "parameters"), f"the parameters of {action} are one object")
            return []
        for issue in check_parameters(self.catalogue[action].parameters, parameters, ()):
            self.error((*at, "parameters", *issue.path), issue.message)
        resource: dict[str, Any] = {"name": self._names(title, 1)[0], "action": action,
                                    "parameters": dict(parameters)}
        if account:
            resource["account"] = account
        return [(resource, at)]

    def _account(self, at: Path, fields: Mapping[str, Any]) -> str | None:
        for key in ACCOUNT_KEYS:
            if key in fields:
                return self._account_key((*at, key), fields[key])
        return None

    def _account_key(self, where: Path, value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:012d}"
        if not isinstance(value, str) or not ACCOUNT_ID.match(value):
            hint = " (references are resolved in an account, so the account itself cannot be one)" \
                if looks_like_reference(value) else ""
            self.error(where, f"an AccountId is 12 digits, not {value!r}{hint}")
            return None
        if value not in self.accounts:
            known = ", ".join(f"{key} ({account_id})" for account_id, key in self.accounts.items())
            self.error(where, f"account {value} is not one of the plan's accounts: {known}")
            return None
        return self.accounts[value]

    def _item(self, kind: str, entry: FrameworkName, where: Path, item: Mapping[str, Any],
              account: str | None) -> list[tuple[dict[str, Any], Path]]:
        spec = self.catalogue.get(entry.action)
        known = [info.alias or name for name, info in spec.parameters.model_fields.items()] if spec else None
        params: dict[str, Any] = dict(entry.fixed)
        region: str | None = None
        expanded: list[Any] | None = None
        for key, value in item.items():
            at = (*where, key)
            if key in ACCOUNT_KEYS:
                account = self._account_key(at, value) or account
            elif key in entry.region_param:
                if not isinstance(value, str) or not REGION.match(value):
                    hint = " (the region decides where references are resolved, so it cannot be one)" \
                        if looks_like_reference(value) else ""
                    self.error(at, f"{key} is an AWS region name like us-west-2, not {value!r}{hint}")
                else:
                    region = value
            elif key in entry.only:
                allowed, reason = entry.only[key]
                if str(value) not in allowed:
                    self.error(at, f"{value!r} is not supported: {reason}")
            elif key in entry.ignored:
                continue
            elif key in entry.refused:
                self.error(at, f"{key} is not supported: {entry.refused[key]}")
            elif entry.expand and key == entry.expand[0]:
                expanded = value if isinstance(value, list) else [value]
                if not expanded:
                    self.error(at, f"{key} is empty: nothing to act on")
            elif (ours := our_parameter(entry, str(key), known)) is not None:
                params[ours] = [value] if ours in entry.listed and not isinstance(value, list) else value
            else:
                self.error(at, unknown_key_message(str(key), _framework_keys(entry, known)) + f" (for {kind})")
        if entry.drs:
            return self._drs(kind, where, params, account, region)
        if entry.expand and expanded is None:
            self.error(where, f"{kind} needs {entry.expand[0]}")
            return []
        bodies = [{**params, entry.expand[1]: value} for value in expanded] if entry.expand and expanded else [params]
        out = []
        for body in bodies:
            if spec is not None:
                for issue in check_parameters(spec.parameters, body, ()):
                    self._parameter_error(entry, where, item, issue.path, issue.message)
            resource: dict[str, Any] = {"name": "", "action": entry.action, "parameters": body}
            if account:
                resource["account"] = account
            if region:
                resource["region"] = region
            out.append((resource, where))
        return out

    def _parameter_error(self, entry: FrameworkName, where: Path, item: Mapping[str, Any], loc: Path,
                         message: str) -> None:
        """An error our module's model found, told in the manifest's names, at the Framework key when it is there."""
        if not loc:
            self.error(where, message)
            return
        spelled = framework_parameter(entry, str(loc[0]))
        rest = ".".join(str(part) for part in loc[1:])
        if spelled in item:
            self.error((*where, spelled, *loc[1:]), message)
        else:
            self.error(where, f"{spelled}{'.' + rest if rest else ''}: {message}")

    def _drs(self, kind: str, where: Path, params: dict[str, Any], account: str | None,
             region: str | None) -> list[tuple[dict[str, Any], Path]]:
        """DRS servers become a protection group of the plan, recovered by a one-wave drs.recovery resource."""
        try:
            ServerSelection.model_validate(params)
        except ValidationError as exc:
            for loc, message in describe_errors(exc.errors(include_url=False), ServerSelection):
                self.error((*where, framework_parameter(NAMES[kind], str(loc[0])) if loc else "", *loc[1:]), message)
            return []
        group: dict[str, Any] = {"selection": params}
        if account:
            group["account"] = account
        if region:
            group["region"] = region
        return [({"name": "", "action": NAMES[kind].action, "parameters": {}, _GROUP: group}, where)]

    def _names(self, title: str, count: int) -> list[str]:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-._")[:_NAME_MAX].rstrip("-._") or "resource"
        wanted = [base] if count == 1 else [f"{base}-{number}" for number in range(1, count + 1)]
        names = []
        for name in wanted:
            unique, suffix = name, 2
            while unique in self.taken:
                unique, suffix = f"{name}-{suffix}", suffix + 1
            self.taken.add(unique)
            names.append(unique)
        return names


def _framework_keys(entry: FrameworkName, known: list[str] | None) -> list[str]:
    keys = [*entry.params, *entry.only, *entry.ignored, *entry.region_param, *ACCOUNT_KEYS]
    keys += [entry.expand[0]] if entry.expand else []
    mapped = set(entry.params.values())
    keys += [name[:1].upper() + name[1:] for name in known or [] if name not in mapped]
    return list(dict.fromkeys(keys))


def map_manifest(data: Any, file: str, lines: Mapping[Path, int], *, base: Path = (),
                 accounts: Mapping[str, str], taken: set[str] | None = None, catalogue: Catalogue) -> MappedPhase:
    """The layers (plan dicts) of one phase from a manifest's data. `base` is where the manifest sits in `file`
    (an inline manifest in a plan), `accounts` maps account ids to the plan's keys, `taken` the resource names the
    phase already uses."""
    return _Mapper(file, lines, base, accounts, set() if taken is None else taken, catalogue).map(data)


def expand_manifests(data: Mapping[str, Any], filename: str, lines: Mapping[Path, int], *, catalogue: Catalogue
                     ) -> tuple[dict[str, Any], list[LocatedError], dict[Path, Spot]]:
    """`data` with each phase written as `manifest: FILE` (relative to the plan's directory) or `manifest: [inline
    layers]` replaced by the layers that Framework manifest maps to; the manifests' errors; and where in the
    manifests each generated layer, resource and protection group came from."""
    phases = data.get("phases")
    if not isinstance(phases, Mapping) or not any(isinstance(p, Mapping) and "manifest" in p for p in phases.values()):
        return dict(data), [], {}
    accounts = _account_ids(data.get("accounts"))
    errors: list[LocatedError] = []
    origins: dict[Path, Spot] = {}
    groups = dict(data.get("protectionGroups") or {}) if isinstance(data.get("protectionGroups"), Mapping) else {}
    expanded: dict[Any, Any] = {}
    for key, phase in phases.items():
        if not (isinstance(phase, Mapping) and "manifest" in phase):
            expanded[key] = phase
            continue
        at: Path = ("phases", key, "manifest")
        source = phase["manifest"]
        if "layers" in phase:
            errors.append(LocatedError(filename, lines.get(at), at, "give this phase layers or a manifest, "
                                                                          "not both"))
        mapped = None
        if isinstance(source, str) and source.strip():
            manifest_file = os.path.join(os.path.dirname(filename), source)
            manifest_data, manifest_lines, read_errors = _read_manifest(manifest_file)
            errors += read_errors
            if not read_errors:
                mapped = map_manifest(manifest_data, manifest_file, manifest_lines, accounts=accounts,
                                      catalogue=catalogue)
        elif isinstance(source, list):
            mapped = map_manifest(source, filename, lines, base=at, accounts=accounts, catalogue=catalogue)
        else:
            errors.append(LocatedError(filename, lines.get(at), at, "a manifest is a file path (relative to "
                                                                          "this plan) or an inline list of layers"))
        new_phase = {k: v for k, v in phase.items() if k != "manifest"}
        if mapped is not None:
            errors += mapped.errors
            for name, group in mapped.protection_groups.items():
                spot = mapped.origins[("protectionGroups", name)]
                if name in groups:
                    errors.append(LocatedError(spot.file, spot.line, spot.path, f"resourceName gives protection "
                                               f"group {name!r}, which the plan already has: rename one of them"))
                groups[name] = group
            for relative, spot in mapped.origins.items():
                origins[("phases", key, *relative) if relative[0] == "layers" else relative] = spot
            new_phase["layers"] = mapped.layers
        expanded[key] = new_phase
    out = {**data, "phases": expanded}
    if groups:
        out["protectionGroups"] = groups
    return out, errors, origins


def _read_manifest(path: str) -> tuple[Any, dict[Path, int], list[LocatedError]]:
    try:
        text = read_source(path, "manifest")
        if not text.strip():
            raise ParseFailed(None, "the manifest is empty")
        return parse_text(text, path)
    except ParseFailed as failed:
        return None, {}, [LocatedError(path, failed.line, (), failed.message)]


def _account_ids(accounts: Any) -> dict[str, str]:
    """Account id -> the plan's key for it: a manifest names accounts by id (AccountId)."""
    ids: dict[str, str] = {}
    for key, account in (accounts.items() if isinstance(accounts, Mapping) else []):
        account_id = account.get("id") if isinstance(account, Mapping) else None
        if isinstance(account_id, int) and not isinstance(account_id, bool):
            account_id = f"{account_id:012d}"
        if isinstance(account_id, str):
            ids.setdefault(account_id, str(key))
    return ids


__all__ = ["MappedPhase", "Spot", "expand_manifests", "map_manifest"]
