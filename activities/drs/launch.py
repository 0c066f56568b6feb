"""Launch settings as desired state: what a protection group wants, compared with and written to each server's DRS
launch configuration and EC2 launch template.

The order of writes matters: DRS's UpdateLaunchConfiguration writes a new default template version of its own (from
the then-default version), so the DRS settings go first, then our template version is made from the resulting
default, then it becomes the default. Every write is preceded by a comparison, so a re-run changes nothing.

Servers are written one at a time, and what is done is kept (`LaunchProgress`, in the activity's heartbeat details):
a throttle or a server error on one server is retried for that server with backoff, and an attempt that fails all
the same is continued by the next one instead of starting over.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeVar

import structlog
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field
from temporalio.exceptions import ApplicationError

from activities.core.aws import aws_errors, error_code, fatal, unreachable
from activities.drs.common import THROTTLING_CODES, drs_errors
from contracts.drs import FieldDrift, LaunchChange, LaunchServer
from plans.drs import LaunchSettings, ServerLaunchSettings

log = structlog.get_logger("dr.drs")

# The settings that live in DRS's launch configuration (the rest live in the EC2 launch template).
_DRS_KEYS = {"copy_private_ip": "copyPrivateIp", "copy_tags": "copyTags", "launch_disposition": "launchDisposition",
             "right_sizing": "targetInstanceTypeRightSizingMethod", "os_byol": "osByol"}
_EC2_FIELDS = ("instance_type", "subnet_id", "security_group_ids", "instance_profile", "static_private_ip")
_NETWORK_FIELDS = ("subnet_id", "security_group_ids", "static_private_ip")
VERSION_DESCRIPTION = "dr-orchestrator launch settings"
# One server's reads or writes after a throttle or a 5xx (each try has botocore's own 3 attempts): waits of 1, 2, 4
# and 8 s ride out a storm; after that the attempt fails and the next one continues where it stopped.
SERVER_TRIES = 5
_BACKOFF_SECONDS = 1.0
_THROTTLED = THROTTLING_CODES | {"RequestLimitExceeded"}  # EC2 says it so

T = TypeVar("T")


class LaunchProgress(BaseModel):
    """What the attempts of one apply so far got done: the servers whose settings are in place (written or found
    so), the changes made, and the groups a permanent error failed (group -> why, naming the server)."""

    done: list[str] = Field(default_factory=list)
    changes: list[LaunchChange] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)


def desired_for(server: Any, settings: LaunchSettings) -> ServerLaunchSettings:
    """One server's settings: the group's, overridden by a perServer entry under its id or else its hostname, plus
    what those settings need to hold on AWS."""
    server_id = getattr(server, "id", None) or server.source_server_id
    keys = [server_id] + ([server.hostname] if getattr(server, "hostname", None) else [])
    merged = settings.for_server(*keys)
    implied: dict[str, Any] = {}
    # DRS right-sizing rewrites the template's instance type on each of its updates: a fixed type needs it off.
    if merged.instance_type and merged.right_sizing is None:
        implied["right_sizing"] = "NONE"
    # With copyPrivateIp on, DRS launches with the source machine's address instead of the static one.
    if merged.static_private_ip and merged.copy_private_ip is None:
        implied["copy_private_ip"] = False
    return merged.model_copy(update=implied) if implied else merged


def drift(drs: Any, ec2: Any, server: LaunchServer, desired: ServerLaunchSettings) -> list[FieldDrift]:
    """Every field the settings give whose live value differs; fields the settings leave out are not compared."""
    config = _launch_config(drs, server.id)
    versions = _template_versions(ec2, config["ec2LaunchTemplateID"])
    return _differences(desired, _live(config, versions["default"]["LaunchTemplateData"]))


def apply_launch_settings(drs: Any, ec2: Any, servers: Iterable[tuple[LaunchServer, ServerLaunchSettings]],
                          progress: LaunchProgress | None = None, report: Callable[[], None] = lambda: None,
                          pause: Callable[[float], None] = time.sleep) -> list[LaunchChange]:
    """Bring each server's launch settings to the desired ones; a record per server changed by this call.

    Every server is read and checked before any is written, so one bad static address changes none of `servers`.
    Servers in `progress.done` are skipped; each server done is added to `progress`, then `report()` is called (the
    activity heartbeats the progress). A throttled server is retried alone, waiting with `pause`.
    """
    progress = progress if progress is not None else LaunchProgress()
    subnets: dict[str, str] = {}
    pending: list[tuple[LaunchServer, ServerLaunchSettings, list[FieldDrift]]] = []
    in_place: list[str] = []
    for server, desired in servers:
        if server.id in progress.done:
            continue
        diffs = _per_server(server, partial(_check, drs, ec2, server, desired, subnets), pause, report)
        if diffs:
            pending.append((server, desired, diffs))
        else:
            in_place.append(server.id)
        report()
    progress.done += in_place
    changes = []
    for server, desired, diffs in pending:
        change = _per_server(server, partial(_apply_one, drs, ec2, server, desired, diffs), pause, report)
        progress.done.append(server.id)
        progress.changes.append(change)
        changes.append(change)
        report()
    return changes


def _check(drs: Any, ec2: Any, server: LaunchServer, desired: ServerLaunchSettings,
           subnets: dict[str, str]) -> list[FieldDrift]:
    config = _launch_config(drs, server.id)
    data = _template_versions(ec2, config["ec2LaunchTemplateID"])["default"]["LaunchTemplateData"]
    live = _live(config, data)
    if desired.static_private_ip:
        _check_static_ip(ec2, server, desired, desired.subnet_id or live.get("subnet_id"), subnets)
    return _differences(desired, live)


def _per_server(server: LaunchServer, call: Callable[[], T], pause: Callable[[float], None],
                report: Callable[[], None]) -> T:
    """`call()`, tried again after a throttle or a server error (the server's own problem or DRS's momentary one)
    up to SERVER_TRIES times with backoff; anything else, or the last failure, is raised."""
    attempt = 1
    while True:
        try:
            return call()
        except (ApplicationError, ClientError) as exc:
            delay = _transient_delay(exc, attempt)
            if delay is None or attempt == SERVER_TRIES:
                raise
            log.warning("drs.launch.server_retry", server=server.id, attempt=attempt, delay=delay, error=str(exc))
            report()
            pause(delay)
            attempt += 1


def _transient_delay(exc: ApplicationError | ClientError, attempt: int) -> float | None:
    """How long to wait before trying the server again, or None when trying again cannot help."""
    backoff = _BACKOFF_SECONDS * 2 ** (attempt - 1)
    if isinstance(exc, ApplicationError):  # drs_errors' Throttled carries the delay DRS asked for
        if exc.type != "Throttled":
            return None
        return max(backoff, exc.next_retry_delay.total_seconds() if exc.next_retry_delay else 0.0)
    return backoff if error_code(exc) in _THROTTLED or unreachable(exc) else None


def _apply_one(drs: Any, ec2: Any, server: LaunchServer, desired: ServerLaunchSettings,
               diffs: list[FieldDrift]) -> LaunchChange:
    change = LaunchChange(server_id=server.id, hostname=server.hostname, fields=diffs)
    # Read again, not the check's copy: a try cut short after DRS's update must not make it twice.
    config = _launch_config(drs, server.id)
    drs_changes = _drs_update(desired, config)
    if drs_changes:
        with drs_errors(f"UpdateLaunchConfiguration {server.id}"):
            drs.update_launch_configuration(sourceServerID=server.id, **drs_changes)
        change.drs_updated = True
    template_id = config["ec2LaunchTemplateID"]
    # Read again: the DRS update above made a new default version, which ours must build on.
    versions = _template_versions(ec2, template_id)
    default, latest = versions["default"], versions["latest"]
    ec2_wanted = desired.model_copy(update={f: None for f in _DRS_KEYS})
    if _differences(ec2_wanted, _live({}, default["LaunchTemplateData"])):
        if latest["VersionNumber"] != default["VersionNumber"] and \
                not _differences(ec2_wanted, _live({}, latest["LaunchTemplateData"])):
            number = int(latest["VersionNumber"])  # an earlier attempt made it but did not set it as default
        else:
            number = _create_version(ec2, template_id, default, ec2_wanted)
        with aws_errors(f"ModifyLaunchTemplate {template_id}"):
            ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=str(number))
        change.template_version = number
    log.info("drs.launch.applied", server=server.id, hostname=server.hostname, drs_updated=change.drs_updated,
             template_version=change.template_version, fields=[d.field for d in diffs])
    return change


def _drs_update(desired: ServerLaunchSettings, config: dict[str, Any]) -> dict[str, Any]:
    update: dict[str, Any] = {}
    for field, key in _DRS_KEYS.items():
        value = getattr(desired, field)
        if value is None:
            continue
        if field == "os_byol":
            if (config.get("licensing") or {}).get("osByol") != value:
                update["licensing"] = {"osByol": value}
        elif config.get(key) != value:
            update[key] = value
    return update


def _create_version(ec2: Any, template_id: str, base: dict[str, Any], wanted: ServerLaunchSettings) -> int:
    # The whole source data goes along with SourceVersion: AWS would inherit it anyway, and an emulator that ignores
    # SourceVersion still gets a complete version (image id and all).
    data = _as_request(ec2, base["LaunchTemplateData"])
    if wanted.instance_type:
        data["InstanceType"] = wanted.instance_type
    if wanted.instance_profile:
        key = "Arn" if wanted.instance_profile.startswith("arn:") else "Name"
        data["IamInstanceProfile"] = {key: wanted.instance_profile}
    if any(getattr(wanted, f) is not None for f in _NETWORK_FIELDS):
        interfaces = [dict(i) for i in data.get("NetworkInterfaces") or []]
        primary = next((i for i in interfaces if i.get("DeviceIndex", 0) == 0), None)
        if primary is None:
            primary = {"DeviceIndex": 0}
            interfaces.insert(0, primary)
        # EC2 refuses security groups both on the instance and on an interface: they move to the interface.
        top_groups = data.pop("SecurityGroupIds", None)
        data.pop("SecurityGroups", None)
        if top_groups and not primary.get("Groups"):
            primary["Groups"] = top_groups
        if wanted.subnet_id:
            primary["SubnetId"] = wanted.subnet_id
        if wanted.security_group_ids:
            primary["Groups"] = list(wanted.security_group_ids)
        if wanted.static_private_ip:
            primary["PrivateIpAddress"] = wanted.static_private_ip
        data["NetworkInterfaces"] = interfaces
    with aws_errors(f"CreateLaunchTemplateVersion {template_id}"):
        created = ec2.create_launch_template_version(
            LaunchTemplateId=template_id, SourceVersion=str(base["VersionNumber"]),
            VersionDescription=VERSION_DESCRIPTION, LaunchTemplateData=data)
    return int(created["LaunchTemplateVersion"]["VersionNumber"])


def _as_request(ec2: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Response template data cut to what the request shape accepts (the two shapes differ in a few members)."""
    shape = ec2.meta.service_model.shape_for("RequestLaunchTemplateData")

    def fit(value: Any, shape: Any) -> Any:
        if shape.type_name == "structure" and isinstance(value, dict):
            return {k: fit(v, shape.members[k]) for k, v in value.items() if k in shape.members}
        if shape.type_name == "list" and isinstance(value, list):
            return [fit(v, shape.member) for v in value]
        return value

    return fit(data, shape)


def _check_static_ip(ec2: Any, server: LaunchServer, desired: ServerLaunchSettings, subnet_id: str | None,
                     subnets: dict[str, str]) -> None:
    ip, name = desired.static_private_ip, _name(server)
    if desired.copy_private_ip:
        raise fatal(f"server {name}: static private IP {ip} needs copyPrivateIp false", "InvalidStaticPrivateIp")
    if not subnet_id:
        raise fatal(f"server {name}: static private IP {ip} needs a subnet (set subnetId): none is in its launch "
                    "template", "InvalidStaticPrivateIp")
    if subnet_id not in subnets:
        with aws_errors(f"DescribeSubnets {subnet_id}"):
            subnets[subnet_id] = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["CidrBlock"]
    network = ipaddress.IPv4Network(subnets[subnet_id])
    address = ipaddress.IPv4Address(ip)
    if address not in network:
        raise fatal(f"server {name}: static private IP {ip} is outside subnet {subnet_id} ({network})",
                    "InvalidStaticPrivateIp")
    reserved = {network.network_address + i for i in range(4)} | {network.broadcast_address}
    if address in reserved:
        raise fatal(f"server {name}: static private IP {ip} is reserved by AWS in subnet {subnet_id} ({network}: "
                    "the network address, the next three and the broadcast address)", "InvalidStaticPrivateIp")


def _launch_config(drs: Any, server_id: str) -> dict[str, Any]:
    with drs_errors(f"GetLaunchConfiguration {server_id}"):
        return dict(drs.get_launch_configuration(sourceServerID=server_id))


def _template_versions(ec2: Any, template_id: str) -> dict[str, dict[str, Any]]:
    with aws_errors(f"DescribeLaunchTemplateVersions {template_id}"):
        items = ec2.describe_launch_template_versions(LaunchTemplateId=template_id,
                                                      Versions=["$Default", "$Latest"])["LaunchTemplateVersions"]
    default = next(v for v in items if v.get("DefaultVersion"))
    latest = max(items, key=lambda v: int(v["VersionNumber"]))
    return {"default": default, "latest": latest}


def _live(config: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    interfaces = data.get("NetworkInterfaces") or []
    primary: dict[str, Any] = next((i for i in interfaces if i.get("DeviceIndex", 0) == 0), {})
    profile = data.get("IamInstanceProfile") or {}
    groups = primary.get("Groups") or data.get("SecurityGroupIds")
    return {
        "copy_private_ip": config.get("copyPrivateIp"), "copy_tags": config.get("copyTags"),
        "launch_disposition": config.get("launchDisposition"),
        "right_sizing": config.get("targetInstanceTypeRightSizingMethod"),
        "os_byol": (config.get("licensing") or {}).get("osByol"),
        "instance_type": data.get("InstanceType"), "subnet_id": primary.get("SubnetId"),
        "security_group_ids": sorted(groups) if groups else None,
        "instance_profile": profile.get("Arn") or profile.get("Name"), "_profile": profile,
        "static_private_ip": primary.get("PrivateIpAddress"),
    }


def _differences(desired: ServerLaunchSettings, live: dict[str, Any]) -> list[FieldDrift]:
    diffs = []
    for field, wanted in desired.model_dump(exclude_none=True).items():
        if not _matches(field, live.get(field), wanted, live):
            alias = ServerLaunchSettings.model_fields[field].alias or field
            diffs.append(FieldDrift(field=alias, live=live.get(field), desired=wanted))
    return diffs


def _matches(field: str, live: Any, wanted: Any, everything: dict[str, Any]) -> bool:
    if field == "security_group_ids":
        return sorted(wanted) == (live or [])
    if field == "instance_profile":
        # A template may name the profile while the plan gives its ARN, or the other way round.
        profile = everything.get("_profile") or {}
        name, arn = profile.get("Name"), profile.get("Arn")
        return wanted in (name, arn) or bool(name and wanted.startswith("arn:") and wanted.endswith(f"/{name}"))
    return bool(live == wanted)


def _name(server: LaunchServer) -> str:
    return f"{server.id} ({server.hostname})" if server.hostname else server.id
