"""`drctl auth`: the development identity provider for the sandbox and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from drctl.dev_idp import RUN_CLAIM, DevIdentityProvider, auth_dir
from drctl.keys_cmd import KEY_FILE_NAME, ensure_local_key_file, export_line
from plans.approvals import Role

_ROLES = [role.value for role in Role]
DEMO_AUTH_DIR = Path(".state/demo/auth")  # where `drctl demo` (default --state-dir) keeps its provider


@click.group()
def auth() -> None:
    """A local identity provider: signing keys and tokens for named users (sandbox and demo only)."""


@auth.command("init")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the key and trust file go (default: $DR_AUTH_DIR or .state/auth).")
@click.option("--force", is_flag=True, help="Replace an existing key: every token signed with it stops working.")
def init(directory: Path | None, force: bool) -> None:
    """Generate a signing key and the trust file a worker loads, and a payload key file if there is none."""
    directory = directory or auth_dir()
    if (directory / "trust.json").exists() and not force:
        raise click.ClickException(f"{directory} already holds a development identity provider (use --force)")
    idp = DevIdentityProvider.create(directory)
    click.echo(f"issuer {idp.issuer}, audience {idp.audience}, key {idp.key_id}")
    click.echo(f"start workers with: DR_AUTH_TRUST_FILE={idp.trust_file.resolve()}")
    # The payload key file is kept even with --force: replacing it would make every sealed history unreadable.
    key_file = directory / KEY_FILE_NAME
    made = ensure_local_key_file(key_file)
    click.echo(f"payload key file {key_file} ({'created' if made else 'kept'}); workers and drctl need:")
    click.echo(f"    {export_line(key_file)}")


@auth.command("token")
@click.argument("subject")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(_ROLES),
              help="A role of the user (repeatable).")
@click.option("--ttl", "ttl_minutes", default=480, show_default=True, type=click.IntRange(1, 7 * 24 * 60),
              help="Minutes until the token expires.")
@click.option("--run", "runs", multiple=True, metavar="WORKFLOW_ID",
              help="Bind the token to this run (repeatable): every message it signs to another run is denied.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None)
def token(subject: str, roles: tuple[str, ...], ttl_minutes: int, runs: tuple[str, ...],
          directory: Path | None) -> None:
    """Print a signed token for SUBJECT (e.g. an e-mail address); export it as DRCTL_TOKEN.

    Each token has its own `jti`: a run accepts one decision (approve or reject) per token.
    """
    try:
        idp = DevIdentityProvider.load(directory or auth_dir())
    except FileNotFoundError as exc:
        # The demo keeps its provider beside its state, not in the default folder; say where, rather than guess.
        demo = DEMO_AUTH_DIR if directory is None and (DEMO_AUTH_DIR / "trust.json").exists() else None
        hint = f" (the demo's is in {demo}: add --dir {demo})" if demo else ""
        raise click.ClickException(f"{exc}{hint}") from None
    bound: dict[str, Any] = {RUN_CLAIM: runs[0] if len(runs) == 1 else list(runs)} if runs else {}
    click.echo(idp.token(subject, sorted(set(roles)), ttl_seconds=ttl_minutes * 60, **bound))
