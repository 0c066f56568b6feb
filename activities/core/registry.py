"""The module registry: action name -> the service module that implements it.

A module implements some of the four phases for one kind of resource. Long operations are two steps: an idempotent
`start` (a retry finds the operation already started) and `poll` (one look at the real state). The generic
activities in `activities.core.runtime` turn these into Temporal activities, so adding a service means adding a module,
not touching the workflow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from activities.core.aws import fatal
from activities.core.context import ResourceContext
# ModuleParameters lives in the contract (workflows validate control.wait's parameters); modules take it from here.
from contracts.activities import ModuleParameters, Operation
from plans.catalogue import ActionSpec, Catalogue
from plans.model import Phase

__all__ = ["ModuleParameters", "ServiceModule", "StateMachineModule", "actions", "catalogue", "get", "register"]

_PHASE_METHODS = {Phase.INSTANTIATE: "instantiate", Phase.ACTIVATE: "activate", Phase.CLEANUP: "cleanup",
                  Phase.REPLICATE: "replicate"}


class ServiceModule:
    """A module either defines one method per phase it supports (`instantiate`, `activate`, `cleanup`, `replicate`,
    each `(ctx, params) -> Operation`), from which `phases` follows, or overrides `start` and declares `phases`."""

    action: ClassVar[str]  # e.g. "rds.read_replica"
    summary: ClassVar[str]
    Parameters: ClassVar[type[ModuleParameters]]
    phases: ClassVar[frozenset[Phase]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        defined = frozenset(phase for phase, name in _PHASE_METHODS.items() if callable(getattr(cls, name, None)))
        if defined and "phases" not in cls.__dict__:
            cls.phases = defined

    def start(self, ctx: ResourceContext, params: Any) -> Operation:
        """Begin this phase's operation, or find it already begun. Must be safe to call again."""
        return self._phase_method(ctx)(ctx, params)

    def poll(self, ctx: ResourceContext, params: Any, handle: dict[str, Any]) -> Operation:
        """Look once at the operation started by `start`. Only modules whose start can return done=False need it."""
        raise NotImplementedError(f"{self.action} started a long operation but has no poll")

    def _phase_method(self, ctx: ResourceContext) -> Callable[..., Operation]:
        phase = ctx.call.phase
        method = getattr(self, _PHASE_METHODS[phase], None) if phase in self.phases else None
        if method is None:
            raise fatal(f"{self.action} has nothing to do in phase {phase.value}", "PhaseNotSupported")
        return method


class StateMachineModule(ServiceModule):
    """A module whose phases are state machines driven by what AWS reports, not by what was remembered: start and
    poll are one step, the phase's method with the handle, `(ctx, params, handle) -> Operation`, which looks at the
    resource, does the next thing the phase needs (idempotently) and says where it stands. The handle only carries
    what a step cannot read back (e.g. which operation it began); start's is empty."""

    def start(self, ctx: ResourceContext, params: Any) -> Operation:
        return self.poll(ctx, params, {})

    def poll(self, ctx: ResourceContext, params: Any, handle: dict[str, Any]) -> Operation:
        return self._phase_method(ctx)(ctx, params, handle)


_REGISTRY: dict[str, ServiceModule] = {}
_builtins_loaded = False


def register(module_class: type[ServiceModule]) -> type[ServiceModule]:
    if module_class.action in _REGISTRY:
        raise RuntimeError(f"action {module_class.action} registered twice")
    _REGISTRY[module_class.action] = module_class()
    return module_class


def _load_builtin_modules() -> None:
    # Imported for their @register side effect. A flag, not "registry empty": importing one module directly (as a
    # test may) registers it alone, and the others must still be loaded.
    global _builtins_loaded
    if not _builtins_loaded:
        from activities import (  # noqa: F401
            arc,
            aurora,
            autoscaling,
            control,
            ecs,
            elasticache,
            eventbridge,
            hooks,
            lambda_function,
            memorydb,
            rds,
            route53,
            route53_health,
        )
        from activities.drs import module as _drs  # noqa: F401
        from activities.opensearch import module as _opensearch  # noqa: F401

        _builtins_loaded = True


def get(action: str) -> ServiceModule | None:
    _load_builtin_modules()
    return _REGISTRY.get(action)


def actions() -> dict[str, ServiceModule]:
    _load_builtin_modules()
    return dict(sorted(_REGISTRY.items()))


def catalogue() -> Catalogue:
    """The registered actions as plain data, for plan validation (plans cannot import this registry)."""
    return {name: ActionSpec(name, module.summary, module.phases, module.Parameters)
            for name, module in actions().items()}
