"""Plan errors an operator can act on: each names the file, the line and the field, never a traceback."""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class LocatedError:
    file: str
    line: int | None  # 1-based; None when the problem is the file itself (missing, unreadable)
    path: Path = ()
    message: str = ""

    def where(self) -> str:
        return ".".join(str(part) for part in self.path)

    def render(self) -> str:
        parts = [self.file if self.line is None else f"{self.file}:{self.line}"]
        if self.path:
            parts.append(self.where())
        parts.append(self.message)
        return ": ".join(parts)


class PlanIssue(BaseModel):
    """One problem found by the checks that look across a plan, at a field path as written (camelCase, indexes)."""

    path: tuple[str | int, ...]
    message: str

    def where(self) -> str:
        return ".".join(str(p) for p in self.path) or "(plan)"


class PlanError(Exception):
    """A plan that cannot be used, with every problem found in it (not just the first)."""

    def __init__(self, errors: list[LocatedError]) -> None:
        self.errors = list(errors)
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(error.render() for error in self.errors)


def describe_errors(errors: Iterable[ErrorDetails], model: type[BaseModel]) -> list[tuple[Path, str]]:
    """Turn pydantic's errors on `model` into (path, message) pairs worded for someone editing a plan file.

    The path keeps the keys as written in the file (camelCase aliases), so the loader can find their lines.
    """
    described = []
    for error in errors:
        loc = tuple(error["loc"])
        as_key = bool(loc) and loc[-1] == "[key]"
        if as_key:
            loc = loc[:-1]
        described.append((loc, _message(error, loc, model, as_key)))
    return described


def _message(error: ErrorDetails, loc: Path, model: type[BaseModel], as_key: bool) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return unknown_key_message(str(loc[-1]), known_keys(model_at(model, loc[:-1])))
    message = error["msg"]
    if message[:1].isupper():
        message = message[0].lower() + message[1:]
    if as_key:
        return f"invalid key {value!r}: {message}"
    if isinstance(value, str | int | float | bool) or value is None:
        return f"{message} (got {value!r})"
    return message


def unknown_key_message(key: str, known: list[str]) -> str:
    if not known:
        return f"unknown field {key!r}"
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field {key!r}; {hint}expected one of: {', '.join(known)}"


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def known_keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def model_at(model: type[BaseModel], loc: Path) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (aliases, list indexes and dict keys), if there is one."""
    annotation: Any = model
    for part in loc:
        annotation = _strip_optional(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {info.alias or name: info for name, info in annotation.model_fields.items()}
            if part not in fields:
                return None
            annotation = fields[part].annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        elif get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        else:
            return None
    annotation = _strip_optional(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
