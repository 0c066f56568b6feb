"""Hooks: an SSM Automation runbook or a Lambda function run before (`preHooks`) or after (`postHooks`) a layer or a
DRS wave, the SRM callouts / ASR scripts of this product.

A hook runs as a resource of the `hook.ssm_automation` or `hook.lambda` module, so these models double as the
modules' parameters. Imported by plans.model, plans.drs and workflow code: pydantic models and pure functions only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

SSM_AUTOMATION_ACTION = "hook.ssm_automation"
SSM_AUTOMATION_STOP_ACTION = "hook.ssm_automation_stop"
LAMBDA_ACTION = "hook.lambda"
LAMBDA_MAX_SECONDS = 900  # Lambda's own limit on a function's timeout
HOOK_MAX_SECONDS = 24 * 3600
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
# Strings in SSM parameters and Lambda payloads may name the run: "${dr.mode}" becomes "drill", and so on.
PLACEHOLDERS = ("executionId", "plan", "mode", "phase", "layer", "hook")


class HookModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class SsmAutomationSpec(HookModel):
    # botocore: DocumentARN, DocumentVersion and AutomationParameterMap of StartAutomationExecution.
    document_name: str = Field(pattern=r"^[a-zA-Z0-9_\-.:/]{3,128}$")
    document_version: str | None = Field(default=None, pattern=r"^([$]LATEST|[$]DEFAULT|[1-9][0-9]*)$")
    parameters: dict[str, list[str]] = Field(default_factory=dict, max_length=200)

    @field_validator("parameters", mode="before")
    @classmethod
    def _values_are_lists(cls, value: Any) -> Any:
        # SSM takes a list of strings per parameter; a plan may write a single value as a scalar.
        if not isinstance(value, dict):
            return value
        fixed: dict[Any, Any] = {}
        for key, item in value.items():
            items = item if isinstance(item, list) else [item]
            if not all(isinstance(i, str) for i in items):
                raise ValueError(f"parameter {key!r}: SSM parameter values are strings (quote numbers and booleans)")
            if not 1 <= len(str(key)) <= 50 or len(items) > 50 or any(not 1 <= len(i) <= 512 for i in items):
                raise ValueError(f"parameter {key!r}: a name of 1-50 characters and at most 50 values of "
                                 "1-512 characters each")
            fixed[key] = items
        return fixed


class LambdaSpec(HookModel):
    function_name: str = Field(min_length=1, max_length=170, pattern=r"^[A-Za-z0-9:_.$-]+$")
    qualifier: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9$_-]+$")
    # The event; the runner adds "drContext" (execution, hook, invocation id) because an invoke is not idempotent.
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("payload")
    @classmethod
    def _no_context_key(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "drContext" in value:
            raise ValueError("drContext is set by the orchestrator (execution and invocation ids): use another key")
        return value


class Hook(HookModel):
    name: str = Field(pattern=NAME_PATTERN)
    ssm_automation: SsmAutomationSpec | None = None
    lambda_: LambdaSpec | None = Field(default=None, alias="lambda")
    timeout_seconds: int = Field(default=600, ge=1, le=HOOK_MAX_SECONDS)
    account: str | None = None  # key into Plan.accounts; default: the layer's or wave's
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    # fail: the layer or wave fails and what follows does not run; continue: the hook is marked failed, the run goes on.
    on_failure: Literal["fail", "continue"] = "fail"
    # The modes it runs in (default: all). A hook that acts on production (fencing the old primary) leaves out drill.
    modes: list[Literal["drill", "planned", "disaster", "failback"]] | None = Field(default=None, min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Hook:
        if (self.ssm_automation is None) == (self.lambda_ is None):
            raise ValueError("a hook has exactly one of ssmAutomation or lambda")
        if self.lambda_ is not None and self.timeout_seconds > LAMBDA_MAX_SECONDS:
            raise ValueError(f"a lambda hook's timeoutSeconds is at most {LAMBDA_MAX_SECONDS} (Lambda's own limit)")
        return self

    @property
    def kind(self) -> str:
        return "ssmAutomation" if self.ssm_automation is not None else "lambda"

    @property
    def action(self) -> str:
        return SSM_AUTOMATION_ACTION if self.ssm_automation is not None else LAMBDA_ACTION

    @property
    def target(self) -> str:
        """What it runs, for status lines: the document or the function (with its version or qualifier)."""
        if self.ssm_automation is not None:
            version = self.ssm_automation.document_version
            return self.ssm_automation.document_name + (f":{version}" if version else "")
        assert self.lambda_ is not None
        return self.lambda_.function_name + (f":{self.lambda_.qualifier}" if self.lambda_.qualifier else "")

    def module_parameters(self) -> dict[str, Any]:
        """The parameters of the `hook.*` resource that runs this hook (camelCase, as in a plan)."""
        spec = self.ssm_automation if self.ssm_automation is not None else self.lambda_
        assert spec is not None
        return {**spec.model_dump(by_alias=True, exclude_none=True), "timeoutSeconds": self.timeout_seconds}


def check_hook_names(pre: list[Hook], post: list[Hook]) -> None:
    """A layer's or wave's hooks are told apart by name in its status and in their idempotency tokens."""
    seen: set[str] = set()
    for hook in [*pre, *post]:
        if hook.name in seen:
            raise ValueError(f"hook name {hook.name!r} is used twice (preHooks and postHooks share names)")
        seen.add(hook.name)


def substitute(value: Any, context: dict[str, str]) -> Any:
    """`value` with "${dr.<key>}" replaced in every string, for the keys of PLACEHOLDERS."""
    if isinstance(value, str):
        for key, replacement in context.items():
            value = value.replace("${dr." + key + "}", replacement)
        return value
    if isinstance(value, list):
        return [substitute(item, context) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, context) for key, item in value.items()}
    return value
