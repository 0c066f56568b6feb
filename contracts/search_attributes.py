"""The run's search attributes: what the Temporal UI's list, `temporal workflow list --query` and drctl filter on.

The workflow sets them; starters set them too (`start_search_attributes`), so a run is findable before its first
workflow task. The server must have them registered (docker-compose and the test fixtures do it from this list).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from contracts.lifecycle import LifecycleInput, RunStatus

DR_PLAN = SearchAttributeKey.for_keyword("DrPlan")
DR_MODE = SearchAttributeKey.for_keyword("DrMode")
DR_PHASE = SearchAttributeKey.for_keyword("DrPhase")
DR_STATUS = SearchAttributeKey.for_keyword("DrStatus")
DR_INITIATOR = SearchAttributeKey.for_keyword("DrInitiator")
SEARCH_ATTRIBUTES = (DR_PLAN, DR_MODE, DR_PHASE, DR_STATUS, DR_INITIATOR)


def start_search_attributes(run_input: LifecycleInput) -> TypedSearchAttributes:
    """Set by the starter too, so a run is findable in the UI before its first workflow task."""
    return TypedSearchAttributes([
        SearchAttributePair(DR_PLAN, run_input.plan.name),
        SearchAttributePair(DR_MODE, run_input.mode.value),
        SearchAttributePair(DR_INITIATOR, run_input.initiator),
        SearchAttributePair(DR_PHASE, "PENDING"),
        SearchAttributePair(DR_STATUS, RunStatus.RUNNING.value),
    ])
