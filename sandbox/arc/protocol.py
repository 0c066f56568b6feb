"""The wire protocols of the two ARC routing control APIs, read from botocore's service models at run time.

- route53-recovery-control-config (the control plane: clusters, control panels, routing controls, safety rules) is
  rest-json: the operation is found by method and URI template, errors carry `x-amzn-ErrorType` and `{"Message"}`.
- route53-recovery-cluster (the data plane, one endpoint per cluster region) is json 1.0: the operation is named by
  `X-Amz-Target: ToggleCustomerAPI.<Operation>`, errors are `{"__type", "message", ...}`. The model leaves that
  service's HTTP status codes out, so they are the API reference's (ERROR_STATUS below).

Requests are validated as the services would (required members, types, lengths, enums, patterns: the DRS emulator's
validator, which adds to botocore's client-side checks what only a server enforces). Responses carry only members of
the output shape, and an enum value outside the model is an emulator bug, raised rather than sent.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from sandbox.core.validation import _ServerValidator as _Validator

CONTROL = "route53-recovery-control-config"
CLUSTER = "route53-recovery-cluster"
# route53-recovery-cluster API reference, "Errors": the json model carries no httpStatusCode for these.
ERROR_STATUS = {"AccessDeniedException": 403, "ConflictException": 409, "EndpointTemporarilyUnavailableException": 503,
                "InternalServerException": 500, "ResourceNotFoundException": 404,
                "ServiceLimitExceededException": 402, "ThrottlingException": 429, "ValidationException": 400}


@functools.cache
def model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


class ArcError(Exception):
    """An error of `service`'s model; `fields` are members of its shape (e.g. resourceId on the data plane)."""

    def __init__(self, service: str, code: str, message: str, **fields: Any) -> None:
        shape = model(service).shape_for_error_code(code)
        if shape is None:
            raise ValueError(f"{code} is not an error of the {service} model")
        unknown = set(fields) - set(shape.members)
        if unknown:
            raise TypeError(f"{code} has no member(s) {sorted(unknown)}")
        super().__init__(f"{code}: {message}")
        self.service, self.code, self.message, self.shape = service, code, message, shape
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def render(self) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/x-amz-json-1.0" if self.service == CLUSTER else "application/json",
                   "x-amzn-ErrorType": self.code}
        message_key = next((m for m in self.shape.members if m.lower() == "message"), "message")
        body: dict[str, Any] = {message_key: self.message, **self.fields}
        if self.service == CLUSTER:
            body["__type"] = self.code
            status = ERROR_STATUS[self.code]
        else:
            status = self.shape.metadata["error"]["httpStatusCode"]
        return status, headers, json.dumps(body).encode()


# --- requests --------------------------------------------------------------------------------------------------------

@functools.cache
def _routes() -> list[tuple[str, re.Pattern[str], list[str], OperationModel]]:
    service = model(CONTROL)
    routes = []
    for name in service.operation_names:
        op = service.operation_model(name)
        template = op.http["requestUri"].split("?", 1)[0]
        parts = re.split(r"\{([^}]+)\}", template)
        labels = [label.rstrip("+") for label in parts[1::2]]
        # An ARN label holds '/' once decoded: a label may run over slashes, the literal parts anchor it.
        regex = "".join("(.+)" if i % 2 else re.escape(part) for i, part in enumerate(parts))
        routes.append((op.http.get("method", "POST"), re.compile(regex), labels, op))
    # Most specific first: /cluster before /cluster/{ClusterArn}, and /controlpanel/{arn}/routingcontrols before
    # /controlpanel/{arn}, whose label would otherwise swallow the suffix of a decoded path.
    return sorted(routes, key=lambda r: (len(r[2]), -len(r[1].pattern)))


def control_operation(method: str, path: str) -> tuple[OperationModel, dict[str, str]]:
    for route_method, regex, labels, op in _routes():
        if route_method == method and (found := regex.fullmatch(path)):
            return op, {label: unquote(value) for label, value in zip(labels, found.groups())}
    raise ArcError(CONTROL, "ValidationException", f"no {CONTROL} operation answers {method} {path}")


def cluster_operation(target: str) -> OperationModel:
    prefix = model(CLUSTER).metadata["targetPrefix"] + "."
    name = target.removeprefix(prefix)
    if not target.startswith(prefix) or name not in model(CLUSTER).operation_names:
        raise ArcError(CLUSTER, "ValidationException", f"unknown operation {target!r}", reason="unknownOperation")
    return model(CLUSTER).operation_model(name)


def parse(op: OperationModel, labels: Mapping[str, str], query: Mapping[str, list[str]], body: bytes) -> dict[str, Any]:
    """One input dict keyed by member name, validated; unknown members are dropped as the services ignore them."""
    service = op.service_model.metadata["signingName"]
    try:
        document = json.loads(body) if body.strip() else {}
    except ValueError as exc:
        raise ArcError(service, "ValidationException", f"request body is not valid JSON: {exc}",
                       **({"reason": "cannotParse"} if service == CLUSTER else {})) from None
    shape = op.input_shape
    params: dict[str, Any] = {}
    for name, member in (shape.members.items() if shape else ()):
        location, wire = member.serialization.get("location"), member.serialization.get("name", name)
        if location == "uri" and wire in labels:
            params[name] = labels[wire]
        elif location == "querystring" and query.get(wire):
            text = query[wire][0]
            params[name] = int(text) if member.type_name == "integer" and text.isdigit() else text
        elif location is None and isinstance(document, dict) and document.get(wire) is not None:
            params[name] = _known(document[wire], member)
    if shape is not None:
        fields = _Validator().validate(params, shape).fields()
        if fields:
            detail = "; ".join(f"Value at '{f['name']}' failed to satisfy constraint: {f['message']}" for f in fields)
            extra = {"reason": "fieldValidationFailed", "fields": fields} if service == CLUSTER else {}
            raise ArcError(service, "ValidationException", f"{len(fields)} validation error(s) detected: {detail}",
                           **extra)
    return params


def _known(value: Any, shape: Shape) -> Any:
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _known(v, shape.members[k]) for k, v in value.items() if k in shape.members and v is not None}
    if shape.type_name == "list" and isinstance(value, list):
        return [_known(v, shape.member) for v in value]
    return value


# --- responses -------------------------------------------------------------------------------------------------------

def render(op: OperationModel, result: Mapping[str, Any] | None) -> tuple[int, dict[str, str], bytes]:
    service = op.service_model.metadata["signingName"]
    content_type = "application/x-amz-json-1.0" if service == CLUSTER else "application/json"
    body = _wire(result or {}, op.output_shape, op.name) if op.output_shape is not None else {}
    return op.http.get("responseCode", 200), {"Content-Type": content_type}, json.dumps(body).encode()


def _wire(value: Any, shape: Shape, path: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return {name: _wire(value[name], member, f"{path}.{name}") for name, member in shape.members.items()
                if value.get(name) is not None}
    if kind == "list":
        return [_wire(item, shape.member, f"{path}[]") for item in value]
    if kind == "map":
        return {k: _wire(v, shape.value, f"{path}.{k}") for k, v in value.items()}
    valid = {"string": str, "integer": int, "long": int, "boolean": bool}.get(kind, object)
    if not isinstance(value, valid) or (kind == "string" and shape.enum and value not in shape.enum):
        raise RuntimeError(f"sandbox ARC emulator bug: {path} = {value!r} is not a valid {shape.name}")
    return value
