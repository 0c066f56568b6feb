"""Helpers for module tests on the sandbox: contexts, a start/poll driver, unique names, sandbox switches."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from activities.core.aws import AwsClients
from activities.core.context import ResourceContext
from contracts.activities import Operation, ResourceCall
from activities.core.registry import ServiceModule
from plans.model import Account, ExternalIdSource, Mode, Phase, Regions, Resource
from tests.conftest import APP_ACCOUNT

PRIMARY_REGION = "us-east-1"
RECOVERY_REGION = "us-west-2"


def unique(prefix: str) -> str:
    """A name no other test of the session uses: the sandbox is shared."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def app_account(**overrides: Any) -> Account:
    fields: dict[str, Any] = {
        "id": APP_ACCOUNT,
        "role_name": "dr-orchestrator",
        "external_id": ExternalIdSource(value="sandbox-external-id"),
    }
    return Account(**{**fields, **overrides})


def make_ctx(
    module: ServiceModule,
    parameters: dict[str, Any],
    *,
    mode: Mode,
    phase: Phase,
    account: Account | None = None,
    aws: AwsClients | None = None,
    execution_id: str | None = None,
    region: str = RECOVERY_REGION,
) -> tuple[ResourceContext, Any]:
    """A context as the runtime would build it, and the module's validated parameters."""
    resource = Resource(name="res", action=module.action, parameters=parameters)
    call = ResourceCall(
        execution_id=execution_id or unique("exec"),
        plan_name="test-plan",
        mode=mode,
        phase=phase,
        layer="layer",
        resource=resource,
        account_key="app",
        account=account or app_account(),
        region=region,
        regions=Regions(primary=PRIMARY_REGION, recovery=RECOVERY_REGION),
    )
    return ResourceContext(call=call, aws=aws or AwsClients()), module.Parameters.model_validate(parameters)


def with_phase(ctx: ResourceContext, phase: Phase, mode: Mode | None = None) -> ResourceContext:
    """The same execution and resource in another phase (or mode), sharing the credential cache."""
    update: dict[str, Any] = {"phase": phase}
    if mode is not None:
        update["mode"] = mode
    return ResourceContext(call=ctx.call.model_copy(update=update), aws=ctx.aws)


def drive(module: ServiceModule, ctx: ResourceContext, params: Any, max_polls: int = 20) -> list[Operation]:
    """Run start, then poll with the latest handle until done, like the wait activity; returns every step."""
    steps = [module.start(ctx, params)]
    while not steps[-1].done:
        if len(steps) > max_polls:
            raise AssertionError(f"not done after {max_polls} polls: {steps[-1].message}")
        # Soon at first, for what is done at once; then further apart up to 0.2 s: the sandbox takes its seconds in
        # real time (an Automation's step, a domain going green), and a look every 10 ms kept a core busy with
        # requests that the parallel test files needed. The later looks come no sooner, so max_polls allows as long.
        time.sleep(min(0.01 * 2 ** (len(steps) - 1), 0.2))
        steps.append(module.poll(ctx, params, steps[-1].handle))
    return steps


def an_image(ec2: Any) -> str:
    """An AMI of the sandbox's region, for a launch template. Asked by name: all of Amazon's (some 1,400 in moto)
    took a second of the sandbox's CPU to list, at every group a test made."""
    return str(ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*"]}])[
        "Images"][0]["ImageId"])


class CallCounter:
    """Counts API calls a botocore client or session makes, by a before-call event hook."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, params: Any = None, **kwargs: Any) -> None:
        self.calls.append(params or {})

    def __len__(self) -> int:
        return len(self.calls)


@contextmanager
def count_calls(events: Any, service: str, operation: str) -> Iterator[CallCounter]:
    counter = CallCounter()
    event = f"before-call.{service}.{operation}"
    events.register(event, counter)
    try:
        yield counter
    finally:
        events.unregister(event, counter)


@contextmanager
def sandbox_iam_enforced(sandbox_url: str) -> Iterator[None]:
    """Make the sandbox check IAM permissions (moto's reset-auth switch), so AccessDenied is a real answer."""
    requests.post(f"{sandbox_url}/moto-api/reset-auth", data="0", timeout=10).raise_for_status()
    try:
        yield
    finally:
        requests.post(f"{sandbox_url}/moto-api/reset-auth", data="inf", timeout=10).raise_for_status()



def sandbox_admin(sandbox_url: str, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST `body` to the sandbox's admin path (sandbox/admin.py), e.g. `delays` or `faults`, or GET it (`state`)
    without one; its answer."""
    url = f"{sandbox_url}/_sandbox/{action}"
    answer = requests.get(url, timeout=10) if body is None else requests.post(url, json=body, timeout=10)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result
