"""botocore's model of a service, and the errors it declares: the one source of truth for what an emulator accepts,
answers and raises."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import botocore.session
from botocore.model import ServiceModel, Shape

# HTTP codes of errors whose shapes carry none: json 1.0 models leave them to the API reference, so the emulator of
# such a service declares them (service -> error code -> status).
_STATUSES: dict[str, dict[str, int]] = {}


@functools.cache
def service_model(service: str) -> ServiceModel:
    # Loading a model costs tens of milliseconds: paid on first use, once per process.
    return botocore.session.get_session().get_service_model(service)


def declare_statuses(service: str, statuses: Mapping[str, int]) -> None:
    _STATUSES[service] = dict(statuses)


class ServiceError(Exception):
    """An error `service`'s model declares; `fields` are members of its shape (e.g. resourceId, retryAfterSeconds)."""

    def __init__(self, service: str, code: str, message: str, **fields: Any) -> None:
        shape = service_model(service).shape_for_error_code(code)
        if shape is None:
            raise ValueError(f"{code} is not an error of the {service} model")
        unknown = {name for name in fields if name not in shape.members or name.lower() == "message"}
        if unknown:
            raise TypeError(f"{code} has no member(s) {sorted(unknown)} (members: {sorted(shape.members)})")
        super().__init__(f"{code}: {message}")
        self.service, self.code, self.message = service, code, message
        self.fields = {k: v for k, v in fields.items() if v is not None}

    @property
    def shape(self) -> Shape:
        return service_model(self.service).shape_for_error_code(self.code)

    @property
    def status(self) -> int:
        if self.service in _STATUSES:
            return _STATUSES[self.service][self.code]
        return int(self.shape.metadata["error"]["httpStatusCode"])


def validation_error(service: str, message: str, *, reason: str | None = None,
                     fields: list[dict[str, str]] | None = None) -> ServiceError:
    """ValidationException carrying what this service's shape has members for: DRS a reason and a fieldList, the ARC
    data plane a reason and fields, the ARC control plane the message alone."""
    shape = service_model(service).shape_for_error_code("ValidationException")
    extra: dict[str, Any] = {}
    if reason is not None and "reason" in shape.members:
        extra["reason"] = reason
    listed = next((name for name, member in shape.members.items() if member.type_name == "list"), None)
    if fields is not None and listed is not None:
        extra[listed] = fields
    return ServiceError(service, "ValidationException", message, **extra)


def not_implemented(service: str, operation_name: str) -> ServiceError:
    # The models have no NotImplemented error; a 400 is parsed cleanly into a ClientError and botocore does not retry
    # it (a 5xx InternalServerException would be retried with backoff and only then fail).
    return validation_error(service, f"the sandbox {service} emulator does not implement {operation_name}",
                            reason="unknownOperation")
