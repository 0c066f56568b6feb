"""A local identity provider for the sandbox, the demo and tests: one signing key, tokens for named users.

Production trusts an OIDC provider (its issuer, audience and JWKS URL); this stands in for it with the same token
shape, so the workflow's verification is exercised exactly as it will be in production.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

DEFAULT_DIR = Path(".state/auth")
DEV_ISSUER = "https://drctl.dev-idp.local"
DEV_AUDIENCE = "dr-orchestrator"
TRUST_FILE = "trust.json"
_KEY_FILE = "signing-key.pem"
RUN_CLAIM = "dr_run"  # the claim binding a token to runs (contracts.identity.TrustConfig.run_claim)


def auth_dir() -> Path:
    return Path(os.environ.get("DR_AUTH_DIR", DEFAULT_DIR))


@dataclass
class DevIdentityProvider:
    directory: Path
    issuer: str
    audience: str
    key_id: str
    _private_key: Any

    @classmethod
    def create(cls, directory: Path, issuer: str = DEV_ISSUER, audience: str = DEV_AUDIENCE) -> DevIdentityProvider:
        """A new key pair and the trust file a worker loads (DR_AUTH_TRUST_FILE=<dir>/trust.json)."""
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        key_id = uuid.uuid4().hex[:12]
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        key_path = directory / _KEY_FILE
        key_path.write_bytes(pem)
        key_path.chmod(0o600)
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        public.update({"kid": key_id, "use": "sig", "alg": "ES256"})
        trust = {"issuer": issuer, "audience": audience, "keys": [public], "rolesClaim": "roles", "runClaim": RUN_CLAIM}
        (directory / TRUST_FILE).write_text(json.dumps(trust, indent=2) + "\n")
        return cls(directory, issuer, audience, key_id, key)

    @classmethod
    def load(cls, directory: Path) -> DevIdentityProvider:
        try:
            trust = json.loads((directory / TRUST_FILE).read_text())
            key = serialization.load_pem_private_key((directory / _KEY_FILE).read_bytes(), password=None)
        except FileNotFoundError:
            raise FileNotFoundError(f"no development identity provider in {directory}: run `drctl auth init`") \
                from None
        return cls(directory, trust["issuer"], trust["audience"], trust["keys"][0]["kid"], key)

    @classmethod
    def ensure(cls, directory: Path) -> DevIdentityProvider:
        return cls.load(directory) if (directory / TRUST_FILE).exists() else cls.create(directory)

    @property
    def trust_file(self) -> Path:
        return self.directory / TRUST_FILE

    def token(self, subject: str, roles: list[str], ttl_seconds: int = 8 * 3600, *, issuer: str | None = None,
              audience: str | None = None, now: float | None = None, **claims: Any) -> str:
        issued = int(now if now is not None else time.time())
        payload = {"iss": issuer or self.issuer, "aud": audience or self.audience, "sub": subject, "roles": roles,
                   "iat": issued, "nbf": issued, "exp": issued + ttl_seconds, "jti": uuid.uuid4().hex, **claims}
        return jwt.encode(payload, self._private_key, algorithm="ES256", headers={"kid": self.key_id})
