"""The wire protocols botocore speaks (rest-json and json), driven by the service's own model.

An emulator's operations never see HTTP: a request is matched to an operation (by method and URI template for
rest-json, by X-Amz-Target for json), turned into one input dict keyed by member name, and a result or error is
rendered so that botocore parses it exactly as it parses the real service. Everything is read from the model at run
time, so a botocore upgrade that adds an operation or tightens a constraint reaches every emulator without edits.

Output is checked, not trusted: a value of the wrong type or outside its enum raises RuntimeError, because a client
would accept it silently and an orchestrator test would pass against behaviour AWS never shows.
"""

from __future__ import annotations

import datetime
import enum
import functools
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from botocore.model import OperationModel, Shape

from sandbox.core.model import ServiceError, service_model, validation_error

# --- routing ---------------------------------------------------------------------------------------------------------


@functools.cache
def _routes(service: str) -> list[tuple[str, re.Pattern[str], list[str], OperationModel]]:
    model = service_model(service)
    routes = []
    for name in model.operation_names:
        op = model.operation_model(name)
        parts = re.split(r"\{([^}]+)\}", op.http["requestUri"].split("?", 1)[0])
        labels = [label.rstrip("+") for label in parts[1::2]]
        # An ARN label holds '/' once the WSGI server has percent-decoded PATH_INFO: a label may run over slashes, the
        # literal parts anchor it, so the app may pass either the raw or the decoded path.
        regex = "".join("(.+)" if i % 2 else re.escape(part) for i, part in enumerate(parts))
        routes.append((op.http.get("method", "POST").upper(), re.compile(regex), labels, op))
    # Most specific first: /cluster before /cluster/{ClusterArn}, and /controlpanel/{arn}/routingcontrols before
    # /controlpanel/{arn}, whose label would otherwise swallow the suffix of a decoded path.
    return sorted(routes, key=lambda r: (len(r[2]), -len(r[1].pattern)))


def match_operation(service: str, method: str, path: str) -> tuple[OperationModel, dict[str, str]] | None:
    """The rest-json operation for an HTTP method and path, with its URI labels percent-decoded; None if none."""
    path = path.split("?", 1)[0]
    for route_method, regex, labels, op in _routes(service):
        if route_method == method.upper() and (found := regex.fullmatch(path)):
            return op, {label: unquote(value) for label, value in zip(labels, found.groups())}
    return None


def target_operation(service: str, target: str) -> OperationModel:
    """The json-protocol operation an `X-Amz-Target: <targetPrefix>.<Operation>` header names."""
    model = service_model(service)
    prefix = model.metadata["targetPrefix"] + "."
    name = target.removeprefix(prefix)
    if not target.startswith(prefix) or name not in model.operation_names:
        raise validation_error(service, f"unknown operation {target!r}", reason="unknownOperation")
    return model.operation_model(name)


# --- requests --------------------------------------------------------------------------------------------------------

def parse_request(operation: OperationModel, path_params: Mapping[str, str], query: Mapping[str, list[str]],
                  headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """One input dict keyed by member name, from wherever the model places each member; unknown members are dropped.

    Text from the URI, query and headers is converted to the member's type where it parses; where it does not, the
    text is kept so that `validate_input` reports the member by name instead of this function failing on the first.
    """
    shape = operation.input_shape
    document = _load_json(operation.service_model.service_name, body)
    if shape is None:
        return {}
    headers = {k.lower(): v for k, v in headers.items()}
    params: dict[str, Any] = {}
    for name, member in shape.members.items():
        location, wire = member.serialization.get("location"), member.serialization.get("name", name)
        if location == "uri" and wire in path_params:
            params[name] = _from_text(path_params[wire], member)
        elif location == "querystring" and query.get(wire):
            values = query[wire]
            params[name] = ([_from_text(v, member.member) for v in values] if member.type_name == "list"
                            else _from_text(values[0], member))
        elif location == "header" and wire.lower() in headers:
            params[name] = _from_text(headers[wire.lower()], member)
        elif location is None and document.get(wire) is not None:
            params[name] = _from_json(document[wire], member)
    return params


def _load_json(service: str, body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise validation_error(service, f"request body is not valid JSON: {exc}", reason="cannotParse") from None
    if not isinstance(document, dict):
        raise validation_error(service, "request body must be a JSON object", reason="cannotParse")
    return document


def _from_text(text: str, shape: Shape) -> Any:
    if shape.type_name in ("integer", "long") and re.fullmatch(r"-?\d+", text):
        return int(text)
    if shape.type_name == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _from_json(value: Any, shape: Shape) -> Any:
    # Wire names become member names and unknown keys go; a value of the wrong JSON type is kept for the validator.
    if shape.type_name == "structure" and isinstance(value, dict) and not shape.is_document_type:
        members = {m.serialization.get("name", n): (n, m) for n, m in shape.members.items()}
        return {members[k][0]: _from_json(v, members[k][1]) for k, v in value.items()
                if k in members and v is not None}
    if shape.type_name == "list" and isinstance(value, list):
        return [_from_json(item, shape.member) for item in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _from_json(v, shape.value) for k, v in value.items()}
    return value


# --- responses -------------------------------------------------------------------------------------------------------

def render_output(operation: OperationModel, result: Mapping[str, Any] | None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) for a successful call; only the output shape's members are sent."""
    service = operation.service_model.service_name
    status = operation.http.get("responseCode", 200)
    headers = _base_headers(service)
    shape = operation.output_shape
    if shape is None:
        return status, headers, b"" if status == 204 else b"{}"
    document = _to_wire(service, result or {}, shape, f"{operation.name} output", headers)
    return status, headers, b"" if status == 204 else json.dumps(document).encode()


def render_error(err: ServiceError) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) as the service sends an error: the code in x-amzn-ErrorType (and `__type` for the
    json protocol), members in the body or the headers the model puts them in."""
    headers = {**_base_headers(err.service), "x-amzn-ErrorType": err.code}
    shape = err.shape
    message = next((name for name in shape.members if name.lower() == "message"), "message")
    document = _to_wire(err.service, {message: err.message, **err.fields}, shape, err.code, headers)
    if service_model(err.service).protocol == "json":
        document["__type"] = err.code
    return err.status, headers, json.dumps(document).encode()


def _base_headers(service: str) -> dict[str, str]:
    model = service_model(service)
    content_type = (f"application/x-amz-json-{model.metadata['jsonVersion']}" if model.protocol == "json"
                    else "application/json")
    return {"Content-Type": content_type, "x-amzn-RequestId": str(uuid.uuid4())}


def _to_wire(service: str, value: Any, shape: Shape, path: str, headers: dict[str, str] | None = None) -> Any:
    """JSON-ready `value` for `shape`; top-level members the model puts in headers are written into `headers`."""
    if isinstance(value, enum.Enum):
        value = value.value
    kind = shape.type_name
    expect = functools.partial(_expect, service, value, shape, path)
    if kind == "structure":
        expect(isinstance(value, Mapping), "an object")
        out = {}
        for name, member in shape.members.items():
            item, where = value.get(name), f"{path}.{name}"
            if item is None:
                continue
            if headers is not None and member.serialization.get("location") == "header":
                headers[member.serialization.get("name", name)] = _header_text(service, item, member, where)
            elif member.serialization.get("location") is None:
                out[member.serialization.get("name", name)] = _to_wire(service, item, member, where)
        return out
    if kind == "list":
        expect(isinstance(value, (list, tuple)), "a list")
        return [_to_wire(service, item, shape.member, f"{path}[{i}]") for i, item in enumerate(value)]
    if kind == "map":
        expect(isinstance(value, Mapping), "an object")
        return {_to_wire(service, k, shape.key, f"{path} key"): _to_wire(service, v, shape.value, f"{path}.{k}")
                for k, v in value.items() if v is not None}
    if kind == "string":
        if isinstance(value, datetime.datetime):
            value = _iso8601(value)  # DRS types its date-times as strings that must end in Z
        _expect(service, value, shape, path, isinstance(value, str), "a string")
        _expect(service, value, shape, path, not shape.enum or value in shape.enum, f"one of {shape.enum}")
        return str(value)
    if kind in ("integer", "long"):
        expect(isinstance(value, int) and not isinstance(value, bool), "an integer")
    elif kind in ("float", "double"):
        expect(isinstance(value, (int, float)) and not isinstance(value, bool), "a number")
    elif kind == "boolean":
        expect(isinstance(value, bool), "a boolean")
    elif kind == "timestamp":
        expect(isinstance(value, (datetime.datetime, str)), "a datetime")
        if isinstance(value, datetime.datetime):
            fmt = shape.serialization.get("timestampFormat", "unixtimestamp").lower()
            return _iso8601(value) if fmt == "iso8601" else _utc(value).timestamp()
    return value


def _header_text(service: str, value: Any, shape: Shape, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return _utc(value).strftime("%a, %d %b %Y %H:%M:%S GMT")
    # Retry-After is a number of seconds even where the model types it as a string (ThrottlingException).
    _expect(service, value, shape, path, isinstance(value, (str, int)), "header text")
    return str(value)


def _expect(service: str, value: Any, shape: Shape, path: str, ok: bool, wanted: str) -> None:
    if not ok:
        raise RuntimeError(f"sandbox {service} emulator bug: {path} = {value!r} is not a valid {shape.name} "
                           f"(expected {wanted})")


def _utc(value: datetime.datetime) -> datetime.datetime:
    return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value.astimezone(datetime.UTC)


def _iso8601(value: datetime.datetime) -> str:
    value = _utc(value)  # milliseconds, as Smithy and botocore write them
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"
