"""The errors of the DRS model, raised by the emulator's models and handlers."""

from __future__ import annotations

from typing import Any

from sandbox.core.model import ServiceError
from sandbox.drs.urls import SERVICE


class DrsError(ServiceError):
    """An error the DRS model declares; `fields` are members of its shape (e.g. resourceId, quotaCode).

    For ThrottlingException, `retryAfterSeconds` travels in the Retry-After header, as the model says; boto3 callers
    read it as `err.response["retryAfterSeconds"]` (a string), next to every other modeled member.
    """

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        super().__init__(SERVICE, code, message, **fields)
