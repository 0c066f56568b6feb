"""One development identity provider for the whole test session: the worker trusts it, helpers mint its tokens;
and one payload key file, which every client and worker of the session seals payloads with."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from temporalio.converter import DataConverter

from drctl.dev_idp import DevIdentityProvider


@functools.cache
def session_idp() -> DevIdentityProvider:
    return DevIdentityProvider.create(Path(tempfile.mkdtemp(prefix="dr-test-auth-")))


@functools.cache
def session_keys_file() -> Path:
    """The session's payload key file, beside its trust file, as `drctl auth init` makes it: every client and worker
    of the session (in process, drctl and `drctl worker` subprocesses through DR_PAYLOAD_KEYS_FILE) seals with it."""
    from drctl.keys_cmd import KEY_FILE_NAME, ensure_local_key_file

    path = session_idp().directory / KEY_FILE_NAME
    ensure_local_key_file(path)
    return path


@functools.cache
def session_converter() -> DataConverter:
    """The session's data converter: the same one the Replayers of tests must use to read their runs' histories."""
    from workers.encryption import KeyRing, data_converter

    return data_converter(KeyRing.load(session_keys_file()))


def token_for(subject: str, roles: list[str] | tuple[str, ...] = ("admin",), **claims: object) -> str:
    return session_idp().token(subject, list(roles), **claims)
