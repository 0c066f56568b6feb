"""One development identity provider for the whole test session: the worker trusts it, helpers mint its tokens."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from drctl.dev_idp import DevIdentityProvider


@functools.cache
def session_idp() -> DevIdentityProvider:
    return DevIdentityProvider.create(Path(tempfile.mkdtemp(prefix="dr-test-auth-")))


def token_for(subject: str, roles: list[str] | tuple[str, ...] = ("admin",), **claims: object) -> str:
    return session_idp().token(subject, list(roles), **claims)
