"""Recovery instances: DRS's record of a launched machine, whose EC2 state is read live from moto."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sandbox.drs import ec2
from sandbox.drs.util import arn, iso

if TYPE_CHECKING:
    from sandbox.drs.servers import SourceServer


@dataclass
class RecoveryInstance:
    id: str
    account: str
    region: str
    ec2_instance_id: str
    job_id: str
    source_server_id: str
    is_drill: bool
    point_in_time: str | None
    launched_at: datetime
    hardware: dict[str, Any]
    hostname: str
    origin_environment: str
    origin_availability_zone: str | None
    volumes: list[tuple[str, str, int | None]]
    tags: dict[str, str] = field(default_factory=dict)
    failback_state: str = "FAILBACK_NOT_STARTED"
    failback_job_id: str | None = None
    failback_started_at: datetime | None = None
    reversed_server: SourceServer | None = None

    @property
    def arn(self) -> str:
        return arn(self.region, self.account, "recovery-instance", self.id)

    def ec2_state(self) -> str:
        return ec2.instance_state(self.account, self.region, self.ec2_instance_id)

    def to_wire(self) -> dict[str, Any]:
        disks = [{"internalDeviceName": name, "bytes": (size or 8) * 2**30, "ebsVolumeID": volume}
                 for name, volume, size in self.volumes]
        failback: dict[str, Any] = {"state": self.failback_state, "failbackToOriginalServer": True,
                                    "failbackJobID": self.failback_job_id,
                                    "failbackLaunchType": "DRILL" if self.is_drill else "RECOVERY"}
        if self.failback_started_at:
            failback["failbackInitiationTime"] = iso(self.failback_started_at)
        wire: dict[str, Any] = {
            "ec2InstanceID": self.ec2_instance_id, "ec2InstanceState": self.ec2_state(), "jobID": self.job_id,
            "recoveryInstanceID": self.id, "sourceServerID": self.source_server_id, "arn": self.arn,
            "tags": dict(self.tags), "failback": failback,
            "recoveryInstanceProperties": {
                "lastUpdatedDateTime": iso(self.launched_at),
                "identificationHints": {"hostname": self.hostname, "fqdn": self.hardware["fqdn"],
                                        "awsInstanceID": self.ec2_instance_id},
                "networkInterfaces": self.hardware["nics"], "disks": disks, "cpus": self.hardware["cpus"],
                "ramBytes": self.hardware["ramBytes"], "os": {"fullString": self.hardware["os"]},
            },
            "pointInTimeSnapshotDateTime": self.point_in_time, "isDrill": self.is_drill,
            "originEnvironment": self.origin_environment,
            "originAvailabilityZone": self.origin_availability_zone,
        }
        if self.reversed_server is not None:
            wire["dataReplicationInfo"] = {"dataReplicationState": self.reversed_server.state}
        return wire
