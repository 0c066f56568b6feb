"""The state of Route 53 ARC routing control in the sandbox, and the rules the data plane enforces.

Choices where the service is not observable from the model (each says what it stands in for):
- Resources are DEPLOYED as soon as they are created (AWS takes minutes to deploy a cluster).
- A cluster's five regional endpoints point back at the sandbox, `<sandbox>/arc-cluster/<id>/<region>/v1`, so a
  client that follows DescribeCluster reaches this emulator; `arc_world().down_regions` makes an endpoint answer
  EndpointTemporarilyUnavailableException (503), the way a regional impairment looks to a client.
- A safety rule that blocks an update answers ConflictException naming the rule's ARN (AWS's message includes it,
  which is how an operator finds what to override); WaitPeriodMs is not simulated.
- Rules are evaluated on the states the whole request would produce, so one UpdateRoutingControlStates that turns one
  cell On and the other Off passes an "at least one On" assertion rule that two single updates in that order would not.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.arc.exceptions import not_found
from sandbox.arc.urls import CLUSTER, CONTROL, endpoint_url
from sandbox.core.model import ServiceError

ENDPOINT_REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2", "ap-northeast-1")


def _id() -> str:
    return uuid.uuid4().hex


@dataclass
class Rule:
    arn: str
    kind: str  # ASSERTION | GATING
    spec: dict[str, Any]  # the New*Rule as created, plus what the service adds


@dataclass
class Account:
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)  # by ARN
    panels: dict[str, dict[str, Any]] = field(default_factory=dict)
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)  # routing control ARN -> On | Off
    rules: dict[str, Rule] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # ClientToken -> ARN created with it


class ArcWorld:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.down_regions: set[str] = set()
        self.requests: list[tuple[str, str]] = []  # (region, operation) the data plane answered or refused

    def account(self, account_id: str) -> Account:
        return self.accounts.setdefault(account_id, Account())


_world = ArcWorld()


def arc_world() -> ArcWorld:
    return _world


def reset_arc_world() -> None:
    global _world
    _world = ArcWorld()


# --- control plane ---------------------------------------------------------------------------------------------------

class Control:
    """route53-recovery-control-config operations, by name; each takes the validated input and returns the output."""

    def __init__(self, world: ArcWorld, account_id: str, base_url: str) -> None:
        self.world, self.owner, self.base = world, account_id, base_url
        self.state = world.account(account_id)
        self.prefix = f"arn:aws:route53-recovery-control::{account_id}"

    def _cluster(self, cluster: dict[str, Any]) -> dict[str, Any]:
        endpoints = [{"Endpoint": endpoint_url(self.base, cluster["Id"], region), "Region": region}
                     for region in ENDPOINT_REGIONS]
        return {**{k: v for k, v in cluster.items() if k != "Id"}, "ClusterEndpoints": endpoints}

    def _once(self, token: str | None, create: Any) -> str:
        if token and token in self.state.tokens:
            return self.state.tokens[token]
        arn = create()
        if token:
            self.state.tokens[token] = arn
        return str(arn)

    def _get(self, table: dict[str, Any], kind: str, arn: str) -> dict[str, Any]:
        if arn not in table:
            raise not_found(CONTROL, kind, arn)
        return dict(table[arn])

    def CreateCluster(self, p: dict[str, Any]) -> dict[str, Any]:
        def create() -> str:
            cluster_id = _id()
            arn = f"{self.prefix}:cluster/{cluster_id}"
            self.state.clusters[arn] = {"ClusterArn": arn, "Name": p["ClusterName"], "Status": "DEPLOYED",
                                        "Owner": self.owner, "NetworkType": p.get("NetworkType", "IPV4"),
                                        "Id": cluster_id}
            self._panel(arn, "DefaultControlPanel", default=True)
            return arn
        return {"Cluster": self._cluster(self.state.clusters[self._once(p.get("ClientToken"), create)])}

    def DescribeCluster(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"Cluster": self._cluster(self._get(self.state.clusters, "Cluster", p["ClusterArn"]))}

    def ListClusters(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"Clusters": [self._cluster(c) for c in self.state.clusters.values()]}

    def _panel(self, cluster_arn: str, name: str, default: bool = False) -> str:
        arn = f"{self.prefix}:controlpanel/{_id()}"
        self.state.panels[arn] = {"ClusterArn": cluster_arn, "ControlPanelArn": arn, "DefaultControlPanel": default,
                                  "Name": name, "Status": "DEPLOYED", "Owner": self.owner}
        return arn

    def _panel_view(self, panel: dict[str, Any]) -> dict[str, Any]:
        count = sum(c["ControlPanelArn"] == panel["ControlPanelArn"] for c in self.state.controls.values())
        return {**panel, "RoutingControlCount": count}

    def CreateControlPanel(self, p: dict[str, Any]) -> dict[str, Any]:
        self._get(self.state.clusters, "Cluster", p["ClusterArn"])
        arn = self._once(p.get("ClientToken"), lambda: self._panel(p["ClusterArn"], p["ControlPanelName"]))
        return {"ControlPanel": self._panel_view(self.state.panels[arn])}

    def DescribeControlPanel(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"ControlPanel": self._panel_view(self._get(self.state.panels, "ControlPanel", p["ControlPanelArn"]))}

    def ListControlPanels(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"ControlPanels": [self._panel_view(x) for x in self.state.panels.values()
                                  if p.get("ClusterArn") in (None, x["ClusterArn"])]}

    def CreateRoutingControl(self, p: dict[str, Any]) -> dict[str, Any]:
        self._get(self.state.clusters, "Cluster", p["ClusterArn"])
        panel_arn = p.get("ControlPanelArn") or next(
            x["ControlPanelArn"] for x in self.state.panels.values()
            if x["ClusterArn"] == p["ClusterArn"] and x["DefaultControlPanel"])
        if self._get(self.state.panels, "ControlPanel", panel_arn)["ClusterArn"] != p["ClusterArn"]:
            raise ServiceError(CONTROL, "ValidationException", f"control panel {panel_arn} is not in {p['ClusterArn']}")

        def create() -> str:
            arn = f"{panel_arn}/routingcontrol/{_id()[:16]}"
            self.state.controls[arn] = {"ControlPanelArn": panel_arn, "Name": p["RoutingControlName"],
                                        "RoutingControlArn": arn, "Status": "DEPLOYED", "Owner": self.owner}
            self.state.states[arn] = "Off"  # a new routing control is Off: no traffic until someone says so
            return arn
        return {"RoutingControl": dict(self.state.controls[self._once(p.get("ClientToken"), create)])}

    def DescribeRoutingControl(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"RoutingControl": self._get(self.state.controls, "RoutingControl", p["RoutingControlArn"])}

    def ListRoutingControls(self, p: dict[str, Any]) -> dict[str, Any]:
        self._get(self.state.panels, "ControlPanel", p["ControlPanelArn"])
        return {"RoutingControls": [dict(c) for c in self.state.controls.values()
                                    if c["ControlPanelArn"] == p["ControlPanelArn"]]}

    def CreateSafetyRule(self, p: dict[str, Any]) -> dict[str, Any]:
        kinds = [k for k in ("AssertionRule", "GatingRule") if k in p]
        if len(kinds) != 1:
            raise ServiceError(CONTROL, "ValidationException", "exactly one of AssertionRule or GatingRule is required")
        spec = dict(p[kinds[0]])
        panel = spec["ControlPanelArn"]
        self._get(self.state.panels, "ControlPanel", panel)
        lists = ("AssertedControls",) if kinds[0] == "AssertionRule" else ("GatingControls", "TargetControls")
        for name in lists:
            foreign = [a for a in spec[name] if self.state.controls.get(a, {}).get("ControlPanelArn") != panel]
            if foreign or not spec[name]:
                raise ServiceError(CONTROL, "ValidationException",
                               f"{name} must name routing controls of control panel {panel}: {foreign or 'none'}")

        def create() -> str:
            arn = f"{panel}/safetyrule/{_id()[:16]}"
            kind = "ASSERTION" if kinds[0] == "AssertionRule" else "GATING"
            self.state.rules[arn] = Rule(arn, kind, {**spec, "SafetyRuleArn": arn, "Status": "DEPLOYED",
                                                     "Owner": self.owner})
            return arn
        rule = self.state.rules[self._once(p.get("ClientToken"), create)]
        return {kinds[0]: rule.spec}

    def DescribeSafetyRule(self, p: dict[str, Any]) -> dict[str, Any]:
        rule = self.state.rules.get(p["SafetyRuleArn"])
        if rule is None:
            raise not_found(CONTROL, "SafetyRule", p["SafetyRuleArn"])
        return {"AssertionRule" if rule.kind == "ASSERTION" else "GatingRule": rule.spec}

    def ListSafetyRules(self, p: dict[str, Any]) -> dict[str, Any]:
        self._get(self.state.panels, "ControlPanel", p["ControlPanelArn"])
        return {"SafetyRules": [{r.kind: r.spec} for r in self.state.rules.values()
                                if r.spec["ControlPanelArn"] == p["ControlPanelArn"]]}


# --- data plane ------------------------------------------------------------------------------------------------------

class ClusterEndpoint:
    """route53-recovery-cluster operations as one regional endpoint of one cluster answers them."""

    def __init__(self, world: ArcWorld, account_id: str, cluster_id: str, region: str) -> None:
        self.world, self.state, self.region = world, world.account(account_id), region
        cluster = next((c for c in self.state.clusters.values() if c["Id"] == cluster_id), None)
        if cluster is None:
            raise ServiceError(CLUSTER, "AccessDeniedException", f"no cluster {cluster_id} in account {account_id}")
        self.cluster: dict[str, Any] = cluster

    def check_available(self, operation: str) -> None:
        self.world.requests.append((self.region, operation))
        if self.region in self.world.down_regions:
            raise ServiceError(CLUSTER, "EndpointTemporarilyUnavailableException",
                           f"the {self.region} endpoint of this cluster is temporarily unavailable")

    def _control(self, arn: str) -> dict[str, Any]:
        control = self.state.controls.get(arn)
        panel = self.state.panels.get(control["ControlPanelArn"]) if control else None
        if control is None or panel is None or panel["ClusterArn"] != self.cluster["ClusterArn"]:
            raise not_found(CLUSTER, "RoutingControl", arn)
        return control

    def GetRoutingControlState(self, p: dict[str, Any]) -> dict[str, Any]:
        control = self._control(p["RoutingControlArn"])
        return {"RoutingControlArn": control["RoutingControlArn"], "RoutingControlName": control["Name"],
                "RoutingControlState": self.state.states[control["RoutingControlArn"]]}

    def ListRoutingControls(self, p: dict[str, Any]) -> dict[str, Any]:
        found = []
        for control in self.state.controls.values():
            panel = self.state.panels[control["ControlPanelArn"]]
            if panel["ClusterArn"] == self.cluster["ClusterArn"] and p.get("ControlPanelArn") in (None, panel[
                    "ControlPanelArn"]):
                found.append({"ControlPanelArn": panel["ControlPanelArn"], "ControlPanelName": panel["Name"],
                              "RoutingControlArn": control["RoutingControlArn"], "RoutingControlName": control["Name"],
                              "RoutingControlState": self.state.states[control["RoutingControlArn"]],
                              "Owner": control["Owner"]})
        return {"RoutingControls": found}

    def UpdateRoutingControlState(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._update({p["RoutingControlArn"]: p["RoutingControlState"]}, p.get("SafetyRulesToOverride", []))

    def UpdateRoutingControlStates(self, p: dict[str, Any]) -> dict[str, Any]:
        entries = {e["RoutingControlArn"]: e["RoutingControlState"] for e in p["UpdateRoutingControlStateEntries"]}
        return self._update(entries, p.get("SafetyRulesToOverride", []))

    def _update(self, entries: dict[str, str], overrides: list[str]) -> dict[str, Any]:
        for arn in entries:
            self._control(arn)
        proposed = {**self.state.states, **entries}
        changed = {arn for arn, value in entries.items() if self.state.states[arn] != value}
        for rule in self.state.rules.values():
            if rule.arn in overrides or rule.spec["Status"] != "DEPLOYED":
                continue
            watched = rule.spec["AssertedControls"] if rule.kind == "ASSERTION" else rule.spec["TargetControls"]
            judged = rule.spec["AssertedControls"] if rule.kind == "ASSERTION" else rule.spec["GatingControls"]
            if changed & set(watched) and not _holds(rule.spec["RuleConfig"], [proposed[a] for a in judged]):
                raise ServiceError(CLUSTER, "ConflictException", (
                    f"the routing control state change was rejected because it would violate {rule.kind.lower()} "
                    f"safety rule {rule.arn} ({rule.spec['Name']}); override it with SafetyRulesToOverride"),
                    resourceId=rule.arn, resourceType="SafetyRule")
        self.state.states.update(entries)  # all or nothing: nothing above changed state
        return {}


def _holds(config: dict[str, Any], states: list[str]) -> bool:
    on = sum(state == "On" for state in states)
    kind = config["Type"]
    result = on >= config["Threshold"] if kind == "ATLEAST" else on == len(states) if kind == "AND" else on > 0
    return result != config["Inverted"]
