"""Resolving a resource's `!Import` and `resolve:ssm:` references, in the resource's account and region, just before
the resource starts (plans/references.py has the syntax).

Values are never logged: an SSM parameter may hold something sensitive. SecureString parameters are refused rather
than decrypted, because the resolved parameters travel in the workflow history (as every resource's parameters do)
and would put the secret there in clear; a module that needs a secret should take the parameter's name and read it
itself. The resolved parameters are validated against the module before anything starts, so a reference that gives
a wrong value (text for a count) fails here, naming the reference and the field, not half-way through a failover.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from activities.core import registry
from activities.core.aws import aws_errors, error_code, fatal
from activities.core.context import ResourceContext
from contracts.activities import ResourceCall
from plans.drs import DRS_ACTION, DrsRecoveryParameters
from plans.model import Resource
from plans.references import Reference, ReferenceSyntaxError, find_references, substitute


def resolve_resource(ctx: ResourceContext) -> Resource:
    """The call's resource with every reference replaced by its value; non-retryable errors name what is missing."""
    call = ctx.call
    resource = call.resource
    references: dict[Reference, list[tuple[str | int, ...]]] = {}
    for path, found in find_references(resource.parameters):
        if isinstance(found, ReferenceSyntaxError):
            raise fatal(f"resource {resource.name}: parameters.{_dotted(path)}: {found}", "InvalidReference")
        references.setdefault(found, []).append(path)
    if not references:
        return resource
    values: dict[Reference, Any] = {}
    exports = _Exports(ctx)
    for reference in references:
        if reference.kind == "import":
            values[reference] = exports.value(reference)
        else:
            values[reference] = _ssm_value(ctx, reference)
    parameters = substitute(resource.parameters, values)
    _validate(call, parameters, references)
    ctx.log.info("references.resolved", imports=sum(r.kind == "import" for r in references),
                 ssm=sum(r.kind == "ssm" for r in references))  # counts only: values may be secrets
    return resource.model_copy(update={"parameters": parameters})


class _Exports:
    """CloudFormation exports of the resource's account and region, read page by page only as far as needed, once
    per activity however many imports the resource has."""

    def __init__(self, ctx: ResourceContext) -> None:
        self.ctx = ctx
        self.seen: dict[str, str] = {}
        self.token: str | None = None
        self.complete = False

    def value(self, reference: Reference) -> str:
        while reference.name not in self.seen and not self.complete:
            kwargs = {"NextToken": self.token} if self.token else {}
            with aws_errors(f"ListExports for {reference.render()} of resource {self.ctx.call.resource.name}"):
                page = self.ctx.client("cloudformation").list_exports(**kwargs)
            self.seen.update({export["Name"]: export["Value"] for export in page.get("Exports", [])})
            self.token = page.get("NextToken")
            self.complete = not self.token
        if reference.name not in self.seen:
            call = self.ctx.call
            raise fatal(f"resource {call.resource.name}: {reference.render()}: no CloudFormation export named "
                        f"{reference.name!r} in account {call.account.id}, {call.region}", "ExportNotFound")
        return self.seen[reference.name]


def _ssm_value(ctx: ResourceContext, reference: Reference) -> str:
    call = ctx.call
    where = f"resource {call.resource.name}: {reference.render()}"
    try:
        # Without decryption: a SecureString is refused below, so its plaintext never reaches this process.
        parameter = ctx.client("ssm").get_parameter(Name=reference.name, WithDecryption=False)["Parameter"]
    except ClientError as exc:
        if error_code(exc) in ("ParameterNotFound", "ParameterVersionNotFound"):
            raise fatal(f"{where}: no SSM parameter {reference.name!r} in account {call.account.id}, {call.region}",
                        "ParameterNotFound") from None
        with aws_errors(f"{where}: GetParameter"):  # permanent ones fail the resource; throttling is retried
            raise
    if parameter.get("Type") == "SecureString":
        raise fatal(f"{where}: is a SecureString; secrets are not resolved into plan parameters (they would be "
                    "stored in the workflow history): give the module the parameter's name instead",
                    "SecureStringRefused")
    return str(parameter["Value"])


def _validate(call: ResourceCall, parameters: Any, references: dict[Reference, list[tuple[str | int, ...]]]) -> None:
    module = registry.get(call.resource.action)
    model = DrsRecoveryParameters if call.resource.action == DRS_ACTION else getattr(module, "Parameters", None)
    if model is None:
        return  # the start activity reports an unknown action
    try:
        model.model_validate(parameters)
    except ValidationError as exc:
        by_path = {path: reference for reference, paths in references.items() for path in paths}
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            source = next((ref for path, ref in by_path.items() if loc[: len(path)] == path), None)
            origin = f" (from {source.render()})" if source else ""
            # The message only: pydantic's own text would quote the value, which may be sensitive.
            problems.append(f"parameters.{_dotted(loc)}{origin}: {error['msg']}")
        raise fatal(f"resource {call.resource.name}: the resolved parameters are invalid: {'; '.join(problems)}",
                    "InvalidParameters") from None


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in path)
