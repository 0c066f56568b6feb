"""Reading a plan file: YAML or JSON in; a validated Plan, or every problem found with its file, line and field.

Both formats go through ruamel.yaml's round-trip loader (JSON is YAML), which remembers the line of every mapping key
and sequence item, so schema and semantic errors can point at the line to edit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarbool import ScalarBoolean

from plans.errors import LocatedError, Path, PlanError, describe_errors
from plans.manifest import Spot, expand_manifests
from plans.model import Plan
from plans.references import IMPORT_TAG
from plans.validation import check_plan_data

SUFFIXES = (".yaml", ".yml", ".json")
# Aliases are shared, not copied, by the parser; expanding them is where a "billion laughs" file would blow up.
_MAX_NODES = 100_000
_STANDARD_TAG = "tag:yaml.org,2002:"
_DUPLICATE = re.compile(r"^(?:layer|resource) name ('.*') is used twice")


@dataclass
class LoadResult:
    file: str
    plan: Plan | None = None
    errors: list[LocatedError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.plan is not None and not self.errors


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """The plan in `path`; raises PlanError listing every problem."""
    return _plan_or_raise(read_plan(path))


def load_plan_text(text: str, filename: str = "<plan>.yaml") -> Plan:
    """The plan in `text`; `filename` names it in errors, and a .json name makes it parsed as strict JSON."""
    return _plan_or_raise(parse_plan(text, filename))


def read_plan(path: str | os.PathLike[str]) -> LoadResult:
    """Like load_plan, but returns the problems instead of raising."""
    name = str(path)
    if not name.lower().endswith(SUFFIXES):
        return _failed(name, None, "a plan file must end in .yaml, .yml or .json")
    try:
        text = FilePath(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return _failed(name, None, "no such file")
    except IsADirectoryError:
        return _failed(name, None, "is a directory, not a plan file")
    except UnicodeDecodeError as exc:
        return _failed(name, None, f"not UTF-8 text (bad byte at offset {exc.start})")
    except OSError as exc:
        return _failed(name, None, f"cannot read the file: {exc.strerror or exc}")
    return parse_plan(text, name)


def parse_plan(text: str, filename: str = "<plan>.yaml") -> LoadResult:
    """Like load_plan_text, but returns the problems instead of raising."""
    if not text.strip():
        return _failed(filename, None, "the file is empty")
    try:
        data, lines, errors = _parse(text, filename)
    except _Failed as failed:
        return _failed(filename, failed.line, failed.message)
    if errors:
        return LoadResult(filename, errors=errors)
    if data is None:
        return _failed(filename, None, "the file is empty (only comments)")
    if not isinstance(data, Mapping):
        return _failed(filename, 1, f"a plan is a mapping (apiVersion, name, accounts, regions, phases), "
                                    f"not a {_kind(data)}")
    return validate_plan_data(data, filename, lines)


def validate_plan_data(data: Mapping[str, Any], filename: str, lines: Mapping[Path, int] | None = None) -> LoadResult:
    """A plan from plain data (as a file holds it); `lines` locates its keys in `filename`. Phases given as
    Framework manifests (`manifest:`) are expanded first, relative to the directory of `filename`."""
    lines = lines or {}
    data, manifest_errors, origins = expand_manifests(data, filename, lines)
    plan: Plan | None = None
    problems: list[tuple[Path, str]] = []
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(exc.errors(include_url=False), Plan)
    problems = _merge(problems, [(tuple(issue.path), issue.message) for issue in check_plan_data(data)])
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


class _Failed(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def _parse(text: str, filename: str) -> tuple[Any, dict[Path, int], list[LocatedError]]:
    """Plain data, the 1-based line of each key and item by path, and the errors that stop validation."""
    is_json, json_data = filename.lower().endswith(".json"), None
    if is_json:
        # Strict JSON first: YAML would accept comments or bare words and explain its own errors in YAML terms.
        try:
            json_data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Failed(exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
        except RecursionError:
            raise _Failed(None, "invalid JSON: nested too deeply") from None
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a reused anchor is legal YAML; the warning would only clutter output
            duplicates = _duplicate_keys(yaml.compose(text), (), set(), [])
            if duplicates:
                return None, {}, [dataclasses.replace(error, file=filename) for error in duplicates]
            document = yaml.load(text)
    except DuplicateKeyError as exc:  # _duplicate_keys should have found it first; kept as a safety net
        raise _Failed(_mark_line(exc), f"duplicate key: {exc.problem}") from None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        if is_json:
            # Valid JSON that YAML reads differently (keys over 1024 characters): keep the data, lose the lines.
            return json_data, {}, []
        raise _Failed(_mark_line(exc, text), _yaml_message(exc)) from None
    converter = _Converter(filename)
    try:
        data = converter.convert(document, (), 1)
    except _TooLarge:
        raise _Failed(None, f"the plan expands to more than {_MAX_NODES} values (YAML aliases?)") from None
    except RecursionError:
        raise _Failed(None, "the plan is nested too deeply") from None
    return data, converter.lines, converter.errors


def _duplicate_keys(node: Node | None, path: Path, seen: set[int], found: list[LocatedError]) -> list[LocatedError]:
    """Every duplicate key, looked for in the composed node tree: the constructor stops at the first one."""
    if node is None or id(node) in seen:  # an alias: its keys were checked where its anchor is
        return found
    seen.add(id(node))
    if isinstance(node, MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or str(key_node.tag) == _STANDARD_TAG + "merge":
                continue
            key, line = (str(key_node.tag), key_node.value), key_node.start_mark.line + 1
            if key in first:
                message = f"duplicate key (first on line {first[key]})"
                found.append(LocatedError("", line, (*path, key_node.value), message))
            else:
                first[key] = line
            _duplicate_keys(value_node, (*path, key_node.value), seen, found)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _duplicate_keys(item, (*path, index), seen, found)
    return found


class _TooLarge(Exception):
    pass


class _Converter:
    """ruamel's round-trip objects to plain Python data (what pydantic and the rest of the code expect)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: dict[Path, int] = {}
        self.errors: list[LocatedError] = []
        self._nodes = 0
        self._open: set[int] = set()  # collections being converted: one seen again is a recursive alias

    def convert(self, value: Any, path: Path, line: int) -> Any:
        self._nodes += 1
        if self._nodes > _MAX_NODES:
            raise _TooLarge
        tag = getattr(getattr(value, "tag", None), "value", None)
        if tag == IMPORT_TAG and isinstance(value, TaggedScalar):
            # CloudFormation's `!Import name`, as Framework manifests write it: kept as the reference "!Import name"
            # (plans/references.py), resolved when the resource runs.
            return f"{IMPORT_TAG} {value.value}"
        if tag and not str(tag).startswith(_STANDARD_TAG):
            self.errors.append(LocatedError(self.filename, line, path, f"YAML tag {tag} is not allowed in a plan"))
        if isinstance(value, TaggedScalar):
            return value.value
        if isinstance(value, CommentedMap | CommentedSeq):
            if id(value) in self._open:
                self.errors.append(LocatedError(self.filename, line, path, "a YAML alias refers to itself"))
                return None
            self._open.add(id(value))
            try:
                return self._mapping(value, path, line) if isinstance(value, CommentedMap) else self._seq(value, path, line)
            finally:
                self._open.discard(id(value))
        return _scalar(value)

    def _mapping(self, mapping: CommentedMap, path: Path, line: int) -> dict[Any, Any]:
        if not path:
            self.lines[()] = mapping.lc.line + 1 if mapping.lc.line is not None else line
        out = {}
        for key, value in mapping.items():
            plain_key = _scalar(key) if isinstance(key, str | int | float | bool) else str(key)
            # Keys brought in by a merge (<<: *anchor) have no position of their own: use the mapping's.
            key_line = _position_line(mapping.lc.key, key, line)
            self.lines[(*path, plain_key)] = key_line
            out[plain_key] = self.convert(value, (*path, plain_key), key_line)
        return out

    def _seq(self, seq: CommentedSeq, path: Path, line: int) -> list[Any]:
        out = []
        for index, value in enumerate(seq):
            item_line = _position_line(seq.lc.item, index, line)
            self.lines[(*path, index)] = item_line
            out.append(self.convert(value, (*path, index), item_line))
        return out


def _position_line(lookup: Any, where: Any, default: int) -> int:
    # ruamel records no position for merged keys, nor for the items of some tagged collections
    try:
        return int(lookup(where)[0]) + 1
    except (KeyError, IndexError, TypeError):
        return default


def _scalar(value: Any) -> Any:
    # ruamel keeps formatting in subclasses (hex ints, block strings, anchored booleans that subclass int)
    if isinstance(value, ScalarBoolean):
        return bool(value)
    for plain in (bool, int, float, str):
        if isinstance(value, plain):
            return plain(value)
    return value


def _line_of(path: Path, lines: dict[Path, int]) -> int | None:
    """The line of the deepest part of `path` that is in the file: a missing field points at its parent mapping."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _mark_line(exc: BaseException, text: str = "") -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return int(mark.line) + 1
    position = getattr(exc, "position", None)  # a ReaderError (bad character) has only an offset
    if isinstance(position, int):
        return text.count("\n", 0, position) + 1
    return None


def _yaml_message(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "YAML syntax error: nested too deeply"
    if not isinstance(exc, MarkedYAMLError):
        return f"YAML syntax error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if exc.problem and exc.context and exc.problem.startswith("but "):  # "expected X" / "but found Y"
        return f"YAML syntax error: {exc.context}, {exc.problem}"
    message = f"YAML syntax error: {exc.problem or exc.context}"
    if exc.problem and exc.context:
        start = f" started on line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
        message += f" ({exc.context}{start})"
    if exc.problem and "'\\t'" in exc.problem:
        message += "; indent YAML with spaces, not tabs"
    return message


def _kind(data: Any) -> str:
    return "list" if isinstance(data, list) else type(data).__name__


__all__ = ["LoadResult", "PlanError", "SUFFIXES", "load_plan", "load_plan_text", "parse_plan",
           "read_plan", "validate_plan_data"]
