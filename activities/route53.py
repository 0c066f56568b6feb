"""Route 53: point the application's DNS record at the recovery target.

Drill: a separate drill record is written (and removed in CLEANUP); the production record is never touched.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from temporalio.exceptions import ApplicationError

from activities.aws import aws_errors, fatal
from activities.contract import Operation
from activities.registry import ModuleParameters, ServiceModule, register
from plans.model import Mode

# Route 53 is a global service whose control plane lives in us-east-1, whatever region the resource names.
_ROUTE53_REGION = "us-east-1"
_POLL_SECONDS = 5.0


class Route53RecordParameters(ModuleParameters):
    hosted_zone_id: str | None = Field(default=None, pattern=r"^(/hostedzone/)?[A-Z0-9]{1,32}$")
    zone_name: str | None = None  # looked up when hostedZoneId is not given
    record_name: str = Field(min_length=1, max_length=1024)
    record_type: Literal["A", "AAAA", "CNAME"] = "CNAME"
    ttl: int = Field(default=60, ge=0, le=86400)
    recovery_value: str = Field(min_length=1)  # where the record points after ACTIVATE
    primary_value: str | None = None  # where it points in normal operation (checked in INSTANTIATE, used in failback)
    drill_record_name: str | None = None  # default: "drill-<execution suffix>.<recordName>"


def _fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


def _same_value(record_type: str, a: str, b: str) -> bool:
    # Host names compare without case or trailing dot; addresses compare as written.
    if record_type == "CNAME":
        return _fqdn(a) == _fqdn(b)
    return a.strip() == b.strip()


def _values(record: dict[str, Any] | None) -> list[str]:
    if record is None:
        return []
    return [r["Value"] for r in record.get("ResourceRecords", [])]


def _points_to(record_type: str, record: dict[str, Any] | None, value: str | None) -> bool:
    values = _values(record)
    return value is not None and len(values) == 1 and _same_value(record_type, values[0], value)


@register
class Route53Record(ServiceModule):
    action = "route53.record"
    summary = "Switch a DNS record to the recovery target and wait until Route 53 reports INSYNC"
    Parameters = Route53RecordParameters
    def instantiate(self, ctx: Any, params: Route53RecordParameters) -> Operation:
        return self._preflight(ctx, params)

    def activate(self, ctx: Any, params: Route53RecordParameters) -> Operation:
        return self._activate(ctx, params)

    def cleanup(self, ctx: Any, params: Route53RecordParameters) -> Operation:
        return self._cleanup(ctx, params)

    def poll(self, ctx: Any, params: Route53RecordParameters, handle: dict[str, Any]) -> Operation:
        change_id = handle.get("changeId")
        if not change_id:
            raise fatal(f"{self.action}: poll needs a changeId in the handle, got {sorted(handle)}", "BadHandle")
        with aws_errors(f"GetChange {change_id}"):
            status = _client(ctx).get_change(Id=change_id)["ChangeInfo"]["Status"]
        outputs = {k: v for k, v in handle.items() if k != "changeId"}
        if status == "INSYNC":
            return Operation(done=True, handle=handle, outputs=outputs, message=f"change {change_id} INSYNC")
        return Operation(
            done=False,
            handle=handle,
            outputs=outputs,
            message=f"waiting for change {change_id} ({status})",
            poll_interval_seconds=_POLL_SECONDS,
        )

    def status(self, ctx: Any, params: Route53RecordParameters) -> dict[str, Any]:
        zone_id = _zone_id(ctx, params)
        record = _find_record(ctx, zone_id, params.record_name, params.record_type)
        result: dict[str, Any] = {
            "hostedZoneId": zone_id,
            "recordName": _fqdn(params.record_name),
            "recordType": params.record_type,
            "exists": record is not None,
            "values": _values(record),
            "ttl": record.get("TTL") if record else None,
            "pointsTo": _describe_target(params, record),
        }
        if ctx.is_drill:
            drill = _find_record(ctx, zone_id, _drill_name(ctx, params), params.record_type)
            result["drillRecord"] = {"name": _drill_name(ctx, params), "values": _values(drill)} if drill else None
        return result

    def _preflight(self, ctx: Any, params: Route53RecordParameters) -> Operation:
        zone_id = _zone_id(ctx, params)
        record = _find_record(ctx, zone_id, params.record_name, params.record_type)
        if record is None:
            raise fatal(
                f"record {_fqdn(params.record_name)} ({params.record_type}) does not exist in hosted zone {zone_id}",
                "RecordNotFound",
            )
        if record.get("AliasTarget") or record.get("SetIdentifier"):
            raise fatal(
                f"record {_fqdn(params.record_name)} is an alias or uses a routing policy; "
                f"{self.action} switches simple records only",
                "UnsupportedRecord",
            )
        target = _describe_target(params, record)
        outputs = {
            "hostedZoneId": zone_id,
            "recordName": _fqdn(params.record_name),
            "values": _values(record),
            "ttl": record.get("TTL"),
            "pointsTo": target,
            "isPrimary": _points_to(params.record_type, record, params.primary_value),
            "isRecovery": _points_to(params.record_type, record, params.recovery_value),
        }
        return Operation(done=True, outputs=outputs, message=f"{_fqdn(params.record_name)} points to {target}")

    def _activate(self, ctx: Any, params: Route53RecordParameters) -> Operation:
        zone_id = _zone_id(ctx, params)
        if ctx.is_drill:
            name, value = _drill_name(ctx, params), params.recovery_value
        elif ctx.mode is Mode.FAILBACK:
            if params.primary_value is None:
                raise fatal(f"{self.action}: failback needs primaryValue to point the record back", "MissingParameter")
            name, value = params.record_name, params.primary_value
        else:
            name, value = params.record_name, params.recovery_value
        outputs = {"hostedZoneId": zone_id, "recordName": _fqdn(name), "value": value}

        current = _find_record(ctx, zone_id, name, params.record_type)
        if current is not None and _points_to(params.record_type, current, value) and current.get("TTL") == params.ttl:
            # Either an earlier attempt of this activity already made the change, or nothing had to change.
            return Operation(done=True, outputs=outputs, message=f"{_fqdn(name)} already points to {value}")

        record_set = {
            "Name": _fqdn(name),
            "Type": params.record_type,
            "TTL": params.ttl,
            "ResourceRecords": [{"Value": value}],
        }
        change_id = _change(ctx, zone_id, "UPSERT", record_set, f"dr {ctx.call.execution_id}: {ctx.call.phase.value}")
        ctx.log.info("route53.upsert", record=_fqdn(name), value=value, change=change_id, drill=ctx.is_drill)
        return Operation(
            done=False,
            handle={"changeId": change_id, **outputs},
            outputs=outputs,
            message=f"{_fqdn(name)} -> {value} submitted ({change_id})",
            poll_interval_seconds=_POLL_SECONDS,
        )

    def _cleanup(self, ctx: Any, params: Route53RecordParameters) -> Operation:
        if not ctx.is_drill:
            return Operation(done=True, message="nothing to clean up: the production record stays switched")
        zone_id = _zone_id(ctx, params)
        name = _drill_name(ctx, params)
        outputs = {"hostedZoneId": zone_id, "recordName": _fqdn(name)}
        current = _find_record(ctx, zone_id, name, params.record_type)
        if current is None:
            return Operation(done=True, outputs=outputs, message=f"drill record {_fqdn(name)} already gone")
        try:
            # DELETE must repeat the record exactly, so it is sent as read back rather than as the plan says.
            change_id = _change(ctx, zone_id, "DELETE", current, f"dr {ctx.call.execution_id}: drill cleanup")
        except ApplicationError:
            # Another attempt may have deleted it between our read and our DELETE.
            if _find_record(ctx, zone_id, name, params.record_type) is None:
                return Operation(done=True, outputs=outputs, message=f"drill record {_fqdn(name)} already gone")
            raise
        ctx.log.info("route53.delete_drill_record", record=_fqdn(name), change=change_id)
        return Operation(
            done=False,
            handle={"changeId": change_id, **outputs},
            outputs=outputs,
            message=f"deleting drill record {_fqdn(name)} ({change_id})",
            poll_interval_seconds=_POLL_SECONDS,
        )


def _client(ctx: Any) -> Any:
    return ctx.client("route53", region=_ROUTE53_REGION)


def _drill_name(ctx: Any, params: Route53RecordParameters) -> str:
    return params.drill_record_name or f"drill-{ctx.drill_suffix()}.{params.record_name.rstrip('.')}"


def _describe_target(params: Route53RecordParameters, record: dict[str, Any] | None) -> str:
    if record is None:
        return "nothing (no record)"
    if _points_to(params.record_type, record, params.recovery_value):
        return "recovery"
    if _points_to(params.record_type, record, params.primary_value):
        return "primary"
    return "other: " + ", ".join(_values(record))


def _zone_id(ctx: Any, params: Route53RecordParameters) -> str:
    if params.hosted_zone_id:
        return params.hosted_zone_id.removeprefix("/hostedzone/")
    if not params.zone_name:
        raise fatal("route53.record needs hostedZoneId or zoneName", "MissingParameter")
    wanted = _fqdn(params.zone_name)
    client = _client(ctx)
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"DNSName": wanted}
    with aws_errors(f"ListHostedZonesByName {wanted}"):
        while True:
            page = client.list_hosted_zones_by_name(**kwargs)
            zones = page.get("HostedZones", [])
            found += [z for z in zones if _fqdn(z["Name"]) == wanted]
            # Zones come sorted by name from DNSName on, so once a page ends past our name there is no more to see.
            if not page.get("IsTruncated") or (zones and _fqdn(zones[-1]["Name"]) != wanted):
                break
            kwargs = {"DNSName": page["NextDNSName"], "HostedZoneId": page["NextHostedZoneId"]}
    if not found:
        raise fatal(f"no hosted zone named {wanted} in account {ctx.call.account.id}", "HostedZoneNotFound")
    if len(found) > 1:
        kinds = ["private" if z.get("Config", {}).get("PrivateZone") else "public" for z in found]
        ids = ", ".join(f"{z['Id'].removeprefix('/hostedzone/')} ({kind})" for z, kind in zip(found, kinds))
        raise fatal(f"{len(found)} hosted zones are named {wanted}: {ids}; give hostedZoneId", "AmbiguousHostedZone")
    return str(found[0]["Id"]).removeprefix("/hostedzone/")


def _find_record(ctx: Any, zone_id: str, name: str, record_type: str) -> dict[str, Any] | None:
    wanted = _fqdn(name)
    with aws_errors(f"ListResourceRecordSets {wanted} in {zone_id}"):
        page = _client(ctx).list_resource_record_sets(
            HostedZoneId=zone_id, StartRecordName=wanted, StartRecordType=record_type, MaxItems="10"
        )
    for record in page.get("ResourceRecordSets", []):
        # Route 53 escapes some characters as \\ooo; names we manage never contain them, so a plain compare does.
        if _fqdn(record["Name"]) == wanted and record["Type"] == record_type:
            return dict(record)
    return None


def _change(ctx: Any, zone_id: str, action: str, record_set: dict[str, Any], comment: str) -> str:
    # PriorRequestNotComplete (an earlier change to the zone still applying) is left retryable by aws_errors.
    with aws_errors(f"{action} {record_set['Name']} in {zone_id}"):
        response = _client(ctx).change_resource_record_sets(
            HostedZoneId=zone_id,
            ChangeBatch={"Comment": comment[:256], "Changes": [{"Action": action, "ResourceRecordSet": record_set}]},
        )
    return str(response["ChangeInfo"]["Id"])
