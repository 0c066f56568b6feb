"""`drctl keys`: the payload key file (workers/encryption.py) — a new writing key, and what the file holds.

A rotation adds a key and makes it the writing key; older keys stay, because histories they sealed (a drill waiting at
a gate, retained closed runs) must still open. Workers read the file at start: restart them to write with the new key.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from drctl.dev_idp import auth_dir

KEY_FILE_NAME = "payload-keys.json"  # beside the development trust file


def default_key_file() -> Path:
    from workers.encryption import KEYS_FILE_ENV

    configured = os.environ.get(KEYS_FILE_ENV)
    return Path(configured) if configured else auth_dir() / KEY_FILE_NAME


def new_key_id() -> str:
    """Sortable by creation and unique without coordination: the date, and a random part for two on one day."""
    return f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"


def ensure_local_key_file(path: Path) -> bool:
    """A key file with one local key at `path` unless one exists; whether it was created."""
    from workers.encryption import local_entry, write_key_file

    if path.exists():
        return False
    key_id = new_key_id()
    write_key_file(path, [local_entry(key_id)], key_id)
    return True


def export_line(path: Path) -> str:
    from workers.encryption import KEYS_FILE_ENV

    return f"export {KEYS_FILE_ENV}={path.resolve()}"


def _entries(path: Path) -> list[dict[str, Any]]:
    """The file's entries as they are (KMS-wrapped ones stay wrapped: rotating needs no kms:Decrypt)."""
    if not path.exists():
        return []
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: cannot read the payload key file: {exc}") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) and isinstance(k.get("id"), str) for k in keys):
        raise click.ClickException(f"{path}: expected {{\"writeKey\": ID, \"keys\": [{{\"id\": ...}}, ...]}}")
    return keys


_FILE = click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="The key file (default: $DR_PAYLOAD_KEYS_FILE, else payload-keys.json in $DR_AUTH_DIR or "
                          ".state/auth).")


@click.group()
def keys() -> None:
    """The keys that seal payloads in Temporal's history (inputs, tokens, results, failures)."""


@keys.command("rotate")
@_FILE
@click.option("--kms", "kms_key_id", default=None, metavar="KMS_KEY_ID",
              help="Wrap the new data key with this AWS KMS key (id, ARN or alias); default: a local key.")
@click.option("--region", default=None, help="The KMS key's region (default: boto3's).")
def rotate(path: Path | None, kms_key_id: str | None, region: str | None) -> None:
    """Add a new writing key; older keys stay so that what they sealed still opens."""
    from workers.encryption import kms_entry, local_entry, write_key_file

    if region and not kms_key_id:
        raise click.UsageError("--region applies to --kms only")
    path = path or default_key_file()
    entries = _entries(path)
    key_id = new_key_id()
    while key_id in {e["id"] for e in entries}:
        key_id = new_key_id()
    if kms_key_id:
        try:
            entry = kms_entry(key_id, kms_key_id, region)
        except Exception as exc:  # botocore's: no such key, disabled, access denied, no credentials
            raise click.ClickException(f"KMS cannot make a data key with {kms_key_id}: "
                                       f"{' '.join(str(exc).split())}") from None
    else:
        entry = local_entry(key_id)
    write_key_file(path, [*entries, entry], key_id)
    kind = f"wrapped by KMS key {kms_key_id}" if kms_key_id else "local"
    click.echo(f"writing key {key_id} ({kind}) added to {path}; {len(entries)} older key(s) kept")
    click.echo(f"restart workers to write with it: {export_line(path)}")


@keys.command("show")
@_FILE
def show(path: Path | None) -> None:
    """List the keys (ids and kinds, never material) and which one writes."""
    path = path or default_key_file()
    if not path.exists():
        raise click.ClickException(f"no payload key file at {path}: `drctl auth init` or `drctl keys rotate` "
                                   "creates one")
    entries = _entries(path)
    write_key = json.loads(path.read_text()).get("writeKey")
    click.echo(f"{path}:")
    for entry in entries:
        wrapped = entry.get("kms")
        kind = f"kms {wrapped.get('keyId')}" if isinstance(wrapped, dict) else "local"
        click.echo(f"  {entry['id']}  {kind}{'  (writing)' if entry['id'] == write_key else ''}")
