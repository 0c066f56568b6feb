"""Token verification: what the workflow's validators accept and what they deny, and the dev identity provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from activities.identity import read_trust
from drctl.dev_idp import DevIdentityProvider
from plans.model import Mode
from contracts.identity import IdentityError, binding_problem, token_hash, verify_token
from workflows.rbac import GRANTS, Action, Role, allowed, roles_allowed


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return DevIdentityProvider.create(tmp_path_factory.mktemp("auth"))


@pytest.fixture(scope="module")
def trust(idp):
    return read_trust(str(idp.trust_file))


def now() -> datetime:
    return datetime.now(UTC)


def test_a_valid_token_gives_subject_roles_and_a_hash_not_the_token(idp, trust):
    token = idp.token("alice@example.com", ["operator", "auditor"])
    principal = verify_token(token, trust, now())
    assert principal.subject == "alice@example.com" and principal.roles == ["auditor", "operator"]
    assert token not in principal.model_dump_json() and len(principal.token_sha256) == 16


def test_run_claims_bind_a_token_and_each_token_has_its_own_use_hash(idp, trust):
    bound = verify_token(idp.token("a", ["admin"], dr_run="dr-x"), trust, now())
    assert bound.runs == ["dr-x"] and binding_problem(bound, "dr-x") is None
    assert binding_problem(bound, "dr-y") == "token is bound to run(s) dr-x, not to dr-y"
    several = verify_token(idp.token("a", ["admin"], dr_run=["dr-x", "dr-y"]), trust, now())
    assert binding_problem(several, "dr-y") is None
    unbound = verify_token(idp.token("a", ["admin"]), trust, now())
    assert unbound.runs is None and binding_problem(unbound, "dr-anything") is None
    assert unbound.use_sha256 != bound.use_sha256  # a fresh jti per token: a new token may decide again
    for claim in (["dr-x", 3], [], {"run": "dr-x"}):
        with pytest.raises(IdentityError, match="claim 'dr_run' must be a workflow id"):
            verify_token(idp.token("a", ["admin"], dr_run=claim), trust, now())
    # A token without a jti is identified by its own hash: it, too, decides once.
    claims = jwt.decode(idp.token("a", ["admin"]), options={"verify_signature": False})
    del claims["jti"]
    no_jti = jwt.encode(claims, idp._private_key, algorithm="ES256", headers={"kid": idp.key_id})
    assert verify_token(no_jti, trust, now()).use_sha256 == token_hash(no_jti)


@pytest.mark.parametrize("case, make, reason", [
    ("expired", lambda idp: idp.token("a", ["admin"], ttl_seconds=60, now=now().timestamp() - 3600), "expired"),
    ("not yet valid", lambda idp: idp.token("a", ["admin"], now=now().timestamp() + 3600), "not valid yet"),
    ("wrong issuer", lambda idp: idp.token("a", ["admin"], issuer="https://evil.example.com"), "another issuer"),
    ("wrong audience", lambda idp: idp.token("a", ["admin"], audience="someone-else"), "another audience"),
    ("missing", lambda idp: "", "no token"),
    ("garbage", lambda idp: "not.a.jwt", "malformed"),
])
def test_bad_tokens_are_denied_with_the_reason(idp, trust, case, make, reason):
    with pytest.raises(IdentityError, match=reason):
        verify_token(make(idp), trust, now())


def test_a_forged_token_signed_by_another_key_with_the_same_key_id_is_denied(idp, trust):
    forger = ec.generate_private_key(ec.SECP256R1())
    claims = {"iss": idp.issuer, "aud": idp.audience, "sub": "mallory", "roles": ["admin"],
              "exp": int(now().timestamp()) + 600}
    forged = jwt.encode(claims, forger, algorithm="ES256", headers={"kid": idp.key_id})
    with pytest.raises(IdentityError, match="signature"):
        verify_token(forged, trust, now())


def test_symmetric_and_unsigned_tokens_are_refused_whatever_they_claim(idp, trust):
    claims = {"iss": idp.issuer, "aud": idp.audience, "sub": "mallory", "roles": ["admin"],
              "exp": int(now().timestamp()) + 600}
    # HS256 keyed with something public (the classic algorithm confusion), and no signature at all.
    public_key_id = trust.keys[0]["kid"].encode() * 4
    for token in (jwt.encode(claims, public_key_id, algorithm="HS256"), jwt.encode(claims, None, algorithm="none")):
        with pytest.raises(IdentityError, match="not accepted"):
            verify_token(token, trust, now())


def test_expiry_is_judged_against_the_time_given_not_the_clock(idp, trust):
    token = idp.token("a", ["operator"], ttl_seconds=600)
    assert verify_token(token, trust, now() + timedelta(seconds=600))  # within the leeway
    with pytest.raises(IdentityError, match="expired"):
        verify_token(token, trust, now() + timedelta(hours=1))


def test_a_real_failover_needs_recovery_manager_or_admin_and_drills_need_operator_or_above():
    assert roles_allowed(Action.START_PLANNED_FAILOVER, Mode.PLANNED) == ["admin", "recovery-manager"]
    assert roles_allowed(Action.START_DISASTER_RECOVERY, Mode.DISASTER) == ["admin", "recovery-manager"]
    assert set(roles_allowed(Action.START_DRILL, Mode.DRILL)) == {"admin", "recovery-manager", "plan-manager",
                                                                  "operator"}
    assert not allowed(["read-only", "auditor"], Action.START_DRILL, Mode.DRILL)
    assert allowed(["auditor"], Action.VIEW_AUDIT, Mode.PLANNED) and not allowed(["operator"], Action.VIEW_AUDIT,
                                                                                   Mode.DRILL)
    assert not allowed(["not-a-role"], Action.VIEW, Mode.DRILL)
    assert set(GRANTS) == set(Role)
