"""EventBridge: corrections to moto's rules and replays (moto 5.2.5).

The eventbridge modules rely on exactly these behaviours for drill safety: a disabled rule receives nothing, and a
replay delivers only the archived events of its time window, and only to the rules in `Destination.FilterArns` when
that is given.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from moto.core.utils import unix_time
from moto.events.models import Replay, ReplayState, Rule, events_backends
from moto.moto_api._internal import mock_random as random

from sandbox.moto_fixes._guard import require

if TYPE_CHECKING:  # for the type checker only: a moto that moved them still runs the patches
    from moto.events.models import Archive
    from moto.events.utils import EventMessageType


def apply() -> None:
    # Checked first, so a moto without them is refused before anything here is patched.
    send_to_targets = require(Rule, "send_to_targets", "transform_input")
    require(Replay, "replay_events", "archive")
    _disabled_rules_match_nothing(send_to_targets)
    _replay_honours_window_and_filter_arns()


def _disabled_rules_match_nothing(original: Any) -> None:
    """moto 5.2.5 delivers events to a rule's targets whatever the rule's State; on AWS a DISABLED rule matches no
    event (ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS is enabled)."""

    def send_to_targets(self: Any, *args: Any, **kwargs: Any) -> None:
        if self.state == "DISABLED":
            return
        original(self, *args, **kwargs)

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]


def _replay_honours_window_and_filter_arns() -> None:
    """moto 5.2.5 replays every archived event, whatever EventStartTime/EventEndTime say, to every rule of the bus,
    ignoring Destination.FilterArns. AWS replays the events whose time lies in the window, only to the listed rules
    when FilterArns is given; replayed events carry `replay-name`, which archive rules exclude."""

    def replay_events(self: Any, archive: Archive) -> None:
        backend = events_backends[self.account_id][self.region]
        bus = backend.describe_event_bus(self.destination["Arn"].split("/")[-1])
        only = set(self.destination.get("FilterArns") or [])
        start, end = _seconds(self.event_start_time), _seconds(self.event_end_time)
        for event in archive.events:
            if not start <= _seconds(event.get("time")) <= end:
                continue
            for rule in list(bus.rules.values()):
                if only and rule.arn not in only:
                    continue
                replayed: EventMessageType = {**event, "id": str(random.uuid4()), "replay-name": self.name}
                rule.send_to_targets(replayed, transform_input=False)
        self.state = ReplayState.COMPLETED
        self.end_time = unix_time()

    Replay.replay_events = replay_events  # type: ignore[method-assign]


def _seconds(value: Any) -> float:
    """Epoch seconds from what moto keeps: epoch numbers (request timestamps) or ISO-8601 strings."""
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except ValueError:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
