"""Reading a plan file: YAML or JSON in; a validated Plan, or every problem found with its file, line and field.

The text becomes data in plans/parsing.py (which keeps each key's line); Framework manifests are expanded
(plans/manifest.py); then the schema (plans/model.py) and the cross-plan checks (plans/validation.py, against the
catalogue of actions the caller passes) run, and every problem is reported at its file and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from plans.catalogue import Catalogue
from plans.errors import LocatedError, Path, PlanError, describe_errors
from plans.manifest import Spot, expand_manifests
from plans.model import Plan
from plans.parsing import SUFFIXES, ParseFailed, parse_text, read_source
from plans.validation import check_plan_data

_DUPLICATE = re.compile(r"^(?:layer|resource) name ('.*') is used twice")


@dataclass
class LoadResult:
    file: str
    plan: Plan | None = None
    errors: list[LocatedError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.plan is not None and not self.errors


def load_plan(path: str | os.PathLike[str], *, catalogue: Catalogue) -> Plan:
    """The plan in `path`, checked against the actions in `catalogue`; raises PlanError listing every problem."""
    return _plan_or_raise(read_plan(path, catalogue=catalogue))


def load_plan_text(text: str, filename: str = "<plan>.yaml", *, catalogue: Catalogue) -> Plan:
    """The plan in `text`; `filename` names it in errors, and a .json name makes it parsed as strict JSON."""
    return _plan_or_raise(parse_plan(text, filename, catalogue=catalogue))


def read_plan(path: str | os.PathLike[str], *, catalogue: Catalogue) -> LoadResult:
    """Like load_plan, but returns the problems instead of raising."""
    try:
        text = read_source(path)
    except ParseFailed as failed:
        return _failed(str(path), failed.line, failed.message)
    return parse_plan(text, str(path), catalogue=catalogue)


def parse_plan(text: str, filename: str = "<plan>.yaml", *, catalogue: Catalogue) -> LoadResult:
    """Like load_plan_text, but returns the problems instead of raising."""
    if not text.strip():
        return _failed(filename, None, "the file is empty")
    try:
        data, lines, errors = parse_text(text, filename)
    except ParseFailed as failed:
        return _failed(filename, failed.line, failed.message)
    if errors:
        return LoadResult(filename, errors=errors)
    if data is None:
        return _failed(filename, None, "the file is empty (only comments)")
    if not isinstance(data, Mapping):
        return _failed(filename, 1, f"a plan is a mapping (apiVersion, name, accounts, regions, phases), "
                                    f"not a {_kind(data)}")
    return validate_plan_data(data, filename, lines, catalogue=catalogue)


def validate_plan_data(data: Mapping[str, Any], filename: str, lines: Mapping[Path, int] | None = None, *,
                       catalogue: Catalogue) -> LoadResult:
    """A plan from plain data (as a file holds it); `lines` locates its keys in `filename`. Phases given as
    Framework manifests (`manifest:`) are expanded first, relative to the directory of `filename`."""
    lines = lines or {}
    data, manifest_errors, origins = expand_manifests(data, filename, lines, catalogue=catalogue)
    plan: Plan | None = None
    problems: list[tuple[Path, str]] = []
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(exc.errors(include_url=False), Plan)
    problems = _merge(problems, [(tuple(issue.path), issue.message) for issue in check_plan_data(data, catalogue)])
    if not problems and not manifest_errors:
        return LoadResult(filename, plan=plan)
    located = list(manifest_errors)
    broken = {_manifest_of(error.file, error.path) for error in manifest_errors}
    for path, message in problems:
        origin = _origin_of(path, origins)
        if origin is None:
            located.append(LocatedError(filename, _line_of(path, lines), path, message))
            continue
        rest = path[len(origin[0]):]
        # A manifest's parameters were checked while mapping, in its own names; and once a manifest has errors,
        # what the plan then finds in its half-mapped layers would only repeat them.
        spot = origin[1]
        if _manifest_of(spot.file, spot.path) in broken or rest[:1] == ("parameters",):
            continue
        located.append(LocatedError(spot.file, spot.line, spot.path,
                                    f"{'.'.join(map(str, rest))}: {message}" if rest else message))
    located.sort(key=lambda error: (error.file != filename, error.file, error.line or 0))
    return LoadResult(filename, errors=located)


def _manifest_of(file: str, path: Path) -> tuple[str, Path]:
    """Which manifest a location is in: a file, or an inline manifest (phases.P.manifest) of the plan."""
    return file, tuple(path[:3]) if path[:1] == ("phases",) else ()


def _origin_of(path: Path, origins: Mapping[Path, Spot]) -> tuple[Path, Spot] | None:
    for end in range(len(path), 0, -1):
        if path[:end] in origins:
            return path[:end], origins[path[:end]]
    return None


def _merge(schema: list[tuple[Path, str]], semantic: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """Schema and semantic problems, each reported once."""
    # The model rejects duplicate names too, but blames the whole phase or layer, and only when all inside it is
    # valid; the semantic check names the very field every time, so its report replaces the model's.
    # A semantic duplicate sits at phases.P.layers.N.name or phases.P.layers.N.resources.M.name: three levels below
    # the phase or layer that the model blames.
    named = {(path[:-3], _duplicated(message)) for path, message in semantic if _duplicated(message) is not None}
    kept = [(path, message) for path, message in schema if (path, _duplicated(message)) not in named]
    # The schema's error on a field says it better than a semantic one on the same field (a malformed action).
    seen = {path for path, _ in kept}
    return kept + [(path, message) for path, message in semantic if path not in seen]


def _duplicated(message: str) -> str | None:
    match = _DUPLICATE.match(message)
    return match[0] if match else None


def _plan_or_raise(result: LoadResult) -> Plan:
    if result.plan is None or result.errors:
        raise PlanError(result.errors)
    return result.plan


def _failed(file: str, line: int | None, message: str, path: Path = ()) -> LoadResult:
    return LoadResult(file, errors=[LocatedError(file, line, path, message)])


def _line_of(path: Path, lines: Mapping[Path, int]) -> int | None:
    """The line of the deepest part of `path` that is in the file: a missing field points at its parent mapping."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _kind(data: Any) -> str:
    return "list" if isinstance(data, list) else type(data).__name__


__all__ = ["LoadResult", "PlanError", "SUFFIXES", "load_plan", "load_plan_text", "parse_plan",
           "read_plan", "validate_plan_data"]
