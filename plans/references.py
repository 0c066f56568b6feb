"""Run-time parameter references: `!Import <export>` and `resolve:ssm:<parameter>`, as the DR Orchestrator Framework
writes them, anywhere in a resource's parameters.

A reference is a whole string value (the Framework resolves whole values only): `"!Import orders-db-id"` names a
CloudFormation export, `"resolve:ssm:/app/desired"` (optionally `:version` or `:label`, as SSM's GetParameter
accepts) an SSM parameter. `{{resolve:ssm:/path}}`, CloudFormation's dynamic-reference spelling, is accepted too so a
value copied from a template works. Values are looked up when the resource starts (activities/core/references.py), in the
resource's account and region, never when the plan is written: exports and parameters change between drills.

Workflow code imports this module: pure functions only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

IMPORT_TAG = "!Import"
SSM_PREFIX = "resolve:ssm:"
# CloudFormation: an export name is letters, digits, '-' and ':' up to 255 characters.
_EXPORT_NAME = re.compile(r"^[A-Za-z0-9:-]{1,255}$")
# SSM: a name is letters, digits and _.-/ (a path starts with '/'), optionally followed by :version or :label.
_SSM_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,2048}(:[A-Za-z0-9_.\-]{1,100})?$")
_DYNAMIC = re.compile(r"^\{\{(resolve:ssm:.*)\}\}$")

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Reference:
    kind: Literal["import", "ssm"]
    name: str  # the export name, or the SSM parameter name with its :version/:label selector if any

    def render(self) -> str:
        return f"{IMPORT_TAG} {self.name}" if self.kind == "import" else f"{SSM_PREFIX}{self.name}"


class ReferenceSyntaxError(ValueError):
    pass


def looks_like_reference(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    text = value.strip()
    return text.startswith(IMPORT_TAG) or text.startswith(SSM_PREFIX) or bool(_DYNAMIC.match(text))


def parse_reference(value: Any) -> Reference | None:
    """The reference `value` spells, None when it is a plain value; ReferenceSyntaxError when it is a malformed one
    (better refused when the plan is loaded than sent to AWS as a literal string)."""
    if not looks_like_reference(value):
        return None
    text = value.strip()
    dynamic = _DYNAMIC.match(text)
    if dynamic:
        text = dynamic[1].strip()
    if text.startswith(IMPORT_TAG):
        name = text[len(IMPORT_TAG):].strip()
        if not text[len(IMPORT_TAG):][:1].isspace() or not _EXPORT_NAME.match(name):
            raise ReferenceSyntaxError(
                f"{value!r} is not a valid reference: write '!Import <export name>' (letters, digits, '-', ':')")
        return Reference("import", name)
    name = text[len(SSM_PREFIX):].strip()
    if not _SSM_NAME.match(name):
        raise ReferenceSyntaxError(
            f"{value!r} is not a valid reference: write 'resolve:ssm:<parameter name>[:version]'")
    return Reference("ssm", name)


def find_references(value: Any, path: Path = ()) -> Iterator[tuple[Path, Reference | ReferenceSyntaxError]]:
    """Every reference in `value` (nested mappings and lists), with its path; malformed ones as their error."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from find_references(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from find_references(item, (*path, index))
    elif looks_like_reference(value):
        try:
            reference = parse_reference(value)
        except ReferenceSyntaxError as exc:
            yield path, exc
        else:
            if reference is not None:
                yield path, reference


def has_references(parameters: Any) -> bool:
    """Whether a resource needs the resolve activity: resources without references must not pay for one."""
    return any(True for _ in find_references(parameters))


def substitute(value: Any, resolved: Mapping[Reference, Any]) -> Any:
    """`value` with each reference replaced by its resolved value."""
    if isinstance(value, Mapping):
        return {key: substitute(item, resolved) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, resolved) for item in value]
    reference = parse_reference(value) if looks_like_reference(value) else None
    return resolved[reference] if reference is not None else value


def under_reference(loc: Path, reference_paths: set[Path]) -> bool:
    """Whether a validation error at `loc` is about a value a reference will supply (or inside it)."""
    return any(loc[: len(path)] == path for path in reference_paths)


__all__ = [
    "IMPORT_TAG", "Reference", "ReferenceSyntaxError", "SSM_PREFIX", "find_references", "has_references",
    "looks_like_reference", "parse_reference", "substitute", "under_reference",
]
