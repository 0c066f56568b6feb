"""Source servers: replication state over time, point-in-time snapshots, launch and replication settings."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import botocore.session

from sandbox.drs.util import arn, hex_id, iso, iso_duration, stable_hex

# Replication states from which DRS cannot produce a consistent snapshot: a launch fails (SNAPSHOT_FAIL and no usable
# previous snapshot). BACKLOG/RESCAN/CREATING_SNAPSHOT still recover, from a slightly older point in time.
UNRECOVERABLE = frozenset({"STOPPED", "INITIATING", "INITIAL_SYNC", "PAUSED", "STALLED", "DISCONNECTED"})
# States in which the agent's data is not flowing: snapshots stop, lag grows.
NOT_FLOWING = frozenset({"STOPPED", "PAUSED", "STALLED", "DISCONNECTED"})
_REPLICATION_ERROR = {"STALLED": "UNSTABLE_NETWORK", "DISCONNECTED": "AGENT_NOT_SEEN"}
_UNITS = {"MINUTE": 60, "HOUR": 3600, "DAY": 86400}
DEFAULT_PIT_POLICY = [
    {"ruleID": 1, "units": "MINUTE", "interval": 10, "retentionDuration": 60, "enabled": True},
    {"ruleID": 2, "units": "HOUR", "interval": 1, "retentionDuration": 24, "enabled": True},
    {"ruleID": 3, "units": "DAY", "interval": 1, "retentionDuration": 7, "enabled": True},
]
_OS = ["Amazon Linux release 2 (Karoo)", "Ubuntu 22.04.4 LTS", "Red Hat Enterprise Linux release 9.3 (Plow)",
       "Microsoft Windows Server 2022 Datacenter"]


@cache
def replication_states() -> frozenset[str]:
    shape = botocore.session.get_session().get_service_model("drs").shape_for("DataReplicationState")
    return frozenset(shape.enum)


@dataclass
class SourceServer:
    id: str
    account: str
    region: str
    hostname: str
    tags: dict[str, str]
    state: str
    lag_seconds: int
    state_since: datetime
    added_at: datetime
    ready_since: datetime | None
    source_region: str | None
    source_account: str | None
    instance_type: str
    ec2_origin: bool
    hardware: dict[str, Any]
    launch_config: dict[str, Any]
    replication_config: dict[str, Any]
    direction: str = "FAILOVER"
    pending: tuple[str, datetime] | None = None
    recovery_instance_id: str | None = None
    last_launch_job_id: str | None = None
    reversed_arn: str | None = None
    on_demand_snapshots: list[dict[str, Any]] = field(default_factory=list)

    @property
    def arn(self) -> str:
        return arn(self.region, self.account, "source-server", self.id)

    def refresh(self, now: datetime) -> None:
        """Applies a scheduled replication transition (initial sync or rescan finishing) once its time has come."""
        if self.pending and now >= self.pending[1]:
            target, at = self.pending
            self.pending = None
            self.set_state(target, at)

    def set_state(self, state: str, now: datetime, lag_seconds: int | None = None, until: datetime | None = None,
                  then: str | None = None) -> None:
        self.state, self.state_since = state, now
        if lag_seconds is not None:
            self.lag_seconds = lag_seconds
        if state not in UNRECOVERABLE and self.ready_since is None:
            self.ready_since = now
        self.pending = (then, until) if then and until else None

    def lag(self, now: datetime) -> float:
        grown = (now - self.state_since).total_seconds() if self.state in NOT_FLOWING else 0
        return self.lag_seconds + grown

    def snapshots(self, now: datetime) -> list[dict[str, Any]]:
        """PIT snapshots the replication settings' policy keeps, oldest first; regenerated identically on each read."""
        if self.ready_since is None:
            return list(self.on_demand_snapshots)
        until = self.state_since if self.state in NOT_FLOWING else now
        expected: set[datetime] = set()
        for rule in self.replication_config["pitPolicy"]:
            if not rule.get("enabled", True):
                continue
            step = _UNITS[rule["units"]] * rule["interval"]
            oldest = max(self.ready_since, now - timedelta(seconds=_UNITS[rule["units"]] * rule["retentionDuration"]))
            tick = datetime.fromtimestamp(until.timestamp() // step * step, tz=until.tzinfo)
            while tick >= oldest:
                expected.add(tick)
                tick -= timedelta(seconds=step)
        items = [self._snapshot(tick) for tick in expected] + self.on_demand_snapshots
        return sorted(items, key=lambda s: s["expectedTimestamp"])

    def _snapshot(self, tick: datetime) -> dict[str, Any]:
        key = iso(tick)
        settle = int(stable_hex("", self.id, key, length=4), 16) % 20
        return {
            "snapshotID": stable_hex("pit-", self.id, key),
            "sourceServerID": self.id,
            "expectedTimestamp": key,
            "timestamp": iso(tick + timedelta(seconds=settle)),
            "ebsSnapshots": [stable_hex("snap-", self.id, key, disk["deviceName"]) for disk in self.hardware["disks"]],
        }

    def take_snapshot(self, now: datetime) -> dict[str, Any]:
        snapshot = self._snapshot(now)
        snapshot["timestamp"] = iso(now)
        self.on_demand_snapshots.append(snapshot)
        return snapshot

    def to_wire(self, now: datetime, last_launch: dict[str, Any] | None, last_result: str) -> dict[str, Any]:
        lag = self.lag(now)
        disks = [{"deviceName": d["deviceName"], "totalStorageBytes": d["bytes"],
                  "replicatedStorageBytes": d["bytes"] if self.ready_since else 0,
                  "rescannedStorageBytes": d["bytes"] if self.state == "RESCAN" else 0,
                  "backloggedStorageBytes": min(d["bytes"], int(lag) * 1_000_000) if lag else 0}
                 for d in self.hardware["disks"]]
        replication: dict[str, Any] = {
            "lagDuration": iso_duration(lag), "replicatedDisks": disks, "dataReplicationState": self.state,
            "stagingAvailabilityZone": f"{self.region}a",
        }
        if self.pending:
            replication["etaDateTime"] = iso(self.pending[1])
        if self.state in _REPLICATION_ERROR:
            replication["dataReplicationError"] = {"error": _REPLICATION_ERROR[self.state],
                                                   "rawError": f"replication {self.state.lower()} since {iso(self.state_since)}"}
        seen = self.state_since if self.state == "DISCONNECTED" else now
        life: dict[str, Any] = {"addedToServiceDateTime": iso(self.added_at), "lastSeenByServiceDateTime": iso(seen)}
        if self.ready_since:
            life["firstByteDateTime"] = iso(self.ready_since)
            life["elapsedReplicationDuration"] = iso_duration((now - self.ready_since).total_seconds())
        if last_launch:
            life["lastLaunch"] = last_launch
        hints: dict[str, Any] = {"hostname": self.hostname, "fqdn": self.hardware["fqdn"]}
        hints.update({"awsInstanceID": self.hardware["ec2_instance_id"]} if self.ec2_origin
                     else {"vmWareUuid": self.hardware["vmware_uuid"]})
        wire: dict[str, Any] = {
            "sourceServerID": self.id, "arn": self.arn, "tags": dict(self.tags),
            "recoveryInstanceId": self.recovery_instance_id, "lastLaunchResult": last_result,
            "dataReplicationInfo": replication, "lifeCycle": life,
            "sourceProperties": {
                "lastUpdatedDateTime": iso(self.added_at), "recommendedInstanceType": self.instance_type,
                "identificationHints": hints, "networkInterfaces": self.hardware["nics"],
                "disks": [{"deviceName": d["deviceName"], "bytes": d["bytes"]} for d in self.hardware["disks"]],
                "cpus": self.hardware["cpus"], "ramBytes": self.hardware["ramBytes"],
                "os": {"fullString": self.hardware["os"]}, "supportsNitroInstances": True, "architecture": "x86_64",
            },
            "stagingArea": {"status": "NOT_EXTENDED"},
            "replicationDirection": self.direction,
            "reversedDirectionSourceServerArn": self.reversed_arn,
            "agentVersion": "5.12.0",
        }
        if self.ec2_origin:
            wire["sourceCloudProperties"] = {"originAccountID": self.source_account or self.account,
                                             "originRegion": self.source_region,
                                             "originAvailabilityZone": f"{self.source_region}a"}
        return wire


def make_hardware(rng: random.Random, hostname: str) -> dict[str, Any]:
    """Plausible machine facts, drawn from the world's seeded generator so a seed reproduces an estate."""
    ip = f"10.{rng.randrange(0, 255)}.{rng.randrange(0, 255)}.{rng.randrange(1, 255)}"
    mac = ":".join(f"{rng.randrange(256):02x}" for _ in range(6))
    disks = [{"deviceName": "/dev/xvda", "bytes": rng.choice([8, 20, 30, 50, 100]) * 2**30}]
    if rng.random() < 0.5:
        disks.append({"deviceName": "/dev/xvdb", "bytes": rng.choice([100, 200, 500]) * 2**30})
    cores = rng.choice([2, 4, 8])
    return {
        "fqdn": f"{hostname}.corp.example.com",
        "ec2_instance_id": hex_id(rng, "i-"),
        "vmware_uuid": "-".join(hex_id(rng, "", n) for n in (8, 4, 4, 4, 12)),
        "nics": [{"macAddress": mac, "ips": [ip], "isPrimary": True}],
        "disks": disks,
        "cpus": [{"cores": cores, "modelName": "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"}],
        "ramBytes": cores * 4 * 2**30,
        "os": rng.choice(_OS),
    }


def default_launch_config(hostname: str, template_id: str) -> dict[str, Any]:
    return {"name": hostname, "ec2LaunchTemplateID": template_id, "launchDisposition": "STARTED",
            "targetInstanceTypeRightSizingMethod": "BASIC", "copyPrivateIp": False, "copyTags": False,
            "licensing": {"osByol": True}, "postLaunchEnabled": False}


def default_replication_config(rng: random.Random, hostname: str, disks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": hostname, "stagingAreaSubnetId": hex_id(rng, "subnet-"), "associateDefaultSecurityGroup": True,
        "replicationServersSecurityGroupsIDs": [], "replicationServerInstanceType": "t3.small",
        "useDedicatedReplicationServer": False, "defaultLargeStagingDiskType": "GP3",
        "replicatedDisks": [{"deviceName": d["deviceName"], "isBootDisk": d["deviceName"] == "/dev/xvda",
                             "stagingDiskType": "AUTO", "iops": 0, "throughput": 0,
                             "optimizedStagingDiskType": "GP3"} for d in disks],
        "ebsEncryption": "DEFAULT", "bandwidthThrottling": 0, "dataPlaneRouting": "PRIVATE_IP",
        "createPublicIP": False, "stagingAreaTags": {}, "pitPolicy": [dict(r) for r in DEFAULT_PIT_POLICY],
        "autoReplicateNewDisks": True, "internetProtocol": "IPV4",
    }
