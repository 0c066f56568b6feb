"""The codec server: Temporal's remote codec HTTP protocol, so that people allowed to view runs read sealed payloads
in the Temporal Web UI and the `temporal` CLI (`--codec-endpoint`), while the namespace's histories stay sealed.

Protocol (what the UI and the CLI send): POST <endpoint>/decode or /encode (also /{namespace}/decode, for endpoints
templated with the namespace), body {"payloads": [Payload, ...]} in protobuf's JSON form (metadata values and data
in base64), header X-Namespace; the answer has the same shape.

Authorization: `Authorization: Bearer <JWT>`, verified against the worker's trust configuration (the same issuer,
audience and keys the workflows verify), and the token's roles must grant `view` on every kind of run: a payload does
not say which run it came from, so reading it needs the right to view any run, drills and real failovers alike.
A development UI without login cannot send a token: requests without one are let through only from origins named
explicitly, and only when the server listens on a loopback address, where only this machine's processes reach it.
Production puts the UI behind SSO with the codec's "pass access token" set, so the UI forwards the user's token of
the same identity provider. Refusals are 401 (no or bad token) or 403 (no viewing role, origin not allowed), with a
JSON reason; each is logged, never with the token.

The standard library's threading HTTP server: the protocol is two POST routes and a preflight, and no HTTP framework
is a runtime dependency of drctl (Flask only comes with the sandbox extra).
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload, Payloads

from contracts.identity import IdentityError, Principal, TrustConfig, verify_token
from plans.model import Mode
from workers.encryption import EncryptionCodec, KeyRingError
from workflows.rbac import Action, allowed, roles_allowed

log = structlog.get_logger("dr.codec")

ROUTES = ("/encode", "/decode")
# What the UI sends: its JSON body, the namespace, and (SSO with "pass access token") the user's token.
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
# A page of history is at most a few MB of payloads (Temporal's blob limit is 2 MB each); more is not a codec call.
MAX_BODY_BYTES = 16 * 1024 * 1024
PREFLIGHT_MAX_AGE_SECONDS = 600


class Refused(Exception):
    """A request answered with an error status and a JSON reason (safe to show: no token, no key material)."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class CodecPolicy:
    """Who may use the codec: browsers of `ui_origins` (CORS), callers whose token grants viewing every run, and
    without a token only browsers of `unauthenticated_origins` (a local dev UI without login)."""

    trust: TrustConfig
    ui_origins: frozenset[str] = frozenset()
    unauthenticated_origins: frozenset[str] = frozenset()
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    @classmethod
    def build(cls, trust: TrustConfig, ui_origins: Iterable[str] = (),
              unauthenticated_origins: Iterable[str] = ()) -> CodecPolicy:
        unauthenticated = frozenset(normalize_origin(o) for o in unauthenticated_origins)
        return cls(trust, frozenset(normalize_origin(o) for o in ui_origins) | unauthenticated, unauthenticated)

    def cors_allows(self, origin: str | None) -> bool:
        return origin is not None and origin in self.ui_origins

    def authorize(self, authorization: str | None, origin: str | None) -> Principal | None:
        """The verified caller, or None for an allowed request without a token; Refused otherwise."""
        if not authorization:
            if origin is not None and origin in self.unauthenticated_origins:
                return None
            raise Refused(HTTPStatus.UNAUTHORIZED, "no token: send 'Authorization: Bearer <token>' of a user "
                                                   "who may view runs")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused(HTTPStatus.UNAUTHORIZED, "the Authorization header must be 'Bearer <token>'")
        try:
            principal = verify_token(token.strip(), self.trust, self.clock())
        except IdentityError as exc:
            raise Refused(HTTPStatus.UNAUTHORIZED, str(exc)) from None
        if not all(allowed(principal.roles, Action.VIEW, mode) for mode in Mode):
            needed = sorted(set.intersection(*(set(roles_allowed(Action.VIEW, mode)) for mode in Mode)))
            raise Refused(HTTPStatus.FORBIDDEN, f"{principal.subject} may not view runs (roles: "
                                                f"{', '.join(principal.roles) or 'none'}; needs one of "
                                                f"{', '.join(needed)})")
        return principal


def normalize_origin(origin: str) -> str:
    """An origin as browsers send it: scheme://host[:port], no path, no trailing slash."""
    origin = origin.strip().rstrip("/")
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
        raise ValueError(f"{origin!r} is not an origin (expected scheme://host[:port], e.g. http://127.0.0.1:8233)")
    return f"{scheme}://{rest.lower()}"


def route_of(path: str) -> str:
    """/decode, /encode, or the path itself when it is neither; `/{namespace}/decode` too, for an endpoint configured
    with the UI's and CLI's `{namespace}` template."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    route = f"/{parts[-1]}"
    return route if route in ROUTES and len(parts) <= 2 else "/" + "/".join(parts)


def read_payloads(body: bytes) -> list[Payload]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise Refused(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("payloads", []), list):
        raise Refused(HTTPStatus.BAD_REQUEST, "body must be {\"payloads\": [...]}")
    try:
        return list(json_format.ParseDict(document, Payloads()).payloads)
    except json_format.ParseError as exc:
        raise Refused(HTTPStatus.BAD_REQUEST, f"payloads: not Temporal payloads in protobuf JSON form: {exc}") \
            from None


def transform(route: str, codec: EncryptionCodec, payloads: list[Payload]) -> list[Payload]:
    try:
        if route == "/encode":
            return [codec.seal(p) for p in payloads]
        return [codec.open(p) for p in payloads]
    except KeyRingError as exc:  # unknown key id, or a payload that does not authenticate
        raise Refused(HTTPStatus.BAD_REQUEST, str(exc)) from None
    except (ValueError, DecodeError):  # a nonce cut short, or sealed bytes that are not a payload: not ours
        raise Refused(HTTPStatus.BAD_REQUEST, f"payload cannot be {route[1:]}d: it is not one this codec "
                                              "sealed (truncated or corrupted)") from None


class CodecHandler(BaseHTTPRequestHandler):
    server: CodecHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive: the UI decodes a history page by page
    server_version = "drctl-codec"

    def do_OPTIONS(self) -> None:  # noqa: N802 (http.server's naming)
        origin = self.headers.get("Origin")
        if not self.server.policy.cors_allows(origin):
            self._refuse(Refused(HTTPStatus.FORBIDDEN, f"origin {origin!r} is not allowed (--ui-origin)"), None)
            return
        self._send(HTTPStatus.NO_CONTENT, b"", origin, {
            "Access-Control-Allow-Methods": "POST, OPTIONS", "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS)})

    def do_POST(self) -> None:  # noqa: N802
        origin = self.headers.get("Origin")
        route = route_of(self.path)
        principal: Principal | None = None
        try:
            if route not in ROUTES:
                raise Refused(HTTPStatus.NOT_FOUND, f"no route {route!r}: POST /encode or /decode")
            if origin is not None and not self.server.policy.cors_allows(origin):
                raise Refused(HTTPStatus.FORBIDDEN, f"origin {origin!r} is not allowed (--ui-origin)")
            principal = self.server.policy.authorize(self.headers.get("Authorization"), origin)
            payloads = transform(route, self.server.codec, read_payloads(self._body()))
        except Refused as refused:
            self._refuse(refused, origin, principal)
            return
        answer = {"payloads": [json_format.MessageToDict(p) for p in payloads]}
        self._send(HTTPStatus.OK, json.dumps(answer).encode(), origin, {"Content-Type": "application/json"})
        log.info("codec.request", route=route, namespace=self.headers.get("X-Namespace"), payloads=len(payloads),
                 subject=principal.subject if principal else None, origin=origin,
                 authenticated=principal is not None)

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def _refuse(self, refused: Refused, origin: str | None, principal: Principal | None = None) -> None:
        body = json.dumps({"error": refused.status.phrase, "reason": refused.reason}).encode()
        # A body left unread would be taken for the next request on this connection: a refusal closes it.
        self.close_connection = True
        log.warning("codec.refused", method=self.command, path=self.path, status=int(refused.status),
                    reason=refused.reason, origin=origin, namespace=self.headers.get("X-Namespace"),
                    subject=principal.subject if principal else None, client=self.client_address[0])
        self._send(refused.status, body, origin, {"Content-Type": "application/json"})

    def _send(self, status: HTTPStatus, body: bytes, origin: str | None, headers: dict[str, str]) -> None:
        self.send_response(status)
        if self.server.policy.cors_allows(origin):
            assert origin is not None
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Vary", "Origin")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        pass  # every request is logged once, by structlog, above


class CodecHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, codec: EncryptionCodec, policy: CodecPolicy) -> None:
        if policy.unauthenticated_origins and not is_loopback(host):
            raise ValueError(f"requests without a token are allowed only on a loopback address, not {host!r}: "
                             "put the UI behind SSO with 'pass access token' instead")
        self.codec = codec
        self.policy = policy
        self.host = host
        super().__init__((host, port), CodecHandler)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.server_address[1]}"

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="codec-server", daemon=True)
        thread.start()
        return thread
