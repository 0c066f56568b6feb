"""The WSGI side of an emulator: one request read the same way everywhere, and the envelope that turns a service
error into the service's error response and an emulator bug into a 500 the test that hit it can read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import structlog
from botocore.model import OperationModel

from sandbox.core.caller import caller
from sandbox.core.model import ServiceError
from sandbox.core.protocol import parse_request, render_error
from sandbox.core.validation import validate_input

log = structlog.get_logger("sandbox.emulator")

Response = tuple[int, dict[str, str], bytes]


def read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def raw_path(environ: dict[str, Any]) -> str:
    # The undecoded path keeps an ARN's '/' and ':' escaped inside its URI label; fall back to PATH_INFO.
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    return raw.split("?", 1)[0] if raw else environ.get("PATH_INFO", "/")


def respond(start_response: Callable[..., Any], status: int, headers: dict[str, str], body: bytes) -> Iterable[bytes]:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
    start_response(f"{status} {reason}", [*headers.items(), ("Content-Length", str(len(body)))])
    return [body]


class Request:
    """One request to a modeled service; `operation` is set once routing has found it (errors may depend on it)."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET")
        self.path = raw_path(environ)
        self.query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        self.headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        self.body = read_body(environ)
        self.operation: OperationModel | None = None

    @property
    def caller(self) -> tuple[str, str]:
        return caller(self.environ)

    def parse(self, operation: OperationModel, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """The validated input of `operation` from this request."""
        self.operation = operation
        params = parse_request(operation, labels or {}, self.query, self.headers, self.body)
        validate_input(operation, params)
        return params


class ServiceApp:
    """A WSGI app for one service of botocore's: `serve` answers a request or raises a ServiceError."""

    service: str

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return respond(start_response, *self.handle(environ))

    def handle(self, environ: dict[str, Any]) -> Response:
        request = Request(environ)
        try:
            return self.serve(request)
        except ServiceError as err:
            return render_error(self.answer(err, request.operation))
        except Exception as exc:  # an emulator bug must reach the test that hit it, not hang the client
            name = request.operation.name if request.operation is not None else "?"
            log.exception("emulator_error", service=self.service, operation=name)
            return render_error(ServiceError(self.service, "InternalServerException",
                                             f"sandbox {self.service} emulator error in {name}: "
                                             f"{type(exc).__name__}: {exc}"))

    def serve(self, request: Request) -> Response:
        raise NotImplementedError

    def answer(self, err: ServiceError, operation: OperationModel | None) -> ServiceError:
        """The error as the service reports it, once `serve` raised it."""
        return err
