"""Route 53: point the application's DNS name at the recovery target and wait until Route 53 reports INSYNC.

Three kinds of record, told apart by which parameters the plan gives:
- simple (`recoveryValue`): a CNAME/A/AAAA record's value is switched;
- alias (`recoveryAliasTarget`): an alias record's AliasTarget is switched (e.g. from one region's ALB to the other's);
- weighted (`primarySetIdentifier` + `recoverySetIdentifier`): the weights of the two record sets are shifted
  (`failoverWeights`, 0/100 by default), both in one change batch so no resolver ever sees 0/0 or 100/100.
Drill: a separate drill record (`drill-<suffix>.<recordName>`) answering what the recovery side would answer is written
and removed in CLEANUP; the production record is never touched. Failback points the record (or the weights) back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from temporalio.exceptions import ApplicationError

from activities.core.context import ResourceContext
from activities.core.aws import aws_errors, fatal
from contracts.activities import Operation
from activities.core.registry import ModuleParameters, ServiceModule, register
from plans.model import Mode

# Route 53 is a global service whose control plane lives in us-east-1, whatever region the resource names.
ROUTE53_REGION = "us-east-1"
POLL_SECONDS = 5.0
_ROUTING_KEYS = ("SetIdentifier", "Weight", "Failover", "Region", "GeoLocation", "GeoProximityLocation",
                 "MultiValueAnswer", "CidrRoutingConfig", "HealthCheckId", "TrafficPolicyInstanceId")


class _Part(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class AliasTarget(_Part):
    hosted_zone_id: str = Field(min_length=1, max_length=32)  # the target's zone (e.g. the ALB's canonical zone)
    dns_name: str = Field(min_length=1, max_length=1024)
    evaluate_target_health: bool = False

    def wire(self) -> dict[str, Any]:
        return {"HostedZoneId": self.hosted_zone_id, "DNSName": fqdn(self.dns_name),
                "EvaluateTargetHealth": self.evaluate_target_health}


class Weights(_Part):
    primary: int = Field(ge=0, le=255)
    recovery: int = Field(ge=0, le=255)

    @model_validator(mode="after")
    def _not_both_zero(self) -> Weights:
        # Route 53 splits traffic equally when every weight is 0: never what a failover means, so refuse it.
        if self.primary == 0 and self.recovery == 0:
            raise ValueError("weights 0/0 make Route 53 split traffic equally; give one side a weight")
        return self


class Route53RecordParameters(ModuleParameters):
    hosted_zone_id: str | None = Field(default=None, pattern=r"^(/hostedzone/)?[A-Z0-9]{1,32}$")
    zone_name: str | None = None  # looked up when hostedZoneId is not given
    record_name: str = Field(min_length=1, max_length=1024)
    record_type: Literal["A", "AAAA", "CNAME"] = "CNAME"
    ttl: int = Field(default=60, ge=0, le=86400)  # simple records only (alias records have no TTL)
    recovery_value: str | None = Field(default=None, min_length=1)  # simple: the value after ACTIVATE
    primary_value: str | None = None  # simple: the value in normal operation (checked in INSTANTIATE, failback)
    recovery_alias_target: AliasTarget | None = None  # alias: the target after ACTIVATE
    primary_alias_target: AliasTarget | None = None  # alias: the target in normal operation (failback)
    primary_set_identifier: str | None = Field(default=None, min_length=1, max_length=128)  # weighted
    recovery_set_identifier: str | None = Field(default=None, min_length=1, max_length=128)  # weighted
    failover_weights: Weights = Weights(primary=0, recovery=100)
    normal_weights: Weights = Weights(primary=100, recovery=0)  # what failback restores
    drill_record_name: str | None = None  # default: "drill-<execution suffix>.<recordName>"

    @property
    def kind(self) -> str:
        return "alias" if self.recovery_alias_target else "weighted" if self.recovery_set_identifier else "simple"

    @model_validator(mode="after")
    def _one_kind(self) -> Route53RecordParameters:
        given = [k for k, v in (("recoveryValue", self.recovery_value), ("recoveryAliasTarget",
                 self.recovery_alias_target), ("recoverySetIdentifier", self.recovery_set_identifier)) if v]
        if len(given) != 1:
            raise ValueError("give exactly one of recoveryValue (simple record), recoveryAliasTarget (alias record) "
                             f"or recoverySetIdentifier with primarySetIdentifier (weighted records); got {given}")
        if self.recovery_set_identifier and not self.primary_set_identifier:
            raise ValueError("weighted records need primarySetIdentifier as well as recoverySetIdentifier")
        if self.recovery_set_identifier == self.primary_set_identifier is not None:
            raise ValueError("primarySetIdentifier and recoverySetIdentifier must differ")
        return self


@register
class Route53Record(ServiceModule):
    action = "route53.record"
    summary = "Switch a DNS record (value, alias target or weights) to the recovery side and wait for INSYNC"
    Parameters = Route53RecordParameters

    def instantiate(self, ctx: ResourceContext, params: Route53RecordParameters) -> Operation:
        zone = _zone_id(ctx, params)
        records = find_records(ctx, zone, params.record_name, params.record_type)
        _check_kind(params, zone, records)
        state = _state(params, records)
        outputs = {"hostedZoneId": zone, "recordName": fqdn(params.record_name), **state,
                   "isPrimary": state["pointsTo"] == "primary", "isRecovery": state["pointsTo"] == "recovery"}
        return Operation(done=True, outputs=outputs,
                         message=f"{fqdn(params.record_name)} points to {outputs['pointsTo']}")

    def activate(self, ctx: ResourceContext, params: Route53RecordParameters) -> Operation:
        zone = _zone_id(ctx, params)
        records = find_records(ctx, zone, params.record_name, params.record_type)
        if records or params.kind == "weighted":
            # Never turn an alias into a plain record or back. A missing simple record is no obstacle: a drill
            # record copies nothing from it, and a failover may create it.
            _check_kind(params, zone, records)
        if ctx.is_drill:
            wanted = [{"Name": fqdn(_drill_name(ctx, params)), **_recovery_answer(params, records)}]
        elif params.kind == "weighted":
            weights = params.normal_weights if ctx.mode is Mode.FAILBACK else params.failover_weights
            wanted = _weighted(params, records, weights)
        else:
            wanted = [{"Name": fqdn(params.record_name), **_answer(params, failback=ctx.mode is Mode.FAILBACK)}]
        name = wanted[0]["Name"]
        current = records if name == fqdn(params.record_name) else find_records(ctx, zone, name, params.record_type)
        outputs = {"hostedZoneId": zone, "recordName": name, **_summary(wanted)}
        if len(outputs.get("values", ())) == 1:
            outputs["value"] = outputs["values"][0]
        if all(_same(w, next((c for c in current if c.get("SetIdentifier") == w.get("SetIdentifier")), None))
               for w in wanted):
            # Either an earlier attempt of this activity already made the change, or nothing had to change.
            return Operation(done=True, outputs=outputs, message=f"{name} already answers {_summary(wanted)}")
        change_id = change(ctx, zone, [("UPSERT", w) for w in wanted], f"dr {ctx.call.execution_id}: "
                           f"{ctx.call.phase.value}")
        ctx.log.info("route53.upsert", record=name, change=change_id, drill=ctx.is_drill, **_summary(wanted))
        return Operation(done=False, handle={"changeId": change_id, **outputs}, outputs=outputs,
                         message=f"{name} -> {_summary(wanted)} submitted ({change_id})",
                         poll_interval_seconds=POLL_SECONDS)

    def cleanup(self, ctx: ResourceContext, params: Route53RecordParameters) -> Operation:
        if not ctx.is_drill:
            return Operation(done=True, message="nothing to clean up: the production record stays switched")
        zone = _zone_id(ctx, params)
        name = fqdn(_drill_name(ctx, params))
        outputs = {"hostedZoneId": zone, "recordName": name}
        current = find_records(ctx, zone, name, params.record_type)
        if not current:
            return Operation(done=True, outputs=outputs, message=f"drill record {name} already gone")
        try:
            # DELETE must repeat the record exactly, so it is sent as read back rather than as the plan says.
            change_id = change(ctx, zone, [("DELETE", current[0])], f"dr {ctx.call.execution_id}: drill cleanup")
        except ApplicationError:
            # Another attempt may have deleted it between our read and our DELETE.
            if not find_records(ctx, zone, name, params.record_type):
                return Operation(done=True, outputs=outputs, message=f"drill record {name} already gone")
            raise
        ctx.log.info("route53.delete_drill_record", record=name, change=change_id)
        return Operation(done=False, handle={"changeId": change_id, **outputs}, outputs=outputs,
                         message=f"deleting drill record {name} ({change_id})", poll_interval_seconds=POLL_SECONDS)

    def poll(self, ctx: ResourceContext, params: Route53RecordParameters, handle: dict[str, Any]) -> Operation:
        return poll_change(ctx, self.action, handle)

    def status(self, ctx: ResourceContext, params: Route53RecordParameters) -> dict[str, Any]:
        zone = _zone_id(ctx, params)
        records = find_records(ctx, zone, params.record_name, params.record_type)
        result: dict[str, Any] = {"hostedZoneId": zone, "recordName": fqdn(params.record_name),
                                  "recordType": params.record_type, "exists": bool(records), **_state(params, records)}
        if ctx.is_drill:
            drill = find_records(ctx, zone, _drill_name(ctx, params), params.record_type)
            result["drillRecord"] = {"name": _drill_name(ctx, params), **_summary(drill)} if drill else None
        return result


# --- what the records say and should say ------------------------------------------------------------------------------

def _check_kind(params: Route53RecordParameters, zone: str, records: list[dict[str, Any]]) -> None:
    name = f"{fqdn(params.record_name)} ({params.record_type})"
    if not records:
        raise fatal(f"record {name} does not exist in hosted zone {zone}", "RecordNotFound")
    if params.kind == "weighted":
        for set_id in (params.primary_set_identifier, params.recovery_set_identifier):
            found = next((r for r in records if r.get("SetIdentifier") == set_id), None)
            if found is None or "Weight" not in found:
                raise fatal(f"record {name} has no weighted record set {set_id!r} in hosted zone {zone} "
                            f"(sets: {[r.get('SetIdentifier') for r in records]})", "RecordNotFound")
        return
    record = records[0]
    if len(records) > 1 or any(k in record for k in _ROUTING_KEYS):
        raise fatal(f"record {name} uses a routing policy; give primarySetIdentifier/recoverySetIdentifier for "
                    "weighted records (route53.health_check handles failover records)", "UnsupportedRecord")
    if (params.kind == "alias") != ("AliasTarget" in record):
        want, have = ("an alias", "a plain") if params.kind == "alias" else ("a plain", "an alias")
        raise fatal(f"record {name} is {have} record but the plan describes {want} record "
                    f"({'recoveryAliasTarget' if params.kind == 'alias' else 'recoveryValue'})", "UnsupportedRecord")


def _answer(params: Route53RecordParameters, failback: bool) -> dict[str, Any]:
    """Type and answer of the (simple or alias) record on the recovery side, or on the primary side for failback."""
    if params.kind == "alias":
        target = params.primary_alias_target if failback else params.recovery_alias_target
        if target is None:
            raise fatal("route53.record: failback needs primaryAliasTarget to point the record back",
                        "MissingParameter")
        return {"Type": params.record_type, "AliasTarget": target.wire()}
    value = params.primary_value if failback else params.recovery_value
    if value is None:
        raise fatal("route53.record: failback needs primaryValue to point the record back", "MissingParameter")
    return {"Type": params.record_type, "TTL": params.ttl, "ResourceRecords": [{"Value": value}]}


def _recovery_answer(params: Route53RecordParameters, records: list[dict[str, Any]]) -> dict[str, Any]:
    if params.kind != "weighted":
        return _answer(params, failback=False)
    # The drill record answers what the recovery set answers, without its routing policy.
    found = next(r for r in records if r.get("SetIdentifier") == params.recovery_set_identifier)
    return {k: v for k, v in found.items() if k not in (*_ROUTING_KEYS, "Name")}


def _weighted(params: Route53RecordParameters, records: list[dict[str, Any]], weights: Weights) -> list[dict[str, Any]]:
    wanted = []
    for set_id, weight in ((params.primary_set_identifier, weights.primary),
                           (params.recovery_set_identifier, weights.recovery)):
        # UPSERT replaces the whole set: everything but the weight is sent back as Route 53 reported it.
        found = next(r for r in records if r.get("SetIdentifier") == set_id)
        wanted.append({**found, "Weight": weight})
    return wanted


def _same(wanted: dict[str, Any], current: dict[str, Any] | None) -> bool:
    if current is None or current.get("Weight") != wanted.get("Weight"):
        return False
    if "AliasTarget" in wanted:
        have, want = current.get("AliasTarget") or {}, wanted["AliasTarget"]
        return (fqdn(have.get("DNSName", "")) == fqdn(want["DNSName"]) and have.get("HostedZoneId") ==
                want["HostedZoneId"] and have.get("EvaluateTargetHealth") == want["EvaluateTargetHealth"])
    return ("AliasTarget" not in current and current.get("TTL") == wanted.get("TTL")
            and _values(current) == _values(wanted))


def _values(record: dict[str, Any]) -> list[str]:
    return sorted(_norm(record["Type"], v["Value"]) for v in record.get("ResourceRecords", []))


def _norm(record_type: str, value: str) -> str:
    # Host names compare without case or trailing dot; addresses compare as written.
    return fqdn(value) if record_type == "CNAME" else value.strip()


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    if any("SetIdentifier" in r for r in records):
        return {"weights": {r["SetIdentifier"]: r.get("Weight") for r in records}}
    record = records[0] if records else {}
    if "AliasTarget" in record:
        return {"aliasTarget": fqdn(record["AliasTarget"]["DNSName"])}
    return {"values": [r["Value"] for r in record.get("ResourceRecords", [])], "ttl": record.get("TTL")}


def _state(params: Route53RecordParameters, records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the record answers now, and whether that is the primary's or the recovery's answer (TTL aside)."""
    if not records:
        return {"pointsTo": "nothing (no record)"}
    summary = _summary(records)
    if params.kind == "weighted":
        pair = (summary["weights"].get(params.primary_set_identifier),
                summary["weights"].get(params.recovery_set_identifier))
        sides = {"recovery": (params.failover_weights.primary, params.failover_weights.recovery),
                 "primary": (params.normal_weights.primary, params.normal_weights.recovery)}
        points = next((side for side, weights in sides.items() if pair == weights), f"other: {pair[0]}/{pair[1]}")
        return {**summary, "pointsTo": points}
    record = records[0]
    for side, failback in (("recovery", False), ("primary", True)):
        given = params.primary_alias_target or params.primary_value if failback else True
        if given and _same({**_answer(params, failback), "TTL": record.get("TTL")}, record):
            return {**summary, "pointsTo": side}
    other = summary.get("aliasTarget") or ", ".join(summary.get("values", []))
    return {**summary, "pointsTo": f"other: {other}"}


# --- shared with route53.health_check -------------------------------------------------------------------------------

def fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


def client(ctx: ResourceContext) -> Any:
    return ctx.client("route53", region=ROUTE53_REGION)


def _drill_name(ctx: ResourceContext, params: Route53RecordParameters) -> str:
    return params.drill_record_name or f"drill-{ctx.drill_suffix()}.{params.record_name.rstrip('.')}"


def _zone_id(ctx: ResourceContext, params: Any) -> str:
    return zone_id(ctx, params.hosted_zone_id, params.zone_name)


def zone_id(ctx: ResourceContext, hosted_zone_id: str | None, zone_name: str | None) -> str:
    if hosted_zone_id:
        return hosted_zone_id.removeprefix("/hostedzone/")
    if not zone_name:
        raise fatal("route53 resources need hostedZoneId or zoneName", "MissingParameter")
    wanted = fqdn(zone_name)
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"DNSName": wanted}
    with aws_errors(f"ListHostedZonesByName {wanted}"):
        while True:
            page = client(ctx).list_hosted_zones_by_name(**kwargs)
            zones = page.get("HostedZones", [])
            found += [z for z in zones if fqdn(z["Name"]) == wanted]
            # Zones come sorted by name from DNSName on, so once a page ends past our name there is no more to see.
            if not page.get("IsTruncated") or (zones and fqdn(zones[-1]["Name"]) != wanted):
                break
            kwargs = {"DNSName": page["NextDNSName"], "HostedZoneId": page["NextHostedZoneId"]}
    if not found:
        raise fatal(f"no hosted zone named {wanted} in account {ctx.call.account.id}", "HostedZoneNotFound")
    if len(found) > 1:
        kinds = ["private" if z.get("Config", {}).get("PrivateZone") else "public" for z in found]
        ids = ", ".join(f"{z['Id'].removeprefix('/hostedzone/')} ({kind})" for z, kind in zip(found, kinds))
        raise fatal(f"{len(found)} hosted zones are named {wanted}: {ids}; give hostedZoneId", "AmbiguousHostedZone")
    return str(found[0]["Id"]).removeprefix("/hostedzone/")


def find_records(ctx: ResourceContext, zone: str, name: str, record_type: str) -> list[dict[str, Any]]:
    """Every record set of this name and type: one for a simple or alias record, one per set identifier otherwise."""
    wanted = fqdn(name)
    kwargs: dict[str, Any] = {"StartRecordName": wanted, "StartRecordType": record_type}
    found: list[dict[str, Any]] = []
    with aws_errors(f"ListResourceRecordSets {wanted} in {zone}"):
        for _ in range(100):  # 300 sets a page: far more sets than one name can hold
            page = client(ctx).list_resource_record_sets(HostedZoneId=zone, MaxItems="300", **kwargs)
            sets = page.get("ResourceRecordSets", [])
            # Route 53 escapes some characters as \\ooo; names we manage never contain them, so a plain compare does.
            found += [dict(r) for r in sets if fqdn(r["Name"]) == wanted and r["Type"] == record_type]
            if not page.get("IsTruncated") or (sets and (fqdn(sets[-1]["Name"]), sets[-1]["Type"]) !=
                                                (wanted, record_type)):
                break
            kwargs = {"StartRecordName": page["NextRecordName"], "StartRecordType": page["NextRecordType"]}
            if page.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
    return found


def change(ctx: ResourceContext, zone: str, changes: list[tuple[str, dict[str, Any]]], comment: str) -> str:
    # PriorRequestNotComplete (an earlier change to the zone still applying) is left retryable by aws_errors.
    names = ", ".join(sorted({f"{a} {r['Name']}" for a, r in changes}))
    with aws_errors(f"{names} in {zone}"):
        response = client(ctx).change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={"Comment": comment[:256],
                         "Changes": [{"Action": a, "ResourceRecordSet": r} for a, r in changes]},
        )
    return str(response["ChangeInfo"]["Id"])


def poll_change(ctx: ResourceContext, action: str, handle: dict[str, Any]) -> Operation:
    change_id = handle.get("changeId")
    if not change_id:
        raise fatal(f"{action}: poll needs a changeId in the handle, got {sorted(handle)}", "BadHandle")
    with aws_errors(f"GetChange {change_id}"):
        status = client(ctx).get_change(Id=change_id)["ChangeInfo"]["Status"]
    outputs = {k: v for k, v in handle.items() if k != "changeId"}
    if status == "INSYNC":
        return Operation(done=True, handle=handle, outputs=outputs, message=f"change {change_id} INSYNC")
    return Operation(done=False, handle=handle, outputs=outputs, message=f"waiting for change {change_id} ({status})",
                     poll_interval_seconds=POLL_SECONDS)
