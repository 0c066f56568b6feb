"""Plan and manifest text to plain data: YAML or JSON in; the data, the line of every key and item, and the errors.

Both formats go through ruamel.yaml's round-trip loader (JSON is YAML), which remembers the line of every mapping key
and sequence item, so schema and semantic errors can point at the line to edit. The plan loader and the Framework
manifest importer both read their files through here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path as FilePath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarbool import ScalarBoolean

from plans.errors import LocatedError, Path
from plans.references import IMPORT_TAG

SUFFIXES = (".yaml", ".yml", ".json")
# Aliases are shared, not copied, by the parser; expanding them is where a "billion laughs" file would blow up.
_MAX_NODES = 100_000
_STANDARD_TAG = "tag:yaml.org,2002:"


def read_source(path: str | os.PathLike[str], what: str = "") -> str:
    """The text of a plan file, or of a manifest file (what="manifest"); raises ParseFailed saying why not."""
    name, noun = str(path), f"{what} " if what else ""
    if not name.lower().endswith(SUFFIXES):
        raise ParseFailed(None, f"a {what or 'plan'} file must end in .yaml, .yml or .json")
    try:
        return FilePath(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ParseFailed(None, f"no such {noun}file") from None
    except IsADirectoryError:
        raise ParseFailed(None, f"is a directory, not a {what or 'plan'} file") from None
    except UnicodeDecodeError as exc:
        raise ParseFailed(None, f"not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise ParseFailed(None, f"cannot read the file: {exc.strerror or exc}") from None


class ParseFailed(Exception):
    """The text cannot be read as data at all: one message, at a line when there is one."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def parse_text(text: str, filename: str) -> tuple[Any, dict[Path, int], list[LocatedError]]:
    """Plain data, the 1-based line of each key and item by path, and the errors that stop validation."""
    is_json, json_data = filename.lower().endswith(".json"), None
    if is_json:
        # Strict JSON first: YAML would accept comments or bare words and explain its own errors in YAML terms.
        try:
            json_data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParseFailed(exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
        except RecursionError:
            raise ParseFailed(None, "invalid JSON: nested too deeply") from None
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
        raise ParseFailed(_mark_line(exc), f"duplicate key: {exc.problem}") from None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        if is_json:
            # Valid JSON that YAML reads differently (keys over 1024 characters): keep the data, lose the lines.
            return json_data, {}, []
        raise ParseFailed(_mark_line(exc, text), _yaml_message(exc)) from None
    converter = _Converter(filename)
    try:
        data = converter.convert(document, (), 1)
    except _TooLarge:
        raise ParseFailed(None, f"the plan expands to more than {_MAX_NODES} values (YAML aliases?)") from None
    except RecursionError:
        raise ParseFailed(None, "the plan is nested too deeply") from None
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
