"""Per-service estates for the plan that uses every module (tests/test_every_module.py).

Each service module's owner adds `tests/estates/<service>.py` with a `build(prefix: str) -> Estate` that creates the
service's resources in the sandbox (application account, primary us-east-1 / recovery us-west-2) over boto3 and
returns the plan resources that act on them. The every-module test puts all estates' resources into one plan, runs it,
and calls each estate's `check` after every phase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plans.model import Mode, Phase


@dataclass
class Estate:
    # Plan resources as plan dicts: {"name", "action", "parameters", optionally "region"}. They run in the "app"
    # account of the plan; their names must be unique across estates (prefix them with the service).
    resources: list[dict[str, Any]]
    # Asserts the AWS state after `phase` ran in `mode`, above all that a drill left production unchanged.
    check: Callable[[Phase, Mode], None]
    # Phases whose layer should hold these resources (default: every phase the modules support).
    phases: frozenset[Phase] | None = None
    # Plan-level protection groups the resources name (DRS only), by group name.
    protection_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
