"""Route 53 failover routing, switched by inverting the primary's health check.

A FAILOVER record pair (PRIMARY with a health check, SECONDARY) already lets Route 53 answer with the secondary when
the primary's check is unhealthy. A planned failover cannot wait for the primary to fail, so ACTIVATE flips the
check's `Inverted`: a healthy check then reads unhealthy and Route 53 serves the SECONDARY record. A check that is
already unhealthy (a disaster) is left alone: Route 53 already serves the secondary, and inverting would send traffic
back to the failed primary.

The value of `Inverted` before the change is kept as tags on the health check (`dr:previous-inverted`, and
`dr:inverted-by` naming the execution), written before the update: a retried ACTIVATE finds its own change, and a
failback (another execution) or CLEANUP with `revertOnCleanup` restores exactly what was there, then drops the tags.
Updates carry the HealthCheckVersion that was read, so a concurrent edit fails (409, retried) instead of being lost.
Drill: nothing changes; ACTIVATE verifies the pair and reports the check's status and what a failover would do.
No wait follows the update: Route 53 applies Inverted at the check's next evaluation and exposes its verdict only as
the CloudWatch HealthCheckStatus metric, so resolvers follow within RequestInterval plus the record's TTL.
"""

from __future__ import annotations

from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import Field

from activities.core.context import ResourceContext
from activities.core.aws import aws_errors, error_code, fatal
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, ServiceModule, register
from activities.route53 import client, find_records, fqdn, zone_id
from plans.model import Mode

TAG_PREVIOUS = "dr:previous-inverted"
TAG_BY = "dr:inverted-by"
# Route 53 considers a check healthy when more than 18% of its checkers report it healthy.
_HEALTHY_FRACTION = 0.18


class Route53HealthCheckParameters(ModuleParameters):
    hosted_zone_id: str | None = Field(default=None, pattern=r"^(/hostedzone/)?[A-Z0-9]{1,32}$")
    zone_name: str | None = None
    record_name: str = Field(min_length=1, max_length=1024)  # the name of the FAILOVER record pair
    record_type: Literal["A", "AAAA", "CNAME"] = "A"
    health_check_id: str | None = Field(default=None, max_length=64)  # default: the PRIMARY record's health check
    revert_on_cleanup: bool = False  # CLEANUP of a real failover restores the check (a rehearsed, planned failover)


@register
class Route53HealthCheck(ServiceModule):
    action = "route53.health_check"
    summary = "Fail a Route 53 FAILOVER record pair over to the SECONDARY by inverting the primary's health check"
    Parameters = Route53HealthCheckParameters

    def instantiate(self, ctx: ResourceContext, params: Route53HealthCheckParameters) -> Operation:
        state = _inspect(ctx, params)
        return Operation(done=True, outputs=state, message=_describe(state))

    def activate(self, ctx: ResourceContext, params: Route53HealthCheckParameters) -> Operation:
        state = _inspect(ctx, params)
        if ctx.is_drill:
            verb = "invert it" if state["healthy"] else "leave it: Route 53 already serves the SECONDARY"
            return Operation(done=True, outputs={**state, "wouldInvert": state["healthy"]},
                             message=f"drill, nothing changed: {_describe(state)}; a failover would {verb}")
        if ctx.mode is Mode.FAILBACK:
            return _revert(ctx, state)
        check, by, previous = state["healthCheckId"], state["invertedBy"], state["previousInverted"]
        if by is not None and state["inverted"] != previous:
            who = "this run" if by == ctx.call.execution_id else f"{by}, and not reverted since"
            return Operation(done=True, outputs=state, message=f"health check {check} already inverted by {who}")
        if state["disabled"]:
            raise fatal(f"health check {check} is disabled, so Route 53 treats it as healthy whatever Inverted says; "
                        "enable it or fail over another way", "HealthCheckDisabled")
        if not state["healthy"]:
            ctx.log.warning("route53.primary_already_unhealthy", health_check=check)
            return Operation(done=True, outputs=state, message=(
                f"health check {check} is already unhealthy, Route 53 serves the SECONDARY; not inverted (that would "
                "send traffic back to the primary). Route 53 fails back by itself once the check recovers"))
        if by != ctx.call.execution_id:
            # Before the update: whatever happens next, a retry or a failback knows what to restore. (Tags of an
            # earlier run whose change is gone, `inverted == previous`, are simply overwritten.)
            _tag(ctx, check, {TAG_PREVIOUS: str(state["inverted"]).lower(), TAG_BY: ctx.call.execution_id})
            previous = state["inverted"]
        after = _update(ctx, check, state["version"], inverted=not previous)
        ctx.log.info("route53.health_check_inverted", health_check=check, inverted=after["inverted"])
        outputs = {**state, **after, "previousInverted": previous, "invertedBy": ctx.call.execution_id,
                   "healthy": False, "serving": "SECONDARY"}
        return Operation(done=True, outputs=outputs, message=(
            f"health check {check} Inverted={after['inverted']}: Route 53 now treats the primary as unhealthy and "
            "serves the SECONDARY record"))

    def cleanup(self, ctx: ResourceContext, params: Route53HealthCheckParameters) -> Operation:
        if ctx.is_drill:
            return Operation(done=True, message="drill changed nothing: nothing to clean up")
        if not params.revert_on_cleanup:
            return Operation(done=True, message="the health check stays inverted (revertOnCleanup is false)")
        return _revert(ctx, _inspect(ctx, params))

    def status(self, ctx: ResourceContext, params: Route53HealthCheckParameters) -> dict[str, Any]:
        return _inspect(ctx, params)


def _revert(ctx: ResourceContext, state: dict[str, Any]) -> Operation:
    check = state["healthCheckId"]
    if state["previousInverted"] is None:
        if state["healthy"]:
            return Operation(done=True, outputs=state, message=f"nothing to revert: {_describe(state)}")
        raise fatal(f"health check {check} is unhealthy and no failover recorded its state before "
                    f"({TAG_PREVIOUS} tag missing): fix the primary or set Inverted by hand", "NothingToRevert")
    outputs = dict(state)
    if state["inverted"] != state["previousInverted"]:
        outputs.update(_update(ctx, check, state["version"], inverted=state["previousInverted"]))
        ctx.log.info("route53.health_check_reverted", health_check=check, inverted=state["previousInverted"])
    # Tags go last: a retry between the two steps still knows what to restore.
    with aws_errors(f"ChangeTagsForResource healthcheck {check}"):
        client(ctx).change_tags_for_resource(ResourceType="healthcheck", ResourceId=check,
                                             RemoveTagKeys=[TAG_PREVIOUS, TAG_BY])
    outputs.update(previousInverted=None, invertedBy=None)
    return Operation(done=True, outputs=outputs, message=(
        f"health check {check} back to Inverted={state['previousInverted']} (as before {state['invertedBy']})"))


def _inspect(ctx: ResourceContext, params: Route53HealthCheckParameters) -> dict[str, Any]:
    zone = zone_id(ctx, params.hosted_zone_id, params.zone_name)
    name = f"{fqdn(params.record_name)} ({params.record_type})"
    records = find_records(ctx, zone, params.record_name, params.record_type)
    pair = {r["Failover"]: r for r in records if r.get("Failover")}
    if "PRIMARY" not in pair or "SECONDARY" not in pair:
        raise fatal(f"record {name} in hosted zone {zone} is not a FAILOVER pair (found "
                    f"{sorted(pair) or 'no failover records'})", "RecordNotFound")
    check = params.health_check_id or pair["PRIMARY"].get("HealthCheckId")
    if not check:
        raise fatal(f"the PRIMARY record {name} has no health check and the plan names none (healthCheckId)",
                    "HealthCheckNotFound")
    config, version = _health_check(ctx, check)
    with aws_errors(f"GetHealthCheckStatus {check}"):
        observations = client(ctx).get_health_check_status(HealthCheckId=check)["HealthCheckObservations"]
    passing = sum(o.get("StatusReport", {}).get("Status", "").startswith("Success") for o in observations)
    # A check with no observations yet counts as healthy, as Route 53 treats a new check.
    raw_healthy = not observations or passing > _HEALTHY_FRACTION * len(observations)
    healthy = config.get("Disabled", False) or raw_healthy != config.get("Inverted", False)
    with aws_errors(f"ListTagsForResource healthcheck {check}"):
        tags = client(ctx).list_tags_for_resource(ResourceType="healthcheck", ResourceId=check)
    tags = {t["Key"]: t["Value"] for t in tags["ResourceTagSet"].get("Tags", [])}
    previous = tags.get(TAG_PREVIOUS)
    return {
        "hostedZoneId": zone, "recordName": fqdn(params.record_name), "healthCheckId": check,
        "type": config.get("Type"), "inverted": config.get("Inverted", False),
        "disabled": config.get("Disabled", False), "version": version,
        "checkersPassing": f"{passing}/{len(observations)}", "healthy": healthy,
        "serving": "PRIMARY" if healthy else "SECONDARY",
        "primary": _answer(pair["PRIMARY"]), "secondary": _answer(pair["SECONDARY"]),
        "previousInverted": None if previous is None else previous == "true", "invertedBy": tags.get(TAG_BY),
    }


def _health_check(ctx: ResourceContext, check: str) -> tuple[dict[str, Any], int]:
    try:
        with aws_errors(f"GetHealthCheck {check}"):
            found = client(ctx).get_health_check(HealthCheckId=check)["HealthCheck"]
    except ClientError as exc:
        if error_code(exc) == "NoSuchHealthCheck":
            raise fatal(f"health check {check} does not exist", "HealthCheckNotFound") from exc
        raise
    return found["HealthCheckConfig"], int(found["HealthCheckVersion"])


def _update(ctx: ResourceContext, check: str, version: int, inverted: bool) -> dict[str, Any]:
    # HealthCheckVersionMismatch (someone changed the check since we read it) stays retryable: the retry re-reads.
    with aws_errors(f"UpdateHealthCheck {check}"):
        found = client(ctx).update_health_check(HealthCheckId=check, HealthCheckVersion=version, Inverted=inverted)
    return {"inverted": found["HealthCheck"]["HealthCheckConfig"]["Inverted"],
            "version": found["HealthCheck"]["HealthCheckVersion"]}


def _tag(ctx: ResourceContext, check: str, tags: dict[str, str]) -> None:
    with aws_errors(f"ChangeTagsForResource healthcheck {check}"):
        client(ctx).change_tags_for_resource(ResourceType="healthcheck", ResourceId=check,
                                             AddTags=[{"Key": k, "Value": v} for k, v in tags.items()])


def _answer(record: dict[str, Any]) -> str:
    if "AliasTarget" in record:
        return fqdn(record["AliasTarget"]["DNSName"])
    return ", ".join(r["Value"] for r in record.get("ResourceRecords", []))


def _describe(state: dict[str, Any]) -> str:
    return (f"{state['recordName']}: health check {state['healthCheckId']} "
            f"{'healthy' if state['healthy'] else 'unhealthy'} (checkers {state['checkersPassing']} passing, "
            f"Inverted={state['inverted']}, Disabled={state['disabled']}), Route 53 serves the {state['serving']}")
