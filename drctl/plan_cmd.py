"""drctl plan: check and inspect recovery plans before any workflow runs them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from drctl.errors import fail
from plans.approvals import ApprovalPolicy
from plans.catalogue import Catalogue
from plans.loader import LoadResult, read_plan
from plans.model import PHASE_ORDER, Plan

EXIT_INVALID = 2
EXIT_DRIFT = 1  # drift: the live launch settings differ from the plan's
EXIT_AWS = 3  # AWS could not be read (unreachable, credentials, permissions)



def catalogue() -> Catalogue:
    """The actions this installation's workers run, which plans are checked against. Imported when a command needs
    it: it loads every service module (and boto3), which `drctl --help` should not pay for."""
    from activities.core.registry import catalogue as registered

    return registered()

@click.group()
def plan() -> None:
    """Check and inspect recovery plans."""


@plan.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=str))
@click.pass_context
def validate(ctx: click.Context, files: tuple[str, ...]) -> None:
    """Check plan files: schema, actions, parameters and cross-references.

    Prints every problem as FILE:LINE: field: message. Exits 0 when all files are valid, 2 otherwise.
    """
    valid = True
    for file in files:
        result = read_plan(file, catalogue=catalogue())
        if result.ok and result.plan is not None:
            # The hash an approver checks against the run's (drctl drill status, the memo, the notification).
            click.echo(f"OK: {file} ({_summary(result.plan)}) {result.plan.digest()}")
        else:
            valid = False
            _echo_errors(result)
    ctx.exit(0 if valid else EXIT_INVALID)


@plan.command()
@click.argument("file", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True,
              help="Print the validated plan as one JSON object: the `plan` of a workflow input.")
@click.pass_context
def show(ctx: click.Context, file: str, as_json: bool) -> None:
    """Print a plan as its phases, layers and resources, with the account and region each resource acts in."""
    result = read_plan(file, catalogue=catalogue())
    if not result.ok or result.plan is None:
        _echo_errors(result)
        ctx.exit(EXIT_INVALID)
    if as_json:
        click.echo(result.plan.model_dump_json(by_alias=True, exclude_defaults=True))
        return
    for line in _tree(result.plan):
        click.echo(line)


@plan.command()
def actions() -> None:
    """List the actions a plan can use, the phases each supports and its parameters."""
    from plans.manifest_names import NAMES

    for name, spec in catalogue().items():
        phases = ", ".join(p.value for p in PHASE_ORDER if p in spec.phases)
        click.echo(f"{name}  [{phases}]")
        click.echo(f"  {spec.summary}")
        framework = [framework_name for framework_name, entry in NAMES.items() if entry.action == name]
        if framework:
            click.echo(f"  DR Orchestrator Framework: {', '.join(framework)}")
        for field_name, info in spec.parameters.model_fields.items():
            required = " (required)" if info.is_required() else ""
            click.echo(f"    {info.alias or field_name}{required}")


@plan.command()
@click.argument("file", type=click.Path(path_type=str))
@click.option("--show", default=5, show_default=True, help="Hostnames listed per protection group.")
@click.pass_context
def preview(ctx: click.Context, file: str, show: int) -> None:
    """Resolve the plan's protection groups against the configured AWS (AWS_ENDPOINT_URL for the sandbox), wave by
    wave: servers, replication state and lag, unhealthy servers, and the DRS quotas of each account and region.

    Changes nothing. Exits 0, 1 when a server could not be recovered now, 2 for an invalid plan, 3 when AWS cannot
    be read.
    """
    # boto3 and the activities are imported only when asked: the other commands stay quick.
    from drctl.plan_preview import preview_lines

    loaded = _plan_or_exit(ctx, file)
    click.echo(f"plan {loaded.name} {loaded.digest()}")  # the hash an approver compares with the run's
    with _aws_errors():
        lines, problems = preview_lines(loaded, show)
    for line in lines:
        click.echo(line)
    ctx.exit(1 if problems else 0)


@plan.command()
@click.argument("file", type=click.Path(path_type=str))
@click.pass_context
def drift(ctx: click.Context, file: str) -> None:
    """List every launch setting (per server) where the live DRS launch configuration or EC2 launch template
    differs from the plan's protection groups. Exits 0 without drift, 1 with, 2 for an invalid plan, 3 when AWS
    cannot be read."""
    from drctl.plan_preview import drift_lines

    loaded = _plan_or_exit(ctx, file)
    with _aws_errors():
        lines, drifted = drift_lines(loaded)
    for line in lines:
        click.echo(line)
    ctx.exit(EXIT_DRIFT if drifted else 0)


@plan.command(name="import")
@click.option("--instantiate", "instantiate_manifest", metavar="FILE", help="Framework manifest of INSTANTIATE.")
@click.option("--activate", "activate_manifest", metavar="FILE", help="Framework manifest of ACTIVATE.")
@click.option("--cleanup", "cleanup_manifest", metavar="FILE", help="Framework manifest of CLEANUP.")
@click.option("--replicate", "replicate_manifest", metavar="FILE", help="Framework manifest of REPLICATE.")
@click.option("--name", required=True, help="The plan's name (lowercase letters, digits, '-').")
@click.option("--description", default="", help="The plan's description.")
@click.option("--primary-region", required=True, help="Where the application runs normally.")
@click.option("--recovery-region", required=True, help="Where it recovers to.")
@click.option("--account", "accounts", multiple=True, required=True, metavar="KEY=ID[:ROLE]",
              help="An account of the plan: its key, id and (for a target account) the role to assume. A manifest's "
                   "AccountId picks the account with that id. Repeat for several.")
@click.option("--default-account", metavar="KEY", help="Where resources without an AccountId act (default: the "
                                                       "first --account).")
@click.option("-o", "--output", type=click.Path(path_type=str, dir_okay=False), help="Write the plan here "
                                                                                      "(default: standard output).")
@click.pass_context
def import_(ctx: click.Context, instantiate_manifest: str | None, activate_manifest: str | None,
            cleanup_manifest: str | None, replicate_manifest: str | None, name: str, description: str,
            primary_region: str, recovery_region: str, accounts: tuple[str, ...], default_account: str | None,
            output: str | None) -> None:
    """Turn DR Orchestrator Framework manifests (one per phase) into a plan file of ours.

    Framework names and parameters are mapped onto our actions; `!Import` and `resolve:ssm:` references are kept and
    resolved when the plan runs. Prints every problem as FILE:LINE: field: message and exits 2; 0 when the plan was
    written.
    """
    from plans.loader import validate_plan_data

    manifests = {"INSTANTIATE": instantiate_manifest, "ACTIVATE": activate_manifest, "CLEANUP": cleanup_manifest,
                 "REPLICATE": replicate_manifest}
    phases = {phase: {"manifest": file} for phase, file in manifests.items() if file}
    if not phases:
        fail("give at least one manifest: --instantiate, --activate, --cleanup or --replicate", EXIT_INVALID)
    account_map: dict[str, dict[str, str]] = {}
    for spec in accounts:
        key, _, rest = spec.partition("=")
        account_id, _, role = rest.partition(":")
        if not key or not account_id:
            fail(f"--account {spec!r}: write KEY=ID or KEY=ID:ROLE", EXIT_INVALID)
        account_map[key] = {"id": account_id, **({"roleName": role} if role else {})}
    data = {"name": name, "description": description, "accounts": account_map,
            "regions": {"primary": primary_region, "recovery": recovery_region},
            "defaults": {"account": default_account or next(iter(account_map))}, "phases": phases}
    # Manifest paths are taken as given (relative to the working directory), and named so in errors.
    result = validate_plan_data(data, "drctl plan import", catalogue=catalogue())
    if not result.ok or result.plan is None:
        _echo_errors(result, err=True)
        ctx.exit(EXIT_INVALID)
    assert result.plan is not None
    text = _plan_yaml(result.plan, manifests)
    if output:
        with open(output, "w", encoding="utf-8") as out:
            out.write(text)
        click.echo(f"wrote {output} ({_summary(result.plan)})", err=True)
    else:
        click.echo(text, nl=False)


def _plan_yaml(loaded: Plan, manifests: dict[str, str | None]) -> str:
    import io

    from ruamel.yaml import YAML

    body = {"apiVersion": loaded.api_version,
            **loaded.model_dump(mode="json", by_alias=True, exclude_defaults=True)}
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 120
    stream = io.StringIO()
    sources = ", ".join(f"{phase} {file}" for phase, file in manifests.items() if file)
    stream.write(f"# Imported by `drctl plan import` from DR Orchestrator Framework manifests: {sources}.\n"
                 "# '!Import x' and 'resolve:ssm:/p' values are resolved in the resource's account and region when "
                 "it runs.\n")
    yaml.dump(body, stream)
    return stream.getvalue()


def _plan_or_exit(ctx: click.Context, file: str) -> Plan:
    result = read_plan(file, catalogue=catalogue())
    if not result.ok or result.plan is None:
        _echo_errors(result)
        ctx.exit(EXIT_INVALID)
    assert result.plan is not None
    return result.plan


@contextmanager
def _aws_errors() -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError
    from temporalio.exceptions import ApplicationError

    try:
        yield
    except (BotoCoreError, ClientError, ApplicationError) as exc:
        fail(f"cannot read AWS: {exc}", EXIT_AWS)


def _echo_errors(result: LoadResult, err: bool = False) -> None:
    for error in result.errors:
        click.echo(error.render(), err=err)


def _summary(plan: Plan) -> str:
    layers = [layer for phase in plan.phases.values() for layer in phase.layers]
    resources = sum(len(layer.resources) for layer in layers)
    return f"plan {plan.name}: {len(plan.phases)} phases, {len(layers)} layers, {resources} resources"


def _tree(plan: Plan) -> list[str]:
    lines = [f"plan {plan.name} ({plan.api_version}): {_summary(plan).split(': ', 1)[1]}"]
    if plan.description:
        lines.append(f"  {plan.description}")
    lines.append(f"regions: primary {plan.regions.primary}, recovery {plan.regions.recovery}")
    lines.append("accounts:")
    key_width = max(len(key) for key in plan.accounts)
    for key, account in plan.accounts.items():
        if account.role_name is None:
            access = "the worker's own credentials"
        else:
            access = f"role {account.role_name}"
            if account.external_id is not None:
                source = next(k for k in ("value", "env", "ssm") if getattr(account.external_id, k) is not None)
                access += f", externalId from {source}"
        default = "  (default)" if key == plan.defaults.account else ""
        lines.append(f"  {key:<{key_width}}  {account.id}  {access}{default}")
    for phase in PHASE_ORDER:
        phase_plan = plan.phases.get(phase)
        if phase_plan is None or not phase_plan.layers:
            lines.append(f"{phase.value}: no layers")
            continue
        lines.append(phase.value + (f"  [{_approval_text(phase_plan.approval_policy)}]"
                                    if phase_plan.approval_policy else ""))
        for number, layer in enumerate(phase_plan.layers, start=1):
            flags = [f"timeout {layer.timeout_seconds}s"]
            flags += [_approval_text(layer.approval_policy)] if layer.approval_policy else []
            flags += ["continue on error"] if layer.continue_on_error else []
            lines.append(f"  {number}. layer {layer.name}  ({', '.join(flags)})")
            name_width = max(len(r.name) for r in layer.resources)
            action_width = max(len(r.action) for r in layer.resources)
            for resource in layer.resources:
                lines.append(
                    f"       {resource.name:<{name_width}}  {resource.action:<{action_width}}  "
                    f"account {plan.account_key_for(resource)}  region {plan.region_for(resource)}"
                )
    return lines


def _approval_text(policy: ApprovalPolicy) -> str:
    who = f" from {'/'.join(policy.roles)}" if policy.roles else ""
    text = f"approval required: {policy.approvals}{who}"
    if policy.timeout_minutes:
        text += f", {policy.on_timeout} after {policy.timeout_minutes} min"
    return text
