"""The plan loader, validation and manifest mapping bound to the catalogue of the registered actions: what drctl and
the worker check plans against (plans/ itself cannot import the registry)."""

from __future__ import annotations

from functools import partial
from typing import Any

from activities.core.registry import catalogue
from plans import loader, manifest, validation
from plans.errors import PlanIssue
from plans.model import Plan

CATALOGUE = catalogue()

load_plan = partial(loader.load_plan, catalogue=CATALOGUE)
load_plan_text = partial(loader.load_plan_text, catalogue=CATALOGUE)
read_plan = partial(loader.read_plan, catalogue=CATALOGUE)
parse_plan = partial(loader.parse_plan, catalogue=CATALOGUE)
map_manifest = partial(manifest.map_manifest, catalogue=CATALOGUE)


def validate_plan(plan: Plan) -> list[PlanIssue]:
    return validation.validate_plan(plan, CATALOGUE)


def check_plan_data(data: Any) -> list[PlanIssue]:
    return validation.check_plan_data(data, CATALOGUE)
