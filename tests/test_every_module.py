"""One plan that uses every service module, run through the lifecycle on the sandbox in drill and planned mode.

Each service contributes an estate (tests/estates/<service>.py): its resources in the sandbox and a check of the AWS
state after each phase. The plan holds every estate's resources in layers ordered as a recovery runs (data, servers,
compute, traffic); an approval gate before each phase lets the test look at AWS between phases.
"""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from typing import Any

import pytest

import tests.estates
from activities.core import registry
from plans.model import PHASE_ORDER, Mode, Phase, Plan
from tests.conftest import APP_ACCOUNT
from tests.estates import Estate
from tests.lifecycle_helpers import control, finish, send, start_run, status_of, wait_until
from contracts.lifecycle import RunStatus

_LAYER_OF_SERVICE = {"aurora": "data", "rds": "data", "elasticache": "data", "memorydb": "data",
                     "opensearch": "data", "drs": "servers", "ecs": "compute", "lambda": "compute",
                     "autoscaling": "compute", "eventbridge": "compute", "hook": "compute", "route53": "traffic",
                     "arc": "traffic"}
_LAYERS = ("data", "servers", "compute", "traffic")
_NOT_IN_THE_PLAN = {"control.wait", "hook.ssm_automation_stop"}  # no AWS resource of their own


def estate_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(tests.estates.__path__))


def build_estates(prefix: str) -> dict[str, Estate]:
    return {name: importlib.import_module(f"tests.estates.{name}").build(f"{prefix}-{name}")
            for name in estate_modules()}


def every_module_plan(name: str, estates: dict[str, Estate]) -> Plan:
    layers: dict[Phase, dict[str, list[dict[str, Any]]]] = {phase: {} for phase in PHASE_ORDER}
    for estate in estates.values():
        for resource in estate.resources:
            module = registry.get(resource["action"])
            assert module is not None, f"no module for {resource['action']}"
            layer = _LAYER_OF_SERVICE[resource["action"].split(".")[0]]
            for phase in module.phases & (estate.phases or module.phases):
                layers[phase].setdefault(layer, []).append(resource)
    phases = {phase.value: {"approvalRequired": phase is not Phase.INSTANTIATE,
                            "layers": [{"name": layer, "resources": layers[phase][layer]}
                                       for layer in _LAYERS if layer in layers[phase]]}
              for phase in PHASE_ORDER if layers[phase]}
    return Plan.model_validate({
        "name": name,
        "accounts": {"app": {"id": APP_ACCOUNT, "roleName": "dr-orchestrator",
                             "externalId": {"value": "sandbox-external-id"}}},
        "regions": {"primary": "us-east-1", "recovery": "us-west-2"},
        "defaults": {"account": "app"},
        "protectionGroups": {g: spec for e in estates.values() for g, spec in e.protection_groups.items()},
        "phases": phases,
    })


def test_every_registered_module_has_an_estate():
    covered = {r["action"] for name in estate_modules()
               for r in _declared_actions(name)}
    missing = set(registry.actions()) - covered - _NOT_IN_THE_PLAN
    assert not missing, f"modules no estate uses (add tests/estates/<service>.py): {sorted(missing)}"


def _declared_actions(estate_module: str) -> list[dict[str, str]]:
    # Without building it: an estate's source names the actions it uses.
    import inspect

    source = inspect.getsource(importlib.import_module(f"tests.estates.{estate_module}"))
    return [{"action": action} for action in registry.actions() if f'"{action}"' in source]


@pytest.mark.parametrize("mode", [Mode.DRILL, Mode.PLANNED])
async def test_one_plan_with_every_module_runs_every_phase(worker, world, mode):
    prefix = f"{mode.value[:3]}{uuid.uuid4().hex[:5]}"
    estates = build_estates(prefix)
    plan = every_module_plan(f"every-{prefix}", estates)
    handle = await start_run(worker.client, worker.task_queue, plan, mode=mode)
    ran: list[Phase] = []
    for phase in [p for p in PHASE_ORDER if p.value in {x.value for x in plan.phases}]:
        if phase is not Phase.INSTANTIATE:
            await wait_until(handle, lambda s, gate=phase.value: s.pending_gate() is not None
                             and s.pending_gate().id == gate or s.status.finished, timeout=120)
            _check_all(estates, ran[-1], mode)
            await send(handle, "approve", control(gate=phase.value, actor="approver@example.com",
                                                  reason="checked"))
        ran.append(phase)
    result = await finish(handle)
    state = await status_of(handle)
    assert result.status is RunStatus.COMPLETED, result.message
    _check_all(estates, ran[-1], mode)
    resources = {r.name for p in state.phases for layer in p.layers for r in layer.resources}
    assert resources >= {r["name"] for e in estates.values() for r in e.resources}


def _check_all(estates: dict[str, Estate], phase: Phase, mode: Mode) -> None:
    failures = []
    for name, estate in estates.items():
        try:
            estate.check(phase, mode)
        except AssertionError as exc:
            failures.append(f"{name} after {phase.value} ({mode.value}): {exc}")
    assert not failures, "\n".join(failures)
