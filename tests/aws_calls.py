"""Every AWS API call the orchestrator's own code makes during the test session, as IAM would name it.

Recorded through botocore's event hooks on the clients `AwsClients` hands to activities (test code that inspects
AWS through its own sessions is not recorded), so `tests/test_iam_policies.py` can hold the IAM templates in
deploy/iam/ to exactly what the code calls.
"""

from __future__ import annotations

import threading
from typing import Any

from activities.aws import AwsClients

# botocore's signing names that differ from the IAM service prefix.
_IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}

_lock = threading.Lock()
_recorded: dict[tuple[str, str], set[str]] = {}  # (hub|target, "service:Operation") -> test ids
_current_test = "(session)"
_installed = False


def install() -> None:
    """Wrap AwsClients.client once: every new client reports its calls."""
    global _installed
    if _installed:
        return
    original = AwsClients.client

    def client(self: AwsClients, service: str, account: Any, region: str) -> Any:
        made = original(self, service, account, region)
        if not getattr(made, "_dr_recorded", False):
            kind = "hub" if account.role_name is None else "target"
            prefix = made.meta.service_model.signing_name
            prefix = _IAM_PREFIX.get(prefix, prefix)

            def record(model: Any, **_: Any) -> None:
                with _lock:
                    _recorded.setdefault((kind, f"{prefix}:{model.name}"), set()).add(_current_test)

            made.meta.events.register("before-call", record)
            made._dr_recorded = True
        return made

    AwsClients.client = client  # type: ignore[method-assign]
    _installed = True


def set_current_test(test_id: str) -> None:
    global _current_test
    _current_test = test_id


def recorded() -> dict[tuple[str, str], set[str]]:
    with _lock:
        return {key: set(tests) for key, tests in _recorded.items()}
