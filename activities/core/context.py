"""What a service module sees while it works on one resource."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from activities.core.aws import AwsClients
from contracts.activities import ResourceCall
from plans.model import Mode

TAG_EXECUTION = "dr:execution"
TAG_PLAN = "dr:plan"
TAG_RESOURCE = "dr:resource"
TAG_DRILL = "dr:drill"


@dataclass
class ResourceContext:
    call: ResourceCall
    aws: AwsClients
    log: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = structlog.get_logger("dr.module").bind(
                execution=self.call.execution_id,
                phase=self.call.phase.value,
                layer=self.call.layer,
                resource=self.call.resource.name,
                action=self.call.resource.action,
                account=self.call.account.id,
                region=self.call.region,
            )

    @property
    def mode(self) -> Mode:
        return self.call.mode

    @property
    def is_drill(self) -> bool:
        return self.call.mode is Mode.DRILL

    @property
    def primary_region(self) -> str:
        return self.call.regions.primary

    @property
    def recovery_region(self) -> str:
        return self.call.regions.recovery

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client in the resource's account; region defaults to the resource's region."""
        return self.aws.client(service, self.call.account, region or self.call.region)

    def drill_suffix(self) -> str:
        """A short, stable suffix for names of drill artefacts, unique per execution and resource."""
        import hashlib

        digest = hashlib.sha256(f"{self.call.execution_id}/{self.call.resource.name}".encode()).hexdigest()
        return digest[:8]

    def tags(self, **extra: str) -> list[dict[str, str]]:
        """Tags for anything we create, so a retry or a cleanup can find exactly this execution's artefacts."""
        tags = {
            TAG_EXECUTION: self.call.execution_id,
            TAG_PLAN: self.call.plan_name,
            TAG_RESOURCE: self.call.resource.name,
            TAG_DRILL: "true" if self.is_drill else "false",
            **extra,
        }
        return [{"Key": k, "Value": v} for k, v in tags.items()]
