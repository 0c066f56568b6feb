"""Who sent a request, read from its SigV4 credential scope (`Credential=AKID/date/region/service/aws4_request`) the
way moto decides it, so an emulator and moto agree on the account behind the same credentials."""

from __future__ import annotations

import os
import re
from typing import Any

DEFAULT_ACCOUNT = "123456789012"  # moto's, for requests that name no account

_SCOPE = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")


def credential_scope(environ: dict[str, Any]) -> re.Match[str] | None:
    """The scope's groups: `key` (access key id), `region`, `service` (the signing name); None when unsigned."""
    return _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))


def signing_service(environ: dict[str, Any]) -> str | None:
    found = credential_scope(environ)
    return found["service"] if found else None


def caller(environ: dict[str, Any]) -> tuple[str, str]:
    """(account, region) of a request: moto's env/header overrides, else the access key's owner (assumed-role keys
    belong to the role's account), else moto's default account."""
    found = credential_scope(environ)
    region = found["region"] if found else "us-east-1"
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"], region
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"], region
    if not found:
        return DEFAULT_ACCOUNT, region
    from moto.iam.models import get_account_id_from

    return get_account_id_from(found["key"]), region
