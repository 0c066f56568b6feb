"""Who is asking: verification of the signed tokens (JWT) that every start and control message carries.

Runs inside workflow code (update validators), so it is deterministic: PyJWT checks the signature, issuer and
audience, but time claims are checked here against the time the caller passes (`workflow.now()`), never the clock.
Only asymmetric algorithms are accepted: a shared secret would let every verifier mint tokens.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field

LOAD_TRUST = "dr.auth.trust"  # the activity that reads the worker's trust configuration
ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")


class TrustConfig(BaseModel):
    """What the worker trusts: loaded by an activity at workflow start and kept in the run's state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    keys: list[dict[str, Any]] = Field(min_length=1)  # public JWKs, as a JWKS document's "keys"
    roles_claim: str = "roles"  # a list of role names (OIDC providers differ: "groups", "cognito:groups", ...)
    leeway_seconds: int = Field(default=30, ge=0, le=300)  # clock skew between the IdP and Temporal
    # A token that carries this claim (a workflow id, or a list of them) is bound to those runs: any message it
    # signs to another run is denied, so a token seen in one run's history is worth nothing in the next.
    run_claim: str = "dr_run"
    # Approvals and rejections only with a token bound to the run (above): the production setting where the IdP can
    # issue such tokens (e.g. by token exchange). Off by default: generic OIDC tokens carry no run claim.
    approvals_require_bound_token: bool = False


class Principal(BaseModel):
    """A verified caller. The token itself is never kept: its hash identifies it in the audit trail."""

    subject: str
    roles: list[str]
    token_sha256: str
    expires_at: datetime
    name: str | None = None
    # The runs the token is bound to (its run claim); None: not bound, valid for any run.
    runs: list[str] | None = None
    # Identifies the token for "one decision per token": the hash of its `jti`, else of the whole token. Never the
    # jti itself: a jti in the run's state would let whoever reads it tell which token to replay.
    use_sha256: str = ""


class IdentityError(Exception):
    """The token proves nothing: why, in words safe to show the caller (no token content)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def verify_token(token: str | None, trust: TrustConfig, now: datetime) -> Principal:
    if not token:
        raise IdentityError("no token: every start and control message must carry a signed token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise IdentityError(f"malformed token: {exc}") from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise IdentityError(f"token algorithm {algorithm!r} is not accepted (only {', '.join(ALGORITHMS)})")
    key = _key_for(header.get("kid"), trust)
    try:
        claims = jwt.decode(
            token, key=key, algorithms=[algorithm], audience=trust.audience, issuer=trust.issuer,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "require": ["exp", "sub", "iss", "aud"]},
        )
    except jwt.InvalidAudienceError:
        raise IdentityError(f"token is for another audience (this worker accepts {trust.audience!r})") from None
    except jwt.InvalidIssuerError:
        raise IdentityError(f"token is from another issuer (this worker trusts {trust.issuer!r})") from None
    except jwt.InvalidSignatureError:
        raise IdentityError("token signature does not verify against the trusted keys") from None
    except jwt.PyJWTError as exc:
        raise IdentityError(f"invalid token: {exc}") from None
    _check_times(claims, now, trust.leeway_seconds)
    roles = claims.get(trust.roles_claim, [])
    if isinstance(roles, str):
        roles = roles.split()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise IdentityError(f"claim {trust.roles_claim!r} must be a list of role names")
    jti = claims.get("jti")
    return Principal(subject=str(claims["sub"]), roles=sorted(set(roles)), token_sha256=token_hash(token),
                     expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
                     name=claims.get("name") or claims.get("email"), runs=_bound_runs(claims, trust.run_claim),
                     use_sha256=token_hash(f"jti:{jti}") if isinstance(jti, str) and jti else token_hash(token))


def binding_problem(principal: Principal, workflow_id: str) -> str | None:
    """Why a token bound to other runs may not be used on `workflow_id`; None when it may."""
    if principal.runs is None or workflow_id in principal.runs:
        return None
    return f"token is bound to run(s) {', '.join(principal.runs)}, not to {workflow_id}"


def _bound_runs(claims: dict[str, Any], claim: str) -> list[str] | None:
    value = claims.get(claim)
    if value is None:
        return None
    runs = [value] if isinstance(value, str) else value
    if not isinstance(runs, list) or not runs or not all(isinstance(r, str) and r for r in runs):
        raise IdentityError(f"claim {claim!r} must be a workflow id or a non-empty list of them")
    return list(runs)


def _key_for(kid: str | None, trust: TrustConfig) -> Any:
    candidates = [k for k in trust.keys if kid is None or k.get("kid") == kid]
    if not candidates:
        raise IdentityError(f"token key id {kid!r} is not among the trusted keys")
    if len(candidates) > 1:
        raise IdentityError("token names no key id and several keys are trusted")
    try:
        return jwt.PyJWK.from_dict(candidates[0]).key
    except jwt.PyJWTError as exc:
        raise IdentityError(f"trusted key {kid!r} is unusable: {exc}") from None


def _check_times(claims: dict[str, Any], now: datetime, leeway: int) -> None:
    at = now.timestamp()
    try:
        expires = float(claims["exp"])
        not_before = float(claims.get("nbf", expires - 1))
    except (TypeError, ValueError):
        raise IdentityError("token time claims are not numbers") from None
    if at > expires + leeway:
        raise IdentityError(f"token expired at {datetime.fromtimestamp(expires, UTC).isoformat()}")
    if at + leeway < not_before:
        raise IdentityError("token is not valid yet")
