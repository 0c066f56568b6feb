"""The errors of the two ARC models, as the emulator raises them."""

from __future__ import annotations

from sandbox.arc.urls import CLUSTER
from sandbox.core.model import ServiceError, declare_statuses

# route53-recovery-cluster API reference, "Errors": the json model carries no httpStatusCode for these.
declare_statuses(CLUSTER, {
    "AccessDeniedException": 403, "ConflictException": 409, "EndpointTemporarilyUnavailableException": 503,
    "InternalServerException": 500, "ResourceNotFoundException": 404, "ServiceLimitExceededException": 402,
    "ThrottlingException": 429, "ValidationException": 400})


def not_found(service: str, kind: str, arn: str) -> ServiceError:
    # Only the data plane's shape has members naming the resource.
    extra = {"resourceId": arn, "resourceType": kind} if service == CLUSTER else {}
    return ServiceError(service, "ResourceNotFoundException", f"{kind} {arn} not found", **extra)
