"""The DRS wire protocol (rest-json), driven by botocore's own service model.

The emulator's state machine never sees HTTP: the app matches a request to an operation, turns it into one input dict
keyed by member name, validates it the way the service would, and renders results and errors so that botocore parses
them exactly as it parses the real service. Everything here is read from the model at run time, so a botocore upgrade
that adds an operation or tightens a constraint reaches the emulator without edits.

Choices where the real service is not observable from the model:
- Unknown input members are ignored (dropped by `parse_request`, not reported by `validate_input`): AWS services accept
  newer clients' extra fields, and boto3 callers cannot send unknown members anyway (botocore rejects them client-side).
- Operations the emulator lacks answer `ValidationException` with reason `unknownOperation` (`not_implemented`): the
  model has no NotImplemented error, a 400 is parsed cleanly into a ClientError, and botocore does not retry it (a 5xx
  InternalServerException would be retried with backoff and only then fail).
- Output is checked, not trusted: a value of the wrong type or outside its enum raises RuntimeError, because a client
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
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape
from botocore.validate import ParamValidator, ValidationErrors

if TYPE_CHECKING:
    SERVICE_MODEL: ServiceModel


@functools.cache
def _service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("drs")


def __getattr__(name: str) -> Any:
    # Loading the model costs tens of milliseconds: pay it on first use, not on import of the sandbox package.
    if name == "SERVICE_MODEL":
        return _service_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- routing ---------------------------------------------------------------------------------------------------------

@functools.cache
def _routes() -> list[tuple[str, re.Pattern[str], list[str], OperationModel]]:
    model = _service_model()
    routes = []
    for name in model.operation_names:
        op = model.operation_model(name)
        regex, params = _compile_uri(op.http["requestUri"].split("?", 1)[0])
        routes.append((op.http.get("method", "POST").upper(), regex, params, op))
    return routes


def _compile_uri(template: str) -> tuple[re.Pattern[str], list[str]]:
    parts = re.split(r"\{([^}]+)\}", template)
    regex, params = "", []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            regex += re.escape(part)
            continue
        greedy = part.endswith("+")
        params.append(part.rstrip("+"))
        # A trailing label may hold '/' once the WSGI server has percent-decoded PATH_INFO (an ARN does): let it run to
        # the end so the app can pass either the raw or the decoded path.
        regex += "(.+)" if greedy or i == len(parts) - 2 and not parts[-1] else "([^/]+)"
    return re.compile(regex), params


def match_operation(method: str, path: str) -> tuple[OperationModel, dict[str, str]] | None:
    """The operation for an HTTP method and path, with its URI labels percent-decoded; None when nothing matches."""
    path = path.split("?", 1)[0]
    for route_method, regex, names, op in _routes():
        if route_method == method.upper() and (found := regex.fullmatch(path)):
            return op, {name: unquote(value) for name, value in zip(names, found.groups())}
    return None


def operation_for_path(path: str) -> OperationModel | None:
    """The operation whose URI matches `path` whatever the method; None when none does or several do (/tags/{arn})."""
    path = path.split("?", 1)[0]
    found = {op.name: op for _, regex, _, op in _routes() if regex.fullmatch(path)}
    return next(iter(found.values())) if len(found) == 1 else None


# --- errors ----------------------------------------------------------------------------------------------------------

class DrsError(Exception):
    """An error the service models; `fields` are members of its shape (e.g. resourceId, quotaCode, retryAfterSeconds).

    For ThrottlingException, `retryAfterSeconds` travels in the Retry-After header, as the model says; boto3 callers
    read it as `err.response["retryAfterSeconds"]` (a string), next to every other modeled member.
    """

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        shape = _service_model().shape_for_error_code(code)
        if shape is None:
            raise ValueError(f"{code} is not an error of the DRS model")
        unknown = set(fields) - set(shape.members) | set(fields) & {"message"}
        if unknown:
            raise TypeError(f"{code} has no member(s) {sorted(unknown)} (members: {sorted(shape.members)})")
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message
        self.fields = {k: v for k, v in fields.items() if v is not None}

    @property
    def shape(self) -> Shape:
        return _service_model().shape_for_error_code(self.code)

    @property
    def status(self) -> int:
        return self.shape.metadata["error"]["httpStatusCode"]


def not_implemented(operation_name: str) -> DrsError:
    return DrsError("ValidationException", f"the sandbox DRS emulator does not implement {operation_name}",
                    reason="unknownOperation")


# --- requests --------------------------------------------------------------------------------------------------------

def parse_request(operation: OperationModel, path_params: Mapping[str, str], query: Mapping[str, list[str]],
                  headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """One input dict keyed by member name, from wherever the model places each member.

    Text from the URI, query and headers is converted to the member's type where it parses; where it does not, the
    text is kept so that `validate_input` reports the member by name instead of this function failing on the first.
    """
    shape = operation.input_shape
    document = _load_json(body)
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


def _load_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise DrsError("ValidationException", f"request body is not valid JSON: {exc}", reason="cannotParse") from None
    if not isinstance(document, dict):
        raise DrsError("ValidationException", "request body must be a JSON object", reason="cannotParse")
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


def validate_input(operation: OperationModel, params: Mapping[str, Any]) -> None:
    """Raise ValidationException (reason fieldValidationFailed) listing every constraint `params` breaks."""
    if operation.input_shape is None:
        return
    fields = _Validator().validate(params, operation.input_shape).fields()
    if fields:
        detail = "; ".join(f"Value at '{f['name']}' failed to satisfy constraint: {f['message']}" for f in fields)
        plural = "s" if len(fields) > 1 else ""
        raise DrsError("ValidationException", f"{len(fields)} validation error{plural} detected: {detail}",
                       reason="fieldValidationFailed", fieldList=fields)


_JSON_TYPES = {"str": "string", "int": "integer", "bool": "boolean", "list": "array", "dict": "object",
               "float": "number", "Decimal": "number", "datetime": "timestamp"}


class _Errors(ValidationErrors):
    def fields(self) -> list[dict[str, str]]:
        out = []
        for kind, name, extra in self._errors:
            if kind == "unknown field":
                continue
            if kind == "missing required field":
                name, message = f"{name}.{extra['required_name']}", "Member must not be null"
            elif kind == "constraint":
                message = extra["message"]
            elif kind == "invalid type":
                wanted = {re.sub(r"^<class '(?:\w+\.)*(\w+)'>$", r"\1", t) for t in extra["valid_types"]}
                message = "Member must be of type " + " or ".join(sorted(
                    {_JSON_TYPES[t] for t in wanted if t in _JSON_TYPES} or wanted))
            elif kind == "invalid range":
                message = f"Member must have value greater than or equal to {extra['min_allowed']}"
            elif kind == "invalid length":
                message = f"Member must have length greater than or equal to {extra['min_allowed']}"
            else:
                message = self._format_error((kind, name, extra))
            out.append({"name": name.lstrip(".") or "input", "message": message})
        return out


@functools.cache
def _pattern(source: str) -> re.Pattern[str] | None:
    try:
        return re.compile(source)
    except re.error:
        return None  # a Java-only construct: the service checks it, the emulator cannot


class _Validator(ParamValidator):
    """botocore's client-side validator (required, types, minimums) plus what it leaves to the service.

    It skips maximums, enums and patterns on purpose (so old clients keep working when the service relaxes them);
    a server must enforce them.
    """

    VALIDATED_METADATA_ATTRS = ParamValidator.VALIDATED_METADATA_ATTRS | {"max", "enum", "pattern"}

    def validate(self, params: Any, shape: Shape) -> _Errors:
        errors = _Errors()
        self._validate(params, shape, errors, name="")
        return errors

    def _validate_string(self, param, shape, errors, name):
        super()._validate_string(param, shape, errors, name)
        if not isinstance(param, str):
            return
        _check_max(len(param), shape, errors, name, "length")
        if shape.enum and param not in shape.enum:
            errors.report(name, "constraint",
                          message=f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = _pattern(shape.metadata["pattern"]) if "pattern" in shape.metadata else None
        if pattern is not None and not pattern.fullmatch(param):
            errors.report(name, "constraint",
                          message=f"Member must satisfy regular expression pattern: {pattern.pattern}")

    def _validate_list(self, param, shape, errors, name):
        super()._validate_list(param, shape, errors, name)
        if isinstance(param, (list, tuple)):
            _check_max(len(param), shape, errors, name, "length")

    def _validate_map(self, param, shape, errors, name):
        super()._validate_map(param, shape, errors, name)
        if isinstance(param, dict):
            if len(param) < shape.metadata.get("min", 0):
                errors.report(name, "invalid length", min_allowed=shape.metadata["min"])
            _check_max(len(param), shape, errors, name, "length")

    def _validate_integer(self, param, shape, errors, name):
        # JSON true is a Python int: botocore's isinstance check lets it through as a number.
        if isinstance(param, bool):
            errors.report(name, "invalid type", param=param, valid_types=[str(int)])
            return
        super()._validate_integer(param, shape, errors, name)
        if isinstance(param, int):
            _check_max(param, shape, errors, name, "value")

    _validate_long = _validate_integer


def _check_max(size: int, shape: Shape, errors: _Errors, name: str, what: str) -> None:
    if "max" in shape.metadata and size > shape.metadata["max"]:
        errors.report(name, "constraint",
                      message=f"Member must have {what} less than or equal to {shape.metadata['max']}")


# --- responses -------------------------------------------------------------------------------------------------------

def render_output(operation: OperationModel, result: Mapping[str, Any] | None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) for a successful call; only the output shape's members are sent."""
    status = operation.http.get("responseCode", 200)
    headers = _base_headers()
    shape = operation.output_shape
    if shape is None:
        return status, headers, b"" if status == 204 else b"{}"
    document = _to_wire(result or {}, shape, f"{operation.name} output", headers)
    return status, headers, b"" if status == 204 else json.dumps(document).encode()


def render_error(err: DrsError) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) as the service sends an error: the code in x-amzn-ErrorType, members in body/headers."""
    headers = {**_base_headers(), "x-amzn-ErrorType": err.code}
    document = _to_wire({"message": err.message, **err.fields}, err.shape, err.code, headers)
    return err.status, headers, json.dumps(document).encode()


def _base_headers() -> dict[str, str]:
    return {"Content-Type": "application/json", "x-amzn-RequestId": str(uuid.uuid4())}


def _to_wire(value: Any, shape: Shape, path: str, headers: dict[str, str] | None = None) -> Any:
    """JSON-ready `value` for `shape`; top-level members the model puts in headers are written into `headers`."""
    if isinstance(value, enum.Enum):
        value = value.value
    kind = shape.type_name
    if kind == "structure":
        _expect(isinstance(value, Mapping), value, shape, path, "an object")
        out = {}
        for name, member in shape.members.items():
            item, where = value.get(name), f"{path}.{name}"
            if item is None:
                continue
            if headers is not None and member.serialization.get("location") == "header":
                headers[member.serialization.get("name", name)] = _header_text(item, member, where)
            elif member.serialization.get("location") is None:
                out[member.serialization.get("name", name)] = _to_wire(item, member, where)
        return out
    if kind == "list":
        _expect(isinstance(value, (list, tuple)), value, shape, path, "a list")
        return [_to_wire(item, shape.member, f"{path}[{i}]") for i, item in enumerate(value)]
    if kind == "map":
        _expect(isinstance(value, Mapping), value, shape, path, "an object")
        return {_to_wire(k, shape.key, f"{path} key"): _to_wire(v, shape.value, f"{path}.{k}")
                for k, v in value.items() if v is not None}
    if kind == "string":
        if isinstance(value, datetime.datetime):
            value = _iso8601(value)  # DRS types its date-times as strings that must end in Z
        _expect(isinstance(value, str), value, shape, path, "a string")
        _expect(not shape.enum or value in shape.enum, value, shape, path, f"one of {shape.enum}")
        return str(value)
    if kind in ("integer", "long"):
        _expect(isinstance(value, int) and not isinstance(value, bool), value, shape, path, "an integer")
    elif kind in ("float", "double"):
        _expect(isinstance(value, (int, float)) and not isinstance(value, bool), value, shape, path, "a number")
    elif kind == "boolean":
        _expect(isinstance(value, bool), value, shape, path, "a boolean")
    elif kind == "timestamp":
        _expect(isinstance(value, (datetime.datetime, str)), value, shape, path, "a datetime")
        if isinstance(value, datetime.datetime):
            fmt = shape.serialization.get("timestampFormat", "unixtimestamp").lower()
            return _iso8601(value) if fmt == "iso8601" else _utc(value).timestamp()
    return value


def _header_text(value: Any, shape: Shape, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return _utc(value).strftime("%a, %d %b %Y %H:%M:%S GMT")
    # Retry-After is a number of seconds even where the model types it as a string (ThrottlingException).
    _expect(isinstance(value, (str, int)), value, shape, path, "header text")
    return str(value)


def _expect(ok: bool, value: Any, shape: Shape, path: str, wanted: str) -> None:
    if not ok:
        raise RuntimeError(f"sandbox DRS emulator bug: {path} = {value!r} is not a valid {shape.name} "
                           f"(expected {wanted})")


def _utc(value: datetime.datetime) -> datetime.datetime:
    return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value.astimezone(datetime.UTC)


def _iso8601(value: datetime.datetime) -> str:
    value = _utc(value)  # milliseconds, as Smithy and botocore write them
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"
