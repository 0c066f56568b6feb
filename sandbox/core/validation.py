"""Input validation as a service does it: botocore's client-side checks plus those only a server enforces.

Unknown input members are not reported: AWS services accept newer clients' extra fields, and boto3 callers cannot send
unknown members anyway (botocore rejects them client-side).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator, ValidationErrors

from sandbox.core.model import validation_error


def validate_input(operation: OperationModel, params: Mapping[str, Any]) -> None:
    """Raise ValidationException (reason fieldValidationFailed where the model has one) listing every constraint
    `params` breaks."""
    if operation.input_shape is None:
        return
    fields = _ServerValidator().validate(params, operation.input_shape).fields()
    if fields:
        detail = "; ".join(f"Value at '{f['name']}' failed to satisfy constraint: {f['message']}" for f in fields)
        plural = "s" if len(fields) > 1 else ""
        raise validation_error(operation.service_model.service_name,
                               f"{len(fields)} validation error{plural} detected: {detail}",
                               reason="fieldValidationFailed", fields=fields)


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


class _ServerValidator(ParamValidator):
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
