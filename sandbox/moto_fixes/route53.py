"""Route 53: health check updates and statuses as the service reports them (moto 5.2.5 gets both wrong).

What the sandbox simulates, since no checker probes anything here: an endpoint is down when its IP address is in a
documentation range (RFC 5737: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24; on the internet such an address times
out) or its domain name ends in `.invalid` (RFC 6761: never resolves); every other endpoint answers 200. A test makes a
primary "fail" with plain boto3, UpdateHealthCheck(IPAddress="192.0.2.10"), exactly as it would repoint a real check.
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
import time
from typing import Any, cast

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.route53.exceptions import Route53ClientError
from moto.route53.models import FakeZone, HealthCheck, Route53Backend
from moto.route53.responses import Route53

from sandbox.moto_fixes._guard import require

_DOWN_NETWORKS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
# The HealthCheckRegion enum of botocore's model: where Route 53 checks from when a check names no Regions.
_CHECKER_REGIONS = ["us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-southeast-1", "ap-southeast-2",
                    "ap-northeast-1", "sa-east-1"]
_RESETTABLE = {"FullyQualifiedDomainName": "fqdn", "ResourcePath": "resource_path", "Regions": "regions",
               "ChildHealthChecks": "children"}
# How long a record change stays PENDING (AWS: usually under 60 seconds). Short by default, so a workflow whose wait
# activity polls a few hundred milliseconds later is not held up; a test may raise it to watch the PENDING phase.
PROPAGATION_SECONDS = 0.05
_changes: dict[str, tuple[Any, float]] = {}  # change id -> (submitted at, INSYNC from)
_changes_lock = threading.Lock()
_change_numbers = itertools.count(1)


def apply() -> None:
    # Checked first, so a moto without them is refused before anything here is patched.
    for name in ("update_health_check", "change_resource_record_sets", "get_change", "create_health_check",
                 "get_health_check_status", "backend", "_get_param"):
        require(Route53, name)
    require(HealthCheck, "health_check_config")  # a property, wrapped
    require(HealthCheck, "set_children")
    require(HealthCheck, "set_regions")
    require(Route53Backend, "change_resource_record_sets", "zoneid", "change_list")
    require(FakeZone, "delete_rrset_by_id", "set_identifier")  # moto calls it once per DELETE with an identifier

    Route53.update_health_check = _update_health_check  # type: ignore[method-assign]
    _changes_propagate(Route53)
    _recovery_control_checks(Route53)
    _delete_one_record_set()
    Route53.get_health_check_status = _get_health_check_status  # type: ignore[method-assign]


def _changes_propagate(route53: Any) -> None:
    """moto 5.2.5 answers every ChangeResourceRecordSets with one fixed change id, already INSYNC, so a client's
    INSYNC wait is never exercised. Here each change gets its own id and is PENDING for PROPAGATION_SECONDS, as on
    AWS. GetChange of an id moto made elsewhere (CreateHostedZone, ...) keeps moto's INSYNC answer."""
    original = route53.change_resource_record_sets

    def change_resource_record_sets(self: Any) -> Any:
        original(self)  # validates and applies the batch, or raises
        change_id = f"/change/C{next(_change_numbers):012d}SANDBOX"
        submitted = utcnow()
        with _changes_lock:
            _changes[change_id] = (submitted, time.monotonic() + PROPAGATION_SECONDS)
        return ActionResult({"ChangeInfo": {"Id": change_id, "Status": "PENDING", "SubmittedAt": submitted,
                                            "Comment": self._get_param("ChangeBatch.Comment")}})

    original_get = route53.get_change

    def get_change(self: Any) -> Any:
        change_id = "/change/" + self._get_param("Id").removeprefix("/change/")
        with _changes_lock:
            found = _changes.get(change_id)
        if found is None:
            return original_get(self)
        submitted, insync_at = found
        status = "INSYNC" if time.monotonic() >= insync_at else "PENDING"
        return ActionResult({"ChangeInfo": {"Id": change_id, "Status": status, "SubmittedAt": submitted}})

    route53.change_resource_record_sets = change_resource_record_sets
    route53.get_change = get_change


def _recovery_control_checks(route53: Any) -> None:
    """moto 5.2.5 drops HealthCheckConfig.RoutingControlArn, so a RECOVERY_CONTROL check (the Route 53 side of an ARC
    routing control) forgets its control. Kept here, echoed back, and the check's status follows the control's state
    in the sandbox's ARC emulator: On is healthy, Off (or unknown) unhealthy."""
    original = route53.create_health_check

    def create_health_check(self: Any) -> Any:
        result = original(self)
        result.result["HealthCheck"].routing_control_arn = self._get_param("HealthCheckConfig.RoutingControlArn")
        return result

    config = cast(property, HealthCheck.health_check_config)  # on the class, the property itself (mypy: its getter)

    def health_check_config(self: Any) -> dict[str, Any]:
        found = config.__get__(self)  # what moto's property returns
        if getattr(self, "routing_control_arn", None):
            found["RoutingControlArn"] = self.routing_control_arn
        return found

    route53.create_health_check = create_health_check
    HealthCheck.health_check_config = property(health_check_config)  # type: ignore[assignment]


_deleting = threading.local()


def _delete_one_record_set() -> None:
    """moto 5.2.5 deletes a record set that has a SetIdentifier by the identifier alone, so DELETE of api/"east" also
    deletes app/"east" and every other set named "east" in the zone. Route 53 deletes the one set whose name, type and
    identifier match. moto calls delete_rrset_by_id once per such DELETE, in batch order: each call takes the next."""
    original = Route53Backend.change_resource_record_sets

    def change_resource_record_sets(self: Any, zoneid: str, change_list: list[dict[str, Any]]) -> None:
        _deleting.queue = [dict(c["ResourceRecordSet"]) for c in change_list
                           if c.get("Action") == "DELETE" and "SetIdentifier" in c.get("ResourceRecordSet", {})]
        try:
            original(self, zoneid, change_list)
        finally:
            _deleting.queue = []

    def delete_rrset_by_id(self: Any, set_identifier: str) -> None:
        wanted = _deleting.queue.pop(0)
        name = wanted["Name"].rstrip(".") + "."
        self.rrsets = [r for r in self.rrsets if not (
            r.set_identifier == set_identifier and r.name == name and r.type == wanted.get("Type"))]

    Route53Backend.change_resource_record_sets = change_resource_record_sets  # type: ignore[method-assign]
    FakeZone.delete_rrset_by_id = delete_rrset_by_id  # type: ignore[method-assign]


def _routing_control_on(arn: str | None) -> bool:
    from sandbox.arc.models import arc_world

    account = (arn or "").split(":")[4] if (arn or "").count(":") >= 5 else ""
    found = arc_world().accounts.get(account)
    return found is not None and found.states.get(arn or "") == "On"


def _version_mismatch() -> Exception:
    return Route53ClientError(
        "HealthCheckVersionMismatch",
        "The value of HealthCheckVersion in the request doesn't match the value of HealthCheckVersion in the health "
        "check.",
    )


def _update_health_check(self: Any) -> Any:
    """moto 5.2.5 passes ChildHealthChecks and Regions as [] when the request omits them, so any update (say, only
    Inverted) wipes a CALCULATED check's children and a check's regions; it never bumps HealthCheckVersion nor checks
    the one sent, so optimistic concurrency (HealthCheckVersionMismatch, 409) never fires; ResetElements is ignored."""
    health_check = self.backend.get_health_check(self._get_param("HealthCheckId"))
    version = self._get_param("HealthCheckVersion")
    if version is not None and int(version) != health_check.health_check_version:
        raise _version_mismatch()
    fields = {"IPAddress": "ip_address", "Port": "port", "ResourcePath": "resource_path",
              "FullyQualifiedDomainName": "fqdn", "SearchString": "search_string",
              "FailureThreshold": "failure_threshold", "HealthThreshold": "health_threshold", "Inverted": "inverted",
              "Disabled": "disabled", "EnableSNI": "enable_sni"}
    for wire, attribute in fields.items():
        value = self._get_param(wire)
        if value is not None:
            setattr(health_check, attribute, value)
    for wire, setter in (("ChildHealthChecks", health_check.set_children), ("Regions", health_check.set_regions)):
        value = self._get_param(wire)
        if value is not None:
            setter(value)
    for element in self._get_param("ResetElements") or []:
        setattr(health_check, _RESETTABLE[element], None)
    health_check.health_check_version += 1
    return ActionResult({"HealthCheck": health_check})


def _get_health_check_status(self: Any) -> Any:
    """moto 5.2.5 answers one canned "Success" from us-east-1 whatever the check. AWS answers one observation per
    checker region, each the checker's raw result: Inverted and Disabled change how Route 53 uses the check, not what
    checkers see. A CALCULATED check has no checkers; the sandbox reports its children's verdict as one observation."""
    health_check = self.backend.get_health_check(self._get_param("HealthCheckId"))
    now = utcnow()
    if health_check.type_ == "CALCULATED":
        children = health_check.children or []
        healthy = sum(_is_healthy(self.backend, child) for child in children)
        threshold = health_check.health_threshold or 0
        verdict = "Success" if healthy >= threshold else "Failure"
        status = f"{verdict}: {healthy} of {len(children)} child health checks are healthy (threshold {threshold})"
        return ActionResult({"HealthCheckObservations": [{"StatusReport": {"Status": status, "CheckedTime": now}}]})
    status = _checker_status(health_check)
    observations = [
        {"Region": region, "IPAddress": f"15.177.{i * 8}.{10 + i}",
         "StatusReport": {"Status": status, "CheckedTime": now}}
        for i, region in enumerate(health_check.regions or _CHECKER_REGIONS)
    ]
    return ActionResult({"HealthCheckObservations": observations})


def _endpoint_up(health_check: Any) -> bool:
    if health_check.ip_address:
        try:
            address = ipaddress.ip_address(health_check.ip_address)
        except ValueError:
            return False
        return not any(address in network for network in _DOWN_NETWORKS)
    return not (health_check.fqdn or "").rstrip(".").endswith(".invalid")


def _checker_status(health_check: Any) -> str:
    if health_check.type_ == "RECOVERY_CONTROL":
        on = _routing_control_on(getattr(health_check, "routing_control_arn", None))
        return f"{'Success' if on else 'Failure'}: the routing control state is {'On' if on else 'Off'}"
    if health_check.type_ == "CLOUDWATCH_METRIC":
        return "Success: the sandbox reports every alarm-based check healthy"
    if not _endpoint_up(health_check):
        if health_check.ip_address:
            return "Failure: Connection timed out. The endpoint or the internet connection is down, or requests are " \
                   "being blocked by your firewall. See https://docs.aws.amazon.com/console/route53/health-checks"
        return f"Failure: DNS resolution failed: {health_check.fqdn} could not be resolved"
    if health_check.type_ == "TCP":
        return "Success: TCP connection established"
    return "Success: HTTP Status Code 200, OK"


def _is_healthy(backend: Any, health_check_id: str, depth: int = 0) -> bool:
    """Route 53's own verdict on a check, the one routing and CALCULATED parents use: Disabled is healthy, Inverted
    flips what the checkers found."""
    health_check = backend.health_checks.get(health_check_id)
    if health_check is None or depth > 8:
        return False
    if health_check.disabled:
        return True
    if health_check.type_ == "CALCULATED":
        children = health_check.children or []
        raw = sum(_is_healthy(backend, c, depth + 1) for c in children) >= (health_check.health_threshold or 0)
    else:
        raw = _checker_status(health_check).startswith("Success")
    return raw != bool(health_check.inverted)
