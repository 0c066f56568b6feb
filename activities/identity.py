"""The worker's trust configuration (who issues tokens, for which audience, with which keys), read by an activity
at workflow start so the workflow keeps it in state and verifies every message deterministically.

DR_AUTH_TRUST_FILE names a JSON file: {"issuer", "audience", "rolesClaim"?, "leewaySeconds"?, "runClaim"?,
"approvalsRequireRunBoundToken"?, and one of "keys" (a JWKS "keys" list), "jwksFile" (a JWKS document beside it) or
"jwksUri" (the IdP's JWKS endpoint)}.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.identity import LOAD_TRUST, TrustConfig

TRUST_FILE_ENV = "DR_AUTH_TRUST_FILE"
_JWKS_TIMEOUT_SECONDS = 10

log = structlog.get_logger("dr.identity")


def read_trust(path: str | None = None) -> TrustConfig:
    path = path or os.environ.get(TRUST_FILE_ENV)
    if not path:
        raise _misconfigured(f"this worker has no identity configuration: set {TRUST_FILE_ENV} "
                             "(for the sandbox: `drctl auth init`)")
    file = Path(path)
    try:
        data: dict[str, Any] = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise _misconfigured(f"{file}: cannot read the trust configuration: {exc}") from None
    if "jwksFile" in data:
        data["keys"] = json.loads((file.parent / data.pop("jwksFile")).read_text())["keys"]
    elif "jwksUri" in data:
        data["keys"] = _fetch_jwks(data.pop("jwksUri"))
    try:
        return TrustConfig.model_validate({
            "issuer": data.get("issuer"), "audience": data.get("audience"), "keys": data.get("keys"),
            **({"roles_claim": data["rolesClaim"]} if "rolesClaim" in data else {}),
            **({"leeway_seconds": data["leewaySeconds"]} if "leewaySeconds" in data else {}),
            **({"run_claim": data["runClaim"]} if "runClaim" in data else {}),
            **({"approvals_require_bound_token": data["approvalsRequireRunBoundToken"]}
               if "approvalsRequireRunBoundToken" in data else {}),
        })
    except ValidationError as exc:
        raise _misconfigured(f"{file}: {exc}") from None


def _fetch_jwks(uri: str) -> list[dict[str, Any]]:
    # Retryable on purpose: an IdP that is briefly unreachable must not fail the run.
    with urllib.request.urlopen(uri, timeout=_JWKS_TIMEOUT_SECONDS) as response:  # noqa: S310 (configured URL)
        return json.loads(response.read())["keys"]


def _misconfigured(message: str) -> ApplicationError:
    return ApplicationError(message, type="IdentityNotConfigured", non_retryable=True)


@activity.defn(name=LOAD_TRUST)
def load_trust() -> TrustConfig:
    trust = read_trust()
    log.info("identity.trust_loaded", issuer=trust.issuer, audience=trust.audience, keys=len(trust.keys))
    return trust
