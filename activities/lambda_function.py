"""Lambda function: in the recovery region, point the alias at the release to run, give it concurrency, and start
consuming events (enable the event source mappings); after a real failover, stop the old primary's consumers.

Drill: event source mappings are never enabled (an enabled mapping drains the production queue or stream it reads),
reserved concurrency is never set (it is function-wide, so it caps what production callers in the recovery region
get) and the production alias is never moved (whoever invokes it in the recovery region would run another release).
With `drillAlias` the drill exercises the same calls on an alias nobody else invokes: UpdateAlias/CreateAlias to the
target version and routing, provisioned concurrency on it (proving the region can allocate it), and CLEANUP puts the
drill alias back exactly as it was. The previous state is kept in a tag on the function named after the execution and
resource, so CLEANUP (maybe on another worker) restores it and a retried ACTIVATE never records its own changes.
Without `drillAlias` the drill only verifies: the function is Active, the alias and version exist. (Provisioned
concurrency on the drill alias is billed and taken from the region's unreserved concurrency until CLEANUP.)

A mapping reads a source in its own region, so the recovery and the old primary's mappings never compete for one
message: a real failover enables the recovery ones in ACTIVATE and leaves the old primary draining its own queue
until CLEANUP, which disables its mappings (and frees its concurrency) only when the plan asks. In a disaster the old
region may not answer then; CLEANUP fails and is retried rather than pretending it stopped anything.

Every step looks at what Lambda reports and does only what is missing, so start and poll share one function and a
retry after a crash is harmless. ACTIVATE enables the mappings last, once the alias's provisioned concurrency is
READY: events then meet warm capacity.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal, overload

from botocore.exceptions import ClientError
from pydantic import Field, model_validator

from activities.core.context import ResourceContext
from activities.core.aws import aws_call, aws_errors, error_code, fatal
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, ServiceModule, register
from plans.model import Phase

_POLL_SECONDS = 5.0
_TAG_PREFIX = "dr:previous:"
_NAME = r"^[a-zA-Z0-9-_]{1,64}$"
_ALIAS = r"^[a-zA-Z0-9-_]*[a-zA-Z-_][a-zA-Z0-9-_]*$"  # as AWS: not all digits (that is a version)
_VERSION = r"^[0-9]+$"
_ESM_SETTLED = frozenset({"Enabled", "Disabled"})


class LambdaFunctionParameters(ModuleParameters):
    function_name: str = Field(pattern=_NAME)  # in the recovery region
    alias: str | None = Field(default=None, pattern=_ALIAS, max_length=128)  # the alias production invokes
    version: str | None = Field(default=None, pattern=_VERSION)  # the alias's version after ACTIVATE
    additional_version_weights: dict[str, float] | None = None  # weighted routing: {"7": 0.1}
    reserved_concurrency: int | None = Field(default=None, ge=0)  # PutFunctionConcurrency (never in a drill)
    provisioned_concurrency: int | None = Field(default=None, ge=1)  # on the alias (in a drill: on drillAlias)
    enable_event_source_mappings: bool = True  # the function's and alias's mappings (never in a drill)
    drill_alias: str | None = Field(default=None, pattern=_ALIAS, max_length=128)  # drill: switch this alias instead
    primary_function_name: str | None = Field(default=None, pattern=_NAME)  # default: functionName
    disable_primary_event_source_mappings: bool = False  # CLEANUP of a real failover
    remove_primary_concurrency: bool = False  # CLEANUP of a real failover: provisioned and reserved

    @model_validator(mode="after")
    def _consistent(self) -> LambdaFunctionParameters:
        if (self.version or self.provisioned_concurrency) and not (self.alias or self.drill_alias):
            raise ValueError("version and provisionedConcurrency act on an alias: set alias (or drillAlias)")
        if self.additional_version_weights is not None:
            if not self.version:
                raise ValueError("additionalVersionWeights needs version")
            if any(not 0.0 <= w <= 1.0 for w in self.additional_version_weights.values()):
                raise ValueError("additionalVersionWeights values are between 0.0 and 1.0")
        if self.drill_alias is not None and self.drill_alias == self.alias:
            raise ValueError("drillAlias must not be the production alias")
        if self.drill_alias and not (self.version or self.alias):
            raise ValueError("drillAlias needs version (or alias, whose version it then takes)")
        return self


@register
class LambdaFunction(ServiceModule):
    action = "lambda.function"
    summary = "Switch a Lambda alias, set concurrency and enable event source mappings in the recovery region"
    Parameters = LambdaFunctionParameters

    def instantiate(self, ctx: ResourceContext, params: LambdaFunctionParameters) -> Operation:
        return self.poll(ctx, params, {})

    def activate(self, ctx: ResourceContext, params: LambdaFunctionParameters) -> Operation:
        return self.poll(ctx, params, {})

    def cleanup(self, ctx: ResourceContext, params: LambdaFunctionParameters) -> Operation:
        return self.poll(ctx, params, {})

    def poll(self, ctx: ResourceContext, params: LambdaFunctionParameters, handle: dict[str, Any]) -> Operation:
        phase = ctx.call.phase
        if phase is Phase.INSTANTIATE:
            return _verify(ctx, params, "ready")
        if phase is Phase.ACTIVATE:
            return _drill_activate(ctx, params) if ctx.is_drill else _failover(ctx, params)
        return _drill_restore(ctx, params) if ctx.is_drill else _old_primary(ctx, params)

    def status(self, ctx: ResourceContext, params: LambdaFunctionParameters) -> dict[str, Any]:
        lam = ctx.client("lambda", region=ctx.recovery_region)
        config = _function(lam, params.function_name, ctx.recovery_region)
        report = {"state": config.get("State"), "lastUpdateStatus": config.get("LastUpdateStatus"),
                  "mappings": {m["UUID"]: m["State"] for m in _mappings(lam, params.function_name, params.alias)}}
        alias = _alias(lam, params.function_name, params.alias) if params.alias else None
        if alias is not None:
            report["alias"] = _alias_target(alias)
        return report


# --- phases ---------------------------------------------------------------------------------------------------------


def _verify(ctx: ResourceContext, params: LambdaFunctionParameters, what: str) -> Operation:
    lam = ctx.client("lambda", region=ctx.recovery_region)
    config = _function(lam, params.function_name, ctx.recovery_region)
    if config.get("State") == "Failed":
        raise fatal(f"function {params.function_name} is Failed: {config.get('StateReason')}", "FunctionFailed")
    outputs: dict[str, Any] = {"function": params.function_name, "state": config.get("State")}
    if params.alias:
        outputs["alias"] = _alias_target(_alias(lam, params.function_name, params.alias, required=True))
    if params.version:
        _function(lam, params.function_name, ctx.recovery_region, qualifier=params.version)
    outputs["mappings"] = {m["UUID"]: m["State"] for m in _mappings(lam, params.function_name, params.alias)}
    if config.get("State") != "Active":
        return _wait(f"{params.function_name} is {config.get('State')}", outputs)
    return Operation(done=True, outputs=outputs, message=f"{params.function_name} {what}")


def _drill_activate(ctx: ResourceContext, params: LambdaFunctionParameters) -> Operation:
    if not params.drill_alias:
        return _verify(ctx, params, "verified; a drill without drillAlias moves no alias, concurrency or mapping")
    lam = ctx.client("lambda", region=ctx.recovery_region)
    config = _function(lam, params.function_name, ctx.recovery_region)
    name, drill = params.function_name, params.drill_alias
    version = params.version or _alias(lam, name, params.alias or "", required=True)["FunctionVersion"]
    current = _alias(lam, name, drill)
    tag = _TAG_PREFIX + ctx.drill_suffix()
    tags = _tags(lam, config["FunctionArn"])
    if tag not in tags:
        # Recorded before anything changes, and only once: a retry must not take its own changes for the original.
        previous = {"exists": current is not None, "pc": _provisioned(lam, name, drill) if current else None,
                    **(_alias_target(current) if current else {})}
        with aws_errors(f"TagResource {name}"):
            lam.tag_resource(Resource=config["FunctionArn"], Tags={tag: _encode(previous)})
    target = {"version": version, "weights": params.additional_version_weights or {}}
    if current is None:
        with aws_errors(f"CreateAlias {name}:{drill}"):
            lam.create_alias(FunctionName=name, Name=drill, FunctionVersion=version,
                             Description=f"DR drill {ctx.call.execution_id}", RoutingConfig=_routing(target))
        ctx.log.info("lambda.drill_alias_created", function=name, alias=drill, version=version)
    elif _alias_target(current) != target:
        _update_alias(lam, name, drill, target)
    return _settle(ctx, lam, params, drill, params.provisioned_concurrency, enable_mappings=False)


def _drill_restore(ctx: ResourceContext, params: LambdaFunctionParameters) -> Operation:
    if not params.drill_alias:
        return Operation(done=True, message=f"{params.function_name}: the drill changed nothing")
    lam = ctx.client("lambda", region=ctx.recovery_region)
    name, drill = params.function_name, params.drill_alias
    config = _function(lam, name, ctx.recovery_region)
    tag = _TAG_PREFIX + ctx.drill_suffix()
    recorded = _tags(lam, config["FunctionArn"]).get(tag)
    if recorded is None:
        return Operation(done=True, message=f"{name}: nothing this drill changed is left")
    previous = _decode(recorded)
    current = _alias(lam, name, drill)
    if not previous["exists"]:
        if current is not None:
            # Deleting the alias also deletes its provisioned concurrency.
            aws_call(f"DeleteAlias {name}:{drill}", lam.delete_alias, ("ResourceNotFoundException",),
                     FunctionName=name, Name=drill)
            ctx.log.info("lambda.drill_alias_deleted", function=name, alias=drill)
    elif current is not None:
        target = {"version": previous["version"], "weights": previous["weights"]}
        if _alias_target(current) != target:
            _update_alias(lam, name, drill, target)
        if previous["pc"] is None:
            aws_call(f"DeleteProvisionedConcurrencyConfig {name}:{drill}", lam.delete_provisioned_concurrency_config,
                     ("ProvisionedConcurrencyConfigNotFoundException",), FunctionName=name, Qualifier=drill)
        elif _provisioned(lam, name, drill) != previous["pc"]:
            _put_provisioned(lam, name, drill, previous["pc"])
    aws_call(f"UntagResource {name}", lam.untag_resource, Resource=config["FunctionArn"], TagKeys=[tag])
    return Operation(done=True, outputs={"alias": drill, "restored": previous},
                     message=f"{name}:{drill} restored as before the drill")


def _failover(ctx: ResourceContext, params: LambdaFunctionParameters) -> Operation:
    lam = ctx.client("lambda", region=ctx.recovery_region)
    name = params.function_name
    _function(lam, name, ctx.recovery_region)
    if params.alias and params.version:
        _function(lam, name, ctx.recovery_region, qualifier=params.version)
        target = {"version": params.version, "weights": params.additional_version_weights or {}}
        if _alias_target(_alias(lam, name, params.alias, required=True)) != target:
            _update_alias(lam, name, params.alias, target)
    if params.reserved_concurrency is not None:
        with aws_errors(f"GetFunctionConcurrency {name}"):
            reserved = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
        if reserved != params.reserved_concurrency:
            with aws_errors(f"PutFunctionConcurrency {name}"):
                lam.put_function_concurrency(FunctionName=name,
                                             ReservedConcurrentExecutions=params.reserved_concurrency)
            ctx.log.info("lambda.reserved_concurrency", function=name, reserved=params.reserved_concurrency)
    return _settle(ctx, lam, params, params.alias, params.provisioned_concurrency,
                   enable_mappings=params.enable_event_source_mappings)


def _old_primary(ctx: ResourceContext, params: LambdaFunctionParameters) -> Operation:
    if not (params.disable_primary_event_source_mappings or params.remove_primary_concurrency):
        return Operation(done=True, message=f"{params.function_name}: the old primary is kept as it is (plan)")
    region = ctx.primary_region
    lam = ctx.client("lambda", region=region)
    name = params.primary_function_name or params.function_name
    _function(lam, name, region)
    if params.remove_primary_concurrency:
        if params.alias:
            aws_call(f"DeleteProvisionedConcurrencyConfig {name}:{params.alias}",
                     lam.delete_provisioned_concurrency_config, ("ProvisionedConcurrencyConfigNotFoundException",),
                     FunctionName=name, Qualifier=params.alias)
        aws_call(f"DeleteFunctionConcurrency {name}", lam.delete_function_concurrency, FunctionName=name)
    mappings = _mappings(lam, name, params.alias)
    if params.disable_primary_event_source_mappings:
        _switch_mappings(ctx, lam, mappings, enabled=False)
    pending = {m["UUID"]: m["State"] for m in _mappings(lam, name, params.alias) if m["State"] not in _ESM_SETTLED}
    outputs = {"function": name, "region": region, "mappings": {m["UUID"]: m["State"] for m in mappings}}
    if pending:
        return _wait(f"old primary {name}: mappings {pending}", outputs)
    return Operation(done=True, outputs=outputs, message=f"old primary {name} in {region} stopped as the plan asks")


def _settle(ctx: ResourceContext, lam: Any, params: LambdaFunctionParameters, alias: str | None, provisioned: int | None,
            enable_mappings: bool) -> Operation:
    """Provisioned concurrency as asked, the function's last update done, then (if asked) the mappings enabled."""
    name = params.function_name
    outputs: dict[str, Any] = {"function": name}
    if alias:
        outputs["alias"] = {"name": alias, **_alias_target(_alias(lam, name, alias, required=True))}
    if alias and provisioned is not None:
        config = _provisioned_config(lam, name, alias)
        if config is None or config["RequestedProvisionedConcurrentExecutions"] != provisioned:
            _put_provisioned(lam, name, alias, provisioned)
            ctx.log.info("lambda.provisioned_concurrency", function=name, alias=alias, provisioned=provisioned)
            return _wait(f"{name}:{alias}: allocating provisioned concurrency {provisioned}", outputs)
        outputs["provisionedConcurrency"] = config["Status"]
        if config["Status"] == "FAILED":
            raise fatal(f"provisioned concurrency on {name}:{alias} FAILED: {config.get('StatusReason')}",
                        "ProvisionedConcurrencyFailed")
        if config["Status"] != "READY":
            return _wait(f"{name}:{alias}: provisioned concurrency {config['Status']}", outputs)
    config = _function(lam, name, ctx.recovery_region)
    outputs["lastUpdateStatus"] = config.get("LastUpdateStatus")
    if config.get("LastUpdateStatus") == "Failed":
        raise fatal(f"{name}: last update Failed: {config.get('LastUpdateStatusReason')}", "FunctionUpdateFailed")
    if config.get("State") != "Active" or config.get("LastUpdateStatus") == "InProgress":
        return _wait(f"{name}: {config.get('State')}, last update {config.get('LastUpdateStatus')}", outputs)
    if enable_mappings:
        mappings = _mappings(lam, name, alias)
        _switch_mappings(ctx, lam, mappings, enabled=True)
        outputs["mappings"] = {m["UUID"]: m["State"] for m in _mappings(lam, name, alias)}
        pending = {k: v for k, v in outputs["mappings"].items() if v != "Enabled"}
        if pending:
            return _wait(f"{name}: waiting for event source mappings {pending}", outputs)
    return Operation(done=True, outputs=outputs, message=f"{name}{':' + alias if alias else ''} ready")


# --- helpers --------------------------------------------------------------------------------------------------------


def _wait(message: str, outputs: dict[str, Any]) -> Operation:
    return Operation(done=False, handle={}, outputs=outputs, message=message, poll_interval_seconds=_POLL_SECONDS)


def _function(lam: Any, name: str, region: str, qualifier: str | None = None) -> dict[str, Any]:
    kwargs = {"FunctionName": name, **({"Qualifier": qualifier} if qualifier else {})}
    try:
        return dict(lam.get_function_configuration(**kwargs))
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            what = f"{name}:{qualifier}" if qualifier else name
            raise fatal(f"Lambda function {what} not found in {region}", "FunctionNotFound") from exc
        with aws_errors(f"GetFunctionConfiguration {name}"):
            raise


@overload
def _alias(lam: Any, name: str, alias: str, required: Literal[True]) -> dict[str, Any]: ...


@overload
def _alias(lam: Any, name: str, alias: str, required: bool = False) -> dict[str, Any] | None: ...


def _alias(lam: Any, name: str, alias: str, required: bool = False) -> dict[str, Any] | None:
    try:
        return dict(lam.get_alias(FunctionName=name, Name=alias))
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            with aws_errors(f"GetAlias {name}:{alias}"):
                raise
        if required:
            raise fatal(f"Lambda alias {name}:{alias} not found", "AliasNotFound") from exc
        return None


def _alias_target(alias: dict[str, Any]) -> dict[str, Any]:
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return {"version": alias["FunctionVersion"], "weights": {k: float(v) for k, v in weights.items()}}


def _routing(target: dict[str, Any]) -> dict[str, Any]:
    # An empty map is how UpdateAlias removes a weighted routing: leaving RoutingConfig out keeps the old one.
    return {"AdditionalVersionWeights": dict(target["weights"])}


def _update_alias(lam: Any, name: str, alias: str, target: dict[str, Any]) -> None:
    with aws_errors(f"UpdateAlias {name}:{alias}"):
        lam.update_alias(FunctionName=name, Name=alias, FunctionVersion=target["version"],
                         RoutingConfig=_routing(target))


def _provisioned_config(lam: Any, name: str, qualifier: str) -> dict[str, Any] | None:
    return aws_call(f"GetProvisionedConcurrencyConfig {name}:{qualifier}", lam.get_provisioned_concurrency_config,
                    ("ProvisionedConcurrencyConfigNotFoundException",), FunctionName=name, Qualifier=qualifier)


def _provisioned(lam: Any, name: str, qualifier: str) -> int | None:
    config = _provisioned_config(lam, name, qualifier)
    return int(config["RequestedProvisionedConcurrentExecutions"]) if config else None


def _put_provisioned(lam: Any, name: str, qualifier: str, count: int) -> None:
    with aws_errors(f"PutProvisionedConcurrencyConfig {name}:{qualifier}"):
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier,
                                               ProvisionedConcurrentExecutions=count)


def _mappings(lam: Any, name: str, alias: str | None) -> list[dict[str, Any]]:
    # A mapping is attached to the function or to one qualifier; the alias's are listed under its qualified name.
    found: dict[str, dict[str, Any]] = {}
    for function in [name] + ([f"{name}:{alias}"] if alias else []):
        with aws_errors(f"ListEventSourceMappings {function}"):
            for page in lam.get_paginator("list_event_source_mappings").paginate(FunctionName=function):
                found.update({m["UUID"]: m for m in page.get("EventSourceMappings", [])})
    return list(found.values())


def _switch_mappings(ctx: ResourceContext, lam: Any, mappings: list[dict[str, Any]], enabled: bool) -> None:
    # Only settled mappings in the wrong state: one that is Creating/Updating is looked at again by the next poll.
    wrong = "Disabled" if enabled else "Enabled"
    for mapping in mappings:
        if mapping["State"] == wrong:
            # ResourceInUseException: another update is in flight; the next poll sees the result and tries again.
            aws_call(f"UpdateEventSourceMapping {mapping['UUID']}", lam.update_event_source_mapping,
                     ("ResourceInUseException",), UUID=mapping["UUID"], Enabled=enabled)
            ctx.log.info("lambda.mapping_switched", uuid=mapping["UUID"], enabled=enabled,
                         source=mapping.get("EventSourceArn"))


def _tags(lam: Any, arn: str) -> dict[str, str]:
    with aws_errors(f"ListTags {arn}"):
        return dict(lam.list_tags(Resource=arn).get("Tags") or {})


def _encode(value: dict[str, Any]) -> str:
    # Tag values allow letters, digits and `+ - = . _ : / @` only: base64 of compact JSON fits.
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def _decode(value: str) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(value)))
