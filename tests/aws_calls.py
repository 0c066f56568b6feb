"""Every AWS API call the orchestrator's own code makes during the test session, as IAM would name it.

Recorded through botocore's event hooks, so `tests/test_iam_policies.py` can hold the IAM templates in deploy/iam/
to exactly what the code calls. Under pytest-xdist each worker records its own tests' calls and hands them to the
controller when it finishes (`export` / `merge`, see conftest): the check runs there, on all of them. A client is
recorded when orchestrator code created it: `AwsClients` builds them all, in an account
(`client`, Lambda hooks and ARC cluster endpoints among them) or in the hub (`hub_client`: STS, SSM, Step Functions
callbacks). Which of the two created the client says whose identity it uses:
"hub" is the worker's own role (AssumeRole, ExternalId parameters, callbacks to hub state machines), "target" is
the role the worker assumes in an account (everything a module does). Test code inspecting AWS through its own
sessions is not recorded. The OpenSearch REST API is signed by hand, so it is recorded where it is signed.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import botocore.session

# botocore's signing names that differ from the IAM service prefix.
_IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
# Operations whose IAM action has another name than the API operation.
_IAM_ACTION = {"lambda:Invoke": "lambda:InvokeFunction"}

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (file relative to the repository, function) on the stack of a client's creation that means it signs with the
# worker's own identity: AwsClients builds every client, the hub's through this accessor.
# The payload key ring's KMS client (workers/encryption.py) unwraps data keys as the worker itself, at start.
_HUB_CREATORS = {("activities/core/aws.py", "hub_client"), ("workers/encryption.py", "_boto3_kms")}
_ORCHESTRATOR_DIRS = ("activities/", "workers/", "workflows/", "drctl/")
# Everything else of ours that may be on the stack; a virtualenv inside the checkout (make test's .venv) is not.
_OUR_DIRS = (*_ORCHESTRATOR_DIRS, "plans/", "sandbox/", "tests/")

_lock = threading.Lock()
_recorded: dict[tuple[str, str], set[str]] = {}  # (hub|target, "service:Action") -> test ids
_current_test = "(session)"
_installed = False


def iam_action(signing_name: str, operation: str) -> str:
    name = f"{_IAM_PREFIX.get(signing_name, signing_name)}:{operation}"
    return _IAM_ACTION.get(name, name)


def record(kind: str, action: str) -> None:
    with _lock:
        _recorded.setdefault((kind, action), set()).add(_current_test)


def _caller() -> tuple[str, str] | None:
    """(file, function) of the innermost frame in this repository, outside this recorder."""
    found = _caller_frame()
    return found[0] if found else None


def _caller_frame() -> tuple[tuple[str, str], Any] | None:
    frame: Any = sys._getframe(2)
    while frame is not None:
        path = os.path.relpath(frame.f_code.co_filename, _ROOT)
        if path.startswith(_OUR_DIRS) and path != "tests/aws_calls.py":
            return (path, frame.f_code.co_name), frame
        frame = frame.f_back
    return None


def _kind(frame: Any) -> str:
    caller = frame
    while caller is not None:
        if (os.path.relpath(caller.f_code.co_filename, _ROOT), caller.f_code.co_name) in _HUB_CREATORS:
            return "hub"
        caller = caller.f_back
    # Notifications without a plan account publish with the worker's own credentials (the hub role's sns:Publish);
    # a plan account without a role is different: the README has the target role deployed in the hub account too.
    while frame is not None:
        if os.path.relpath(frame.f_code.co_filename, _ROOT) == "activities/notify.py":
            account = frame.f_locals.get("request")
            return "hub" if account is not None and account.account is None else "target"
        frame = frame.f_back
    return "target"


def _orchestrator(caller: tuple[str, str] | None) -> bool:
    return caller is not None and caller[0].startswith(_ORCHESTRATOR_DIRS)


def install() -> None:
    """Hook client creation once: every client orchestrator code creates reports its calls."""
    global _installed
    if _installed:
        return
    original = botocore.session.Session.create_client

    def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)
        found = _caller_frame()
        creator = found[0] if found else None
        if found and _orchestrator(creator):
            kind = _kind(found[1])
            signing_name = made.meta.service_model.signing_name

            def before_call(model: Any, **_: Any) -> None:
                # Tests also use the orchestrator's clients to look at AWS: only the orchestrator's calls count.
                if _orchestrator(_caller()):
                    record(kind, iam_action(signing_name, model.name))

            made.meta.events.register("before-call", before_call)
        return made

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]

    from activities.opensearch import rest as opensearch_rest

    original_call = opensearch_rest.DomainRest.call

    def call(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        record("target", f"es:ESHttp{method.capitalize()}")
        return original_call(self, method, *args, **kwargs)

    opensearch_rest.DomainRest.call = call  # type: ignore[method-assign]
    _installed = True


def set_current_test(test_id: str) -> None:
    global _current_test
    _current_test = test_id


def recorded() -> dict[tuple[str, str], set[str]]:
    with _lock:
        return {key: set(tests) for key, tests in _recorded.items()}


def export() -> list[list[Any]]:
    """This process's recording in a form execnet carries: how an xdist worker hands it to the controller."""
    return [[kind, action, sorted(tests)] for (kind, action), tests in recorded().items()]


def merge(exported: list[list[Any]]) -> None:
    """Add another process's recording (an xdist worker's `export`) to this one's."""
    with _lock:
        for kind, action, tests in exported:
            _recorded.setdefault((kind, action), set()).update(tests)
