"""One account+region of DRS: its source servers, jobs and recovery instances, and the rules that bite callers
(one active job per server, quotas, replication states that cannot launch)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sandbox.drs import ec2
from sandbox.drs.instances import RecoveryInstance
from sandbox.drs.jobs import (
    BAD_SNAPSHOT,
    LAUNCH_FAILS,
    OK,
    STUCK,
    UNRECOVERABLE,
    Job,
    LaunchPlan,
    Participant,
    Step,
    plan_failback,
    plan_launch,
    plan_terminate,
)
from sandbox.drs.exceptions import DrsError
from sandbox.drs.servers import UNRECOVERABLE as UNRECOVERABLE_STATES
from sandbox.drs.servers import SourceServer
from sandbox.drs.util import iso, parse_arn

if TYPE_CHECKING:
    from sandbox.drs.models import DrsWorld

QUOTA_SERVERS_PER_JOB = "L-B827C881"
QUOTA_CONCURRENT_JOBS = "L-D88FAC3A"
QUOTA_SERVERS_IN_ACTIVE_JOBS = "L-05AFA8C6"


class DrsBackend:
    def __init__(self, world: DrsWorld, account: str, region: str) -> None:
        self.world, self.account, self.region = world, account, region
        self.initialized = False
        self.servers: dict[str, SourceServer] = {}
        self.jobs: dict[str, Job] = {}
        self.recovery_instances: dict[str, RecoveryInstance] = {}

    # ---- lookups -------------------------------------------------------------------------------------------------

    def find_server(self, key: str) -> SourceServer | None:
        if key in self.servers:
            return self.servers[key]
        return next((s for s in self.servers.values() if s.hostname == key), None)

    def server(self, server_id: str) -> SourceServer:
        found = self.servers.get(server_id)
        if found is None:
            raise DrsError("ResourceNotFoundException", f"Source server {server_id} not found",
                           resourceId=server_id, resourceType="SOURCE_SERVER")
        return found

    def job(self, job_id: str) -> Job:
        found = self.jobs.get(job_id)
        if found is None:
            raise DrsError("ResourceNotFoundException", f"Job {job_id} not found", resourceId=job_id,
                           resourceType="JOB")
        return found

    def recovery_instance(self, instance_id: str) -> RecoveryInstance:
        found = self.recovery_instances.get(instance_id)
        if found is None:
            raise DrsError("ResourceNotFoundException", f"Recovery instance {instance_id} not found",
                           resourceId=instance_id, resourceType="RECOVERY_INSTANCE")
        return found

    def active_job_of(self, server_id: str) -> Job | None:
        return next((j for j in self.jobs.values() if j.active and server_id in j.participants), None)

    def last_launch(self, server: SourceServer) -> tuple[dict[str, Any] | None, str]:
        job = self.jobs.get(server.last_launch_job_id or "")
        if job is None:
            return None, "NOT_STARTED"
        status = job.participants[server.id].status
        result = {"LAUNCHED": "SUCCEEDED", "FAILED": "FAILED"}.get(status, "PENDING")
        initiated = {"apiCallDateTime": iso(job.created_at), "jobID": job.id,
                     "type": "DRILL" if job.is_drill else "RECOVERY"}
        return {"initiated": initiated, "status": status}, result

    def server_wire(self, server: SourceServer) -> dict[str, Any]:
        last, result = self.last_launch(server)
        return server.to_wire(self.world.now(), last, result)

    # ---- time ----------------------------------------------------------------------------------------------------

    def advance(self, now: datetime) -> None:
        for server in self.servers.values():
            server.refresh(now)
        for job in list(self.jobs.values()):
            job.advance(now, self._effect)

    def _effect(self, job: Job, step: Step) -> None:
        if step.server_id is None:
            return
        participant = job.participants[step.server_id]
        server = self.servers.get(step.server_id)
        if step.kind == "snapshot" and server is not None:
            participant.point_in_time = server.take_snapshot(step.at)["timestamp"]
        elif step.kind == "cleanup" and server is not None and server.recovery_instance_id:
            previous = self.recovery_instances.pop(server.recovery_instance_id, None)
            if previous is not None:
                ec2.terminate(self.account, self.region, previous.ec2_instance_id)
            server.recovery_instance_id = None
        elif step.kind == "launched" and server is not None:
            self._launch(job, participant, server, step.at)
        elif step.kind == "terminated":
            instance = self.recovery_instances.pop(participant.recovery_instance_id or "", None)
            if instance is not None:
                ec2.terminate(self.account, self.region, instance.ec2_instance_id)
            if server is not None and server.recovery_instance_id == participant.recovery_instance_id:
                server.recovery_instance_id = None
            participant.status = "TERMINATED"
        elif step.kind == "failback":
            instance = self.recovery_instances.get(participant.recovery_instance_id or "")
            if instance is not None:
                instance.failback_state = "FAILBACK_COMPLETED"
            participant.status = "LAUNCHED"

    def _launch(self, job: Job, participant: Participant, server: SourceServer, at: datetime) -> None:
        config = server.launch_config
        tags = {**(server.tags if config.get("copyTags") else {}), **job.tags, **ec2.DRS_MANAGED_TAG,
                "Name": server.hostname, "AWSDRS_SourceServerID": server.id,
                "drs:isDrill": "true" if job.is_drill else "false"}
        try:
            launched = ec2.launch(self.account, self.region, config["ec2LaunchTemplateID"], tags,
                                  stopped=config.get("launchDisposition") == "STOPPED")
        except Exception as exc:  # noqa: BLE001 -- moto refusing a launch is a launch failure, as on EC2
            participant.status = "FAILED"
            job.record(at, "LAUNCH_FAILED", server.id, {"rawError": f"{type(exc).__name__}: {exc}"})
            return
        instance = RecoveryInstance(
            id=participant.planned_instance_id or self.world.new_id("i-"), account=self.account,
            region=self.region, ec2_instance_id=launched["instance_id"], job_id=job.id, source_server_id=server.id,
            is_drill=job.is_drill, point_in_time=participant.point_in_time, launched_at=at,
            hardware=server.hardware, hostname=server.hostname,
            origin_environment="AWS" if server.ec2_origin else "ON_PREMISES",
            origin_availability_zone=f"{server.source_region}a" if server.ec2_origin else None,
            volumes=launched["volumes"],
        )
        self.recovery_instances[instance.id] = instance
        participant.recovery_instance_id, participant.status = instance.id, "LAUNCHED"
        server.recovery_instance_id = instance.id

    # ---- jobs ----------------------------------------------------------------------------------------------------

    def _admit(self, server_ids: list[str]) -> None:
        quotas = self.world.quotas
        if len(server_ids) > quotas.servers_per_job:
            raise _quota(f"A job can include at most {quotas.servers_per_job} source servers", QUOTA_SERVERS_PER_JOB)
        for server_id in server_ids:
            active = self.active_job_of(server_id)
            if active is not None:
                raise DrsError("ConflictException",
                               f"Source server {server_id} is already participating in active job {active.id}",
                               resourceId=server_id, resourceType="SOURCE_SERVER")
        active_jobs = [j for j in self.jobs.values() if j.active]
        if len(active_jobs) >= quotas.concurrent_jobs:
            raise _quota(f"At most {quotas.concurrent_jobs} jobs can be in progress", QUOTA_CONCURRENT_JOBS)
        busy = sum(len(j.participants) for j in active_jobs)
        if busy + len(server_ids) > quotas.servers_in_active_jobs:
            raise _quota(f"At most {quotas.servers_in_active_jobs} source servers can be in jobs in progress "
                         f"({busy} are)", QUOTA_SERVERS_IN_ACTIVE_JOBS)

    def _new_job(self, kind: str, initiated_by: str, participants: dict[str, Participant], tags: dict[str, str],
                 is_drill: bool = False) -> Job:
        job = Job(id=self.world.new_id("drsjob-"), account=self.account, region=self.region, type=kind,
                  initiated_by=initiated_by, created_at=self.world.now(), tags=dict(tags or {}),
                  participants=participants, is_drill=is_drill)
        self.jobs[job.id] = job
        return job

    def start_recovery(self, requested: list[dict[str, Any]], is_drill: bool, tags: dict[str, str]) -> Job:
        ids = [item["sourceServerID"] for item in requested]
        if len(set(ids)) != len(ids):
            raise DrsError("ValidationException", "sourceServers lists a source server more than once",
                           reason="fieldValidationFailed",
                           fieldList=[{"name": "sourceServers", "message": "duplicate sourceServerID"}])
        servers = [self.server(server_id) for server_id in ids]
        self._race(servers)
        self._admit(ids)
        now, faults = self.world.now(), self.world.faults
        participants, plans = {}, []
        for item, server in zip(requested, servers, strict=True):
            snapshot_id = item.get("recoverySnapshotID")
            participant = Participant(server.id, snapshot_id=snapshot_id, planned_instance_id=self.world.new_id("i-"))
            chosen = None
            if snapshot_id:
                chosen = next((s for s in server.snapshots(now) if s["snapshotID"] == snapshot_id), None)
                participant.point_in_time = chosen["timestamp"] if chosen else None
            outcome = (UNRECOVERABLE if server.state in UNRECOVERABLE_STATES
                       else BAD_SNAPSHOT if snapshot_id and chosen is None
                       else STUCK if faults.matches(faults.stuck_servers, server)
                       else LAUNCH_FAILS if faults.matches(faults.launch_failures, server) else OK)
            participants[server.id] = participant
            plans.append(LaunchPlan(server.id, outcome, snapshot_id, bool(server.recovery_instance_id),
                                    server.instance_type, server.state, faults.stuck_seconds))
        job = self._new_job("LAUNCH", "START_DRILL" if is_drill else "START_RECOVERY", participants, tags, is_drill)
        plan_launch(job, plans, self.world.timing())
        for server in servers:
            server.last_launch_job_id = job.id
        self.advance(now)
        return job

    def _race(self, servers: list[SourceServer]) -> None:
        """The `raced_servers` fault: someone else's job takes these servers first (the emulator then refuses the
        request that lost, as DRS does)."""
        raced = self.world.faults.raced_servers
        for server in servers:
            tags = raced.pop(server.id, None) or raced.pop(server.hostname or "", None)
            if tags is not None:
                self.start_recovery([{"sourceServerID": server.id}], True, dict(tags))

    def terminate(self, instance_ids: list[str]) -> Job:
        instances = [self.recovery_instance(i) for i in dict.fromkeys(instance_ids)]
        server_ids = [ri.source_server_id for ri in instances]
        self._admit(server_ids)
        participants = {ri.source_server_id: Participant(ri.source_server_id, ri.id) for ri in instances}
        job = self._new_job("TERMINATE", "TERMINATE_RECOVERY_INSTANCES", participants, {})
        plan_terminate(job, self.world.timing())
        self.advance(job.created_at)
        return job

    def start_failback(self, instance_ids: list[str], tags: dict[str, str]) -> Job:
        instances = [self.recovery_instance(i) for i in dict.fromkeys(instance_ids)]
        self._admit([ri.source_server_id for ri in instances])
        participants = {ri.source_server_id: Participant(ri.source_server_id, ri.id) for ri in instances}
        job = self._new_job("LAUNCH", "FAILBACK", participants, tags)
        for ri in instances:
            ri.failback_state, ri.failback_job_id, ri.failback_started_at = "FAILBACK_IN_PROGRESS", job.id, job.created_at
        plan_failback(job, self.world.timing())
        self.advance(job.created_at)
        return job

    def delete_job(self, job_id: str) -> None:
        job = self.job(job_id)
        if job.active:
            raise DrsError("ConflictException", f"Job {job_id} is {job.status}: only a completed job can be deleted",
                           resourceId=job_id, resourceType="JOB")
        del self.jobs[job_id]

    def disconnect_recovery_instance(self, instance_id: str) -> None:
        instance = self.recovery_instance(instance_id)
        if self.active_job_of(instance.source_server_id):
            raise DrsError("ConflictException", f"Recovery instance {instance_id} is in an active job",
                           resourceId=instance_id, resourceType="RECOVERY_INSTANCE")
        del self.recovery_instances[instance_id]
        server = self.servers.get(instance.source_server_id)
        if server is not None and server.recovery_instance_id == instance_id:
            server.recovery_instance_id = None

    # ---- source servers ------------------------------------------------------------------------------------------

    def describe_servers(self, filters: dict[str, Any]) -> list[SourceServer]:
        servers = list(self.servers.values())
        if filters.get("sourceServerIDs"):
            wanted = set(filters["sourceServerIDs"])
            servers = [s for s in servers if s.id in wanted]
        if filters.get("hardwareId"):
            hw = filters["hardwareId"]
            servers = [s for s in servers if hw in (s.hardware["ec2_instance_id"] if s.ec2_origin else None,
                                                    s.hardware["vmware_uuid"] if not s.ec2_origin else None,
                                                    *(n["macAddress"] for n in s.hardware["nics"]))]
        if filters.get("stagingAccountIDs"):
            # Only extended source servers have a staging account, and the sandbox makes none.
            servers = []
        return servers

    def stop_replication(self, server_id: str) -> SourceServer:
        server = self.server(server_id)
        if server.state != "STOPPED":
            server.set_state("STOPPED", self.world.now())
        return server

    def start_replication(self, server_id: str) -> SourceServer:
        """A stopped server rescans its disks before it is CONTINUOUS again: callers must wait, as on AWS."""
        server = self.server(server_id)
        if server.state == "STOPPED":
            now = self.world.now()
            server.set_state("RESCAN", now, until=now + self.world.scaled("resync"), then="CONTINUOUS")
        return server

    def update_launch_config(self, server_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        server = self.server(server_id)
        if self.active_job_of(server_id):
            raise DrsError("ConflictException", f"Source server {server_id} is in an active job",
                           resourceId=server_id, resourceType="SOURCE_SERVER")
        server.launch_config.update(changes)
        config = server.launch_config
        # BASIC right-sizing puts the type DRS recommends for the source machine into the template.
        data = {"InstanceType": server.instance_type} if config["targetInstanceTypeRightSizingMethod"] == "BASIC" else {}
        ec2.new_template_version(self.account, self.region, config["ec2LaunchTemplateID"], data,
                                 f"DRS launch settings (disposition {config['launchDisposition']})")
        return config

    def update_replication_config(self, server_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        server = self.server(server_id)
        server.replication_config.update(changes)
        return server.replication_config

    def reverse_replication(self, instance_id: str) -> str:
        instance = self.recovery_instance(instance_id)
        if instance.reversed_server is not None:
            return instance.reversed_server.arn
        server = self.server(instance.source_server_id)
        if not server.ec2_origin or not server.source_region:
            raise DrsError("ValidationException", "Reverse replication is only for source servers that are EC2 "
                           "instances; fail back on-premises servers with the failback client",
                           reason="other", fieldList=[{"name": "recoveryInstanceID", "message": "not EC2-origin"}])
        reversed_server = self.world.create_source_server(
            server.source_account or self.account, server.source_region, server.hostname, dict(server.tags),
            replication_state="INITIAL_SYNC", lag_seconds=0, source_region=self.region, source_account=self.account,
            instance_type=server.instance_type, ec2_origin=True, direction="FAILBACK", reversed_arn=server.arn)
        server.reversed_arn = reversed_server.arn
        instance.reversed_server = reversed_server
        return reversed_server.arn

    def tagged(self, resource_arn: str) -> dict[str, str]:
        """The live tag map of the resource an ARN names, if it is in this account and region."""
        parsed = parse_arn(resource_arn)
        if parsed and parsed[:2] == (self.region, self.account):
            kind, resource_id = parsed[2], parsed[3]
            tables: dict[str, Mapping[str, SourceServer | Job | RecoveryInstance]] = {
                "source-server": self.servers, "job": self.jobs, "recovery-instance": self.recovery_instances}
            found = tables.get(kind, {}).get(resource_id)
            if found is not None:
                return found.tags
        raise DrsError("ResourceNotFoundException", f"Resource {resource_arn} not found", resourceId=resource_arn)


def _quota(message: str, code: str) -> DrsError:
    return DrsError("ServiceQuotaExceededException", message, quotaCode=code, serviceCode="drs")
