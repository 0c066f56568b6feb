"""The codec server's HTTP contract (issue 14, "Must show"), against `drctl codec-server` as a process: what the
Temporal UI and `temporal --codec-endpoint` send (POST /encode and /decode, payloads in protobuf JSON form, X-Namespace,
a CORS preflight from the UI's origin) and what it answers; who it refuses (401, 403) and why, in JSON, logged without
the token; requests without a token only from the configured origin on loopback; 400 for what it cannot decode."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

from drctl.dev_idp import DevIdentityProvider
from tests.cli_helpers import DRCTL
from tests.codec_helpers import call, codec_server, new_key_file
from tests.identity_helpers import session_idp, token_for
from workers.encryption import EncryptionCodec

UI = "http://127.0.0.1:8233"  # a dev UI without login: served without a token
SSO_UI = "https://temporal.example.com"  # a UI behind SSO: CORS yes, but a token is still needed
SECRET = b'{"token": "eyJ-not-a-real-token", "externalId": "ext-1234"}'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    folder = tmp_path_factory.mktemp("codec")
    new_key_file(folder / "keys.json")
    log = folder / "codec.log"
    with codec_server(folder / "keys.json", session_idp().trust_file, log, "--ui-origin", SSO_UI,
                      "--allow-unauthenticated-origin", UI) as url:
        yield url, folder, log


def clear_payload() -> dict[str, Any]:
    return json_format.MessageToDict(Payload(metadata={"encoding": b"json/plain"}, data=SECRET))


def bearer(subject: str = "viewer@example.com", roles: tuple[str, ...] = ("read-only",), **claims: Any) -> str:
    return f"Bearer {token_for(subject, roles, **claims)}"


def test_encode_then_decode_round_trip_in_protobuf_json(server: tuple[str, Path, Path]) -> None:
    url, _, _ = server
    status, _, sealed = call(f"{url}/encode", body={"payloads": [clear_payload()]}, Authorization=bearer(),
                             X_Namespace="default")
    assert status == 200
    [payload] = sealed["payloads"]
    # Protobuf JSON: metadata values and data are base64; the sealed data holds nothing of the clear one.
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"binary/encrypted"
    assert base64.b64decode(payload["metadata"]["encryption-key-id"]) == b"k1"
    assert b"ext-1234" not in base64.b64decode(payload["data"])
    status, headers, opened = call(f"{url}/decode", body=sealed, Authorization=bearer(), X_Namespace="default")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert opened == {"payloads": [clear_payload()]}
    # A payload written in clear (no codec at its writer) comes back as it was; an empty list is an empty list.
    assert call(f"{url}/decode", body={"payloads": [clear_payload()]}, Authorization=bearer())[2] == \
        {"payloads": [clear_payload()]}
    assert call(f"{url}/decode", body={"payloads": []}, Authorization=bearer())[2] == {"payloads": []}
    # An endpoint templated with the namespace (`--codec-endpoint http://host/{namespace}`) posts under it.
    assert call(f"{url}/default/decode", body=sealed, Authorization=bearer())[2] == {"payloads": [clear_payload()]}


def test_cors_preflight_and_headers_for_the_ui_origins_only(server: tuple[str, Path, Path]) -> None:
    url, _, _ = server
    for origin in (UI, SSO_UI):
        status, headers, _ = call(f"{url}/decode", method="OPTIONS", Origin=origin,
                                  Access_Control_Request_Method="POST",
                                  Access_Control_Request_Headers="authorization,content-type,x-namespace")
        assert status == 204, origin
        assert headers["Access-Control-Allow-Origin"] == origin
        assert headers["Access-Control-Allow-Credentials"] == "true"
        assert {"POST", "OPTIONS"} <= {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")}
        assert {"authorization", "content-type", "x-namespace"} <= \
            {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    status, headers, answer = call(f"{url}/decode", method="OPTIONS", Origin="https://evil.example.com",
                                   Access_Control_Request_Method="POST")
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    assert "https://evil.example.com" in answer["reason"]
    # The answer to the POST itself carries the CORS headers too, or the browser hides it from the UI.
    status, headers, _ = call(f"{url}/decode", body={"payloads": []}, Origin=SSO_UI, Authorization=bearer())
    assert status == 200 and headers["Access-Control-Allow-Origin"] == SSO_UI


@pytest.mark.parametrize(("case", "headers", "reason"), [
    ("no token", {}, "no token"),
    ("not a bearer token", {"Authorization": "Basic dXNlcjpwYXNz"}, "Bearer <token>"),
    ("garbage token", {"Authorization": "Bearer not.a.jwt"}, "malformed token"),
    ("SSO UI without a token", {"Origin": SSO_UI}, "no token"),
])
def test_401_without_a_usable_token(server: tuple[str, Path, Path], case: str, headers: dict[str, str],
                                    reason: str) -> None:
    url, _, _ = server
    status, _, answer = call(f"{url}/decode", body={"payloads": [clear_payload()]}, **headers)
    assert status == 401, case
    assert answer["error"] == "Unauthorized" and reason in answer["reason"], answer


def test_401_for_expired_and_foreign_tokens(server: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, _, _ = server
    expired = session_idp().token("viewer@example.com", ["admin"], ttl_seconds=60, now=time.time() - 3600)
    foreign = DevIdentityProvider.create(tmp_path / "other-idp").token("viewer@example.com", ["admin"])
    other_audience = session_idp().token("viewer@example.com", ["admin"], audience="another-app")
    for token, reason in ((expired, "token expired at"), (foreign, "not among the trusted keys"),
                          (other_audience, "another audience")):
        status, _, answer = call(f"{url}/decode", body={"payloads": []}, Authorization=f"Bearer {token}")
        assert (status, reason in answer["reason"]) == (401, True), answer


def test_403_for_a_valid_token_without_a_viewing_role(server: tuple[str, Path, Path]) -> None:
    url, _, _ = server
    status, _, answer = call(f"{url}/decode", body={"payloads": [clear_payload()]},
                             Authorization=bearer("nobody@example.com", ()))
    assert status == 403
    assert "nobody@example.com may not view runs" in answer["reason"] and "read-only" in answer["reason"]
    # Any role that may view every run is enough: the auditor's, not only an operator's.
    assert call(f"{url}/decode", body={"payloads": []}, Authorization=bearer(roles=("auditor",)))[0] == 200


def test_without_a_token_only_the_configured_origin(server: tuple[str, Path, Path]) -> None:
    url, _, _ = server
    status, _, answer = call(f"{url}/decode", body={"payloads": [clear_payload()]}, Origin=UI, X_Namespace="default")
    assert status == 200 and answer == {"payloads": [clear_payload()]}
    assert call(f"{url}/decode", body={"payloads": []}, Origin="http://127.0.0.1:9999")[0] == 403
    # The open origin does not make a bad token good.
    assert call(f"{url}/decode", body={"payloads": []}, Origin=UI, Authorization="Bearer not.a.jwt")[0] == 401


def test_unauthenticated_origins_only_on_loopback(tmp_path: Path) -> None:
    new_key_file(tmp_path / "keys.json")
    done = subprocess.run([DRCTL, "codec-server", "--host", "0.0.0.0", "--port", "0",
                           "--keys-file", str(tmp_path / "keys.json"), "--trust-file", str(session_idp().trust_file),
                           "--allow-unauthenticated-origin", UI], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "only on a loopback address" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([DRCTL, "codec-server", "--keys-file", str(tmp_path / "missing.json"),
                           "--trust-file", str(session_idp().trust_file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "--keys-file" in done.stderr and "missing.json" in done.stderr


def test_400_for_what_cannot_be_decoded(server: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, _, _ = server
    foreign = EncryptionCodec(new_key_file(tmp_path / "foreign.json", "k9"))
    sealed_elsewhere = json_format.MessageToDict(foreign.seal(Payload(metadata={"encoding": b"json/plain"},
                                                                      data=SECRET)))
    tampered = {**sealed_elsewhere, "metadata": {**sealed_elsewhere["metadata"],
                                                 "encryption-key-id": base64.b64encode(b"k1").decode()}}
    cases = [
        (b"not json", "body is not JSON"),
        (b'{"payloads": "x"}', 'must be {"payloads": [...]}'),
        (b'{"payloads": [{"data": "@@not base64@@"}]}', "protobuf JSON form"),
        (b'{"payloads": [{"metadata": 3}]}', "protobuf JSON form"),
    ]
    for raw, reason in cases:
        status, _, answer = call(f"{url}/decode", raw=raw, Authorization=bearer())
        assert (status, reason in answer["reason"]) == (400, True), (raw, answer)
    status, _, answer = call(f"{url}/decode", body={"payloads": [sealed_elsewhere]}, Authorization=bearer())
    assert status == 400 and "key 'k9', which is not in this key ring" in answer["reason"]
    status, _, answer = call(f"{url}/decode", body={"payloads": [tampered]}, Authorization=bearer())
    assert status == 400 and "does not authenticate" in answer["reason"]
    for path in ("/nothing", "/a/b/decode", "/decode/more"):
        assert call(f"{url}{path}", body={"payloads": []}, Authorization=bearer())[0] == 404, path


def test_requests_and_refusals_are_logged_without_the_token(server: tuple[str, Path, Path]) -> None:
    url, _, log = server
    token = token_for("logged@example.com", ["auditor"])
    assert call(f"{url}/decode", body={"payloads": []}, Authorization=f"Bearer {token}", X_Namespace="ns-x")[0] == 200
    refused = token_for("refused@example.com", [])
    assert call(f"{url}/decode", body={"payloads": []}, Authorization=f"Bearer {refused}")[0] == 403
    text = log.read_text()
    assert "codec.request" in text and "subject=logged@example.com" in text and "namespace=ns-x" in text
    assert "codec.refused" in text and "status=403" in text and "refused@example.com may not view runs" in text
    assert token not in text and refused not in text and token.split(".")[1] not in text
