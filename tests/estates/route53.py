"""Route 53 and ARC: the application's DNS in one hosted zone (a plain CNAME, an alias to the primary ALB, weighted
API records, a FAILOVER pair with a health check) and an ARC cluster with an east (primary) and west (recovery) cell."""

from __future__ import annotations

from typing import Any

from plans.model import Mode, Phase
from tests.conftest import APP_ACCOUNT, account_session
from tests.estates import Estate

PRIMARY_HOST, RECOVERY_HOST = "db.us-east-1.example.net", "db.us-west-2.example.net"
ALB = {"us-east-1": ("Z35SXDOTRQ7X7K", "web-east.us-east-1.elb.amazonaws.com"),
       "us-west-2": ("Z1H1FL5HABSF5", "web-west.us-west-2.elb.amazonaws.com")}
EAST_IP, WEST_IP = "10.1.0.10", "10.2.0.10"


def _record(name: str, **fields: Any) -> dict[str, Any]:
    return {"Action": "CREATE", "ResourceRecordSet": {"Name": name, **fields}}


def build(prefix: str) -> Estate:
    session = account_session(APP_ACCOUNT)
    route53 = session.client("route53", region_name="us-east-1")
    domain = f"{prefix}-r53.example.com"
    zone = route53.create_hosted_zone(Name=domain, CallerReference=f"{prefix}-r53")["HostedZone"]["Id"]
    zone = zone.removeprefix("/hostedzone/")
    check_id = route53.create_health_check(CallerReference=f"{prefix}-r53-hc", HealthCheckConfig={
        "Type": "HTTP", "IPAddress": EAST_IP, "Port": 80, "ResourcePath": "/health"})["HealthCheck"]["Id"]
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        _record(f"db.{domain}", Type="CNAME", TTL=60, ResourceRecords=[{"Value": PRIMARY_HOST}]),
        _record(f"www.{domain}", Type="A", AliasTarget={"HostedZoneId": ALB["us-east-1"][0],
                                                        "DNSName": ALB["us-east-1"][1], "EvaluateTargetHealth": True}),
        _record(f"api.{domain}", Type="A", SetIdentifier="east", Weight=100, TTL=60,
                ResourceRecords=[{"Value": EAST_IP}]),
        _record(f"api.{domain}", Type="A", SetIdentifier="west", Weight=0, TTL=60,
                ResourceRecords=[{"Value": WEST_IP}]),
        _record(f"app.{domain}", Type="A", SetIdentifier="east", Failover="PRIMARY", TTL=60, HealthCheckId=check_id,
                ResourceRecords=[{"Value": EAST_IP}]),
        _record(f"app.{domain}", Type="A", SetIdentifier="west", Failover="SECONDARY", TTL=60,
                ResourceRecords=[{"Value": WEST_IP}]),
    ]})

    control_config = session.client("route53-recovery-control-config", region_name="us-west-2")
    cluster = control_config.create_cluster(ClusterName=f"{prefix}-arc")["Cluster"]
    panel = control_config.create_control_panel(ClusterArn=cluster["ClusterArn"],
                                                ControlPanelName=f"{prefix}-arc")["ControlPanel"]["ControlPanelArn"]
    east, west = (control_config.create_routing_control(
        ClusterArn=cluster["ClusterArn"], ControlPanelArn=panel, RoutingControlName=name,
    )["RoutingControl"]["RoutingControlArn"] for name in ("east", "west"))
    endpoint = cluster["ClusterEndpoints"][0]
    data_plane = session.client("route53-recovery-cluster", region_name=endpoint["Region"],
                                endpoint_url=endpoint["Endpoint"])
    data_plane.update_routing_control_state(RoutingControlArn=east, RoutingControlState="On")
    control_config.create_safety_rule(AssertionRule={
        "ControlPanelArn": panel, "Name": "one-cell-on", "WaitPeriodMs": 5000, "AssertedControls": [east, west],
        "RuleConfig": {"Type": "ATLEAST", "Threshold": 1, "Inverted": False}})

    def zone_params(name: str, **extra: Any) -> dict[str, Any]:
        return {"hostedZoneId": zone, "recordName": f"{name}.{domain}", **extra}

    resources = [
        {"name": f"{prefix}-route53-db", "action": "route53.record",
         "parameters": zone_params("db", recoveryValue=RECOVERY_HOST, primaryValue=PRIMARY_HOST)},
        {"name": f"{prefix}-route53-www", "action": "route53.record", "parameters": zone_params(
            "www", recordType="A",
            recoveryAliasTarget={"hostedZoneId": ALB["us-west-2"][0], "dnsName": ALB["us-west-2"][1],
                                 "evaluateTargetHealth": True},
            primaryAliasTarget={"hostedZoneId": ALB["us-east-1"][0], "dnsName": ALB["us-east-1"][1],
                                "evaluateTargetHealth": True})},
        {"name": f"{prefix}-route53-api", "action": "route53.record", "parameters": zone_params(
            "api", recordType="A", primarySetIdentifier="east", recoverySetIdentifier="west")},
        {"name": f"{prefix}-route53-app", "action": "route53.health_check",
         "parameters": zone_params("app", recordType="A")},
        {"name": f"{prefix}-arc-cells", "action": "arc.routing_control",
         "parameters": {"clusterArn": cluster["ClusterArn"], "primaryRoutingControlArns": [east],
                        "recoveryRoutingControlArns": [west]}},
    ]

    def live() -> dict[str, Any]:
        sets = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        by_name = {(r["Name"], r.get("SetIdentifier")): r for r in sets}
        states = {name: data_plane.get_routing_control_state(RoutingControlArn=arn)["RoutingControlState"]
                  for name, arn in (("east", east), ("west", west))}
        return {
            "db": by_name[(f"db.{domain}.", None)]["ResourceRecords"][0]["Value"],
            "www": by_name[(f"www.{domain}.", None)]["AliasTarget"]["DNSName"].rstrip("."),
            "api": (by_name[(f"api.{domain}.", "east")]["Weight"], by_name[(f"api.{domain}.", "west")]["Weight"]),
            "inverted": route53.get_health_check(HealthCheckId=check_id)["HealthCheck"]["HealthCheckConfig"][
                "Inverted"],
            "cells": states,
            "drill_records": sorted(r["Name"] for r in sets if r["Name"].startswith("drill-")),
        }

    normal = {"db": PRIMARY_HOST, "www": ALB["us-east-1"][1], "api": (100, 0), "inverted": False,
              "cells": {"east": "On", "west": "Off"}}
    failed_over = {"db": RECOVERY_HOST, "www": ALB["us-west-2"][1], "api": (0, 100), "inverted": True,
                   "cells": {"east": "Off", "west": "On"}}

    def check(phase: Phase, mode: Mode) -> None:
        state = live()
        drills = state.pop("drill_records")
        if mode is Mode.DRILL:
            assert state == normal, f"a drill changed production DNS or routing controls: {state}"
            # ACTIVATE writes one drill record per route53.record resource; CLEANUP removes them all.
            expected = 3 if phase is Phase.ACTIVATE else 0
            assert len(drills) == expected, f"drill records after {phase.value}: {drills}"
            return
        assert drills == []
        expected_state = normal if phase is Phase.INSTANTIATE else failed_over  # a real failover stays failed over
        assert state == expected_state, f"after {phase.value} ({mode.value}): {state}"

    return Estate(resources=resources, check=check)
