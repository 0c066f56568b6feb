"""The catalogue of actions a plan may use, as data: what plan validation and the manifest importer check against.

Plans sit below every other layer, so they cannot ask the activities' module registry which actions exist; whoever
loads a plan passes the catalogue of the worker that will run it (`activities.core.registry.catalogue()`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from plans.model import Phase


@dataclass(frozen=True)
class ActionSpec:
    """What plan validation needs to know of one action: the phases it can run in and its parameters' model."""

    name: str  # e.g. "rds.read_replica"
    summary: str
    phases: frozenset[Phase]
    parameters: type[BaseModel]


# action name -> its spec, sorted by name (error messages list the known actions in this order)
Catalogue = Mapping[str, ActionSpec]
