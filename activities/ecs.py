"""ECS service: scale the recovery region's service up (ACTIVATE) and, after a real failover, the old one down.

Drill: the recovery-region service is scaled up (that moves no production traffic: DNS still points at the primary)
and CLEANUP puts it back to the count it had. The count before the change is kept as a tag on the service, named
after the execution, so CLEANUP (another activity, maybe another worker) restores exactly it, and a retried ACTIVATE
never overwrites it with its own scaled-up count.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from activities.core.context import ResourceContext
from activities.core.aws import aws_call, aws_errors, fatal
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, ServiceModule, register

_POLL_SECONDS = 5.0
_TAG_PREFIX = "dr:previous-desired-count:"


class EcsServiceParameters(ModuleParameters):
    cluster: str = Field(min_length=1, max_length=255)  # in the recovery region
    service: str = Field(min_length=1, max_length=255)
    desired_count: int = Field(ge=0, le=10_000)  # the recovery service's count after ACTIVATE
    primary_cluster: str | None = None  # the old primary's service, for CLEANUP after a real failover
    primary_service: str | None = None  # default: the same service name
    scale_down_primary: bool = False  # CLEANUP of a real failover: the old primary to 0 (never in a drill)


@register
class EcsService(ServiceModule):
    action = "ecs.service"
    summary = "Scale an ECS service up in the recovery region and wait for steady state; scale the old one down"
    Parameters = EcsServiceParameters
    def instantiate(self, ctx: ResourceContext, params: EcsServiceParameters) -> Operation:
        service = _service(ctx, params.cluster, params.service, ctx.recovery_region)
        return Operation(done=True, outputs=_counts(service),
                         message=f"{params.service} in {params.cluster}: {_summary(service)}")

    def poll(self, ctx: ResourceContext, params: EcsServiceParameters, handle: dict[str, Any]) -> Operation:
        service = _service(ctx, handle["cluster"], handle["service"], handle["region"])
        # Steady as botocore's own `services_stable` waiter defines it: one deployment, all its tasks running.
        steady = (service["desiredCount"] == handle["desiredCount"] and service["runningCount"] == handle["desiredCount"]
                  and len(service.get("deployments", [])) <= 1)
        message = f"{handle['service']} in {handle['cluster']} ({handle['region']}): {_summary(service)}"
        return Operation(done=steady, handle=handle, outputs=_counts(service), message=message,
                         poll_interval_seconds=_POLL_SECONDS)

    def activate(self, ctx: ResourceContext, params: EcsServiceParameters) -> Operation:
        region = ctx.recovery_region
        service = _service(ctx, params.cluster, params.service, region)
        tag = _TAG_PREFIX + ctx.call.execution_id
        if ctx.is_drill and not any(t["key"] == tag for t in service.get("tags", [])):
            # Before changing anything, and only once: a retry must not record its own scaled-up count.
            with aws_errors(f"TagResource {params.service}"):
                _client(ctx, region).tag_resource(resourceArn=service["serviceArn"],
                                                  tags=[{"key": tag, "value": str(service["desiredCount"])}])
        if service["desiredCount"] != params.desired_count:
            with aws_errors(f"UpdateService {params.service}"):
                _client(ctx, region).update_service(cluster=params.cluster, service=params.service,
                                                    desiredCount=params.desired_count)
            ctx.log.info("ecs.scaled", service=params.service, region=region, desired=params.desired_count)
        return self.poll(ctx, params, {"cluster": params.cluster, "service": params.service, "region": region,
                                       "desiredCount": params.desired_count})

    def cleanup(self, ctx: ResourceContext, params: EcsServiceParameters) -> Operation:
        if ctx.is_drill:
            region = ctx.recovery_region
            service = _service(ctx, params.cluster, params.service, region)
            tag = _TAG_PREFIX + ctx.call.execution_id
            previous = next((t["value"] for t in service.get("tags", []) if t["key"] == tag), None)
            if previous is None:
                return Operation(done=True, message=f"{params.service}: nothing this drill changed is left")
            count = int(previous)
            if service["desiredCount"] != count:
                with aws_errors(f"UpdateService {params.service}"):
                    _client(ctx, region).update_service(cluster=params.cluster, service=params.service,
                                                        desiredCount=count)
            aws_call(f"UntagResource {params.service}", _client(ctx, region).untag_resource,
                     resourceArn=service["serviceArn"], tagKeys=[tag])
            return self.poll(ctx, params, {"cluster": params.cluster, "service": params.service, "region": region,
                                           "desiredCount": count})
        if not params.scale_down_primary:
            return Operation(done=True, message=f"{params.service}: the old primary is kept as it is (plan)")
        if not params.primary_cluster:
            raise fatal("scaleDownPrimary needs primaryCluster", "InvalidParameters")
        name, region = params.primary_service or params.service, ctx.primary_region
        service = _service(ctx, params.primary_cluster, name, region)
        if service["desiredCount"] != 0:
            with aws_errors(f"UpdateService {name}"):
                _client(ctx, region).update_service(cluster=params.primary_cluster, service=name, desiredCount=0)
        return self.poll(ctx, params, {"cluster": params.primary_cluster, "service": name, "region": region,
                                       "desiredCount": 0})


def _client(ctx: ResourceContext, region: str) -> Any:
    return ctx.client("ecs", region=region)


def _service(ctx: ResourceContext, cluster: str, name: str, region: str) -> dict[str, Any]:
    with aws_errors(f"DescribeServices {name}"):
        found = _client(ctx, region).describe_services(cluster=cluster, services=[name], include=["TAGS"])
    services = [s for s in found.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        raise fatal(f"ECS service {name} not found in cluster {cluster} ({region})", "ServiceNotFound")
    return services[0]


def _counts(service: dict[str, Any]) -> dict[str, Any]:
    return {key: service.get(key) for key in ("desiredCount", "runningCount", "pendingCount")}


def _summary(service: dict[str, Any]) -> str:
    return f"{service.get('runningCount')}/{service.get('desiredCount')} running"
