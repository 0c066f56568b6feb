"""Scenarios: a described AWS estate, created in the sandbox through its public API with real boto3 clients.

Seeding goes over HTTP like any client would, so what the orchestrator later sees is exactly what the AWS API shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import structlog
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from ruamel.yaml import YAML

log = structlog.get_logger("sandbox.scenario")


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class RoleSpec(_Model):
    account: str
    name: str
    trusted_account: str
    external_id: str | None = None


class ReplicaSpec(_Model):
    identifier: str
    region: str


class DatabaseSpec(_Model):
    account: str
    identifier: str
    region: str
    engine: str = "mysql"
    instance_class: str = "db.t3.micro"
    replicas: list[ReplicaSpec] = Field(default_factory=list)


class RecordSpec(_Model):
    name: str
    type: str = "CNAME"
    ttl: int = 60
    value: str


class ZoneSpec(_Model):
    account: str
    name: str
    records: list[RecordSpec] = Field(default_factory=list)


class SourceServerGroup(_Model):
    """`count` DRS source servers alike but for their hostnames (`hostname` is a str.format pattern with {n})."""

    account: str
    region: str  # where DRS replicates to: the recovery region
    source_region: str | None = None  # where the servers run (EC2 origin); default: the other demo region
    count: int = Field(default=1, ge=1, le=5000)
    start: int = Field(default=1, ge=0)
    hostname: str
    tags: dict[str, str] = Field(default_factory=dict)
    replication_state: str = "CONTINUOUS"
    lag_seconds: int = Field(default=0, ge=0)
    instance_type: str = "t3.medium"


class DrsSpec(_Model):
    durations: dict[str, float] = Field(default_factory=dict)  # snapshot, conversion, launch, terminate (s)
    quotas: dict[str, int] = Field(default_factory=dict)
    source_servers: list[SourceServerGroup] = Field(default_factory=list)


class Scenario(_Model):
    name: str
    description: str = ""
    accounts: dict[str, str]
    roles: list[RoleSpec] = Field(default_factory=list)
    databases: list[DatabaseSpec] = Field(default_factory=list)
    zones: list[ZoneSpec] = Field(default_factory=list)
    drs: DrsSpec | None = None


SCENARIOS = Path(__file__).parent / "scenarios"


def available() -> list[str]:
    return sorted(p.stem for p in SCENARIOS.glob("*.yaml"))


def load(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    else:
        candidate = SCENARIOS / f"{name_or_path}.yaml"
        if not candidate.is_file():
            raise ValueError(f"no scenario {name_or_path!r}; known: {', '.join(available())}")
        text = candidate.read_text()
    return Scenario.model_validate(YAML(typ="safe").load(text))


def session_in(account_id: str, hub_session: boto3.Session | None = None) -> boto3.Session:
    """A session acting in `account_id`: the sandbox maps assumed-role credentials to the role's account."""
    hub = hub_session or boto3.Session()
    creds = hub.client("sts", region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/sandbox-seeder", RoleSessionName="sandbox-seeder"
    )["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"])


def seed(scenario: Scenario) -> dict[str, object]:
    """Create the scenario's resources; returns a summary of what was made (ids, endpoints)."""
    sessions = {key: session_in(account_id) for key, account_id in scenario.accounts.items()}
    roles: list[str] = []
    for role in scenario.roles:
        _seed_role(sessions[role.account], role, scenario.accounts[role.trusted_account])
        roles.append(f"arn:aws:iam::{scenario.accounts[role.account]}:role/{role.name}")
    databases = [_seed_database(sessions[db.account], db) for db in scenario.databases]
    zones = [_seed_zone(sessions[zone.account], zone) for zone in scenario.zones]
    made: dict[str, object] = {"scenario": scenario.name, "roles": roles, "databases": databases, "zones": zones}
    if scenario.drs is not None:
        made["drs"] = _seed_drs(scenario)
    log.info("scenario.seeded", scenario=scenario.name, summary=json.dumps(made))
    return made


def _seed_drs(scenario: Scenario) -> dict[str, int]:
    """DRS state is the emulator's own, in this process (as moto's backends are): seeded directly, not over HTTP."""
    from sandbox.drs.models import drs_world

    world = drs_world()
    spec = scenario.drs
    assert spec is not None
    if spec.durations:
        world.set_durations(**spec.durations)
    if spec.quotas:
        world.set_quotas(**spec.quotas)
    counts: dict[str, int] = {}
    for group in spec.source_servers:
        account_id = scenario.accounts[group.account]
        for n in range(group.start, group.start + group.count):
            world.add_source_server(
                account_id, group.region, group.hostname.format(n=n), tags=dict(group.tags),
                replication_state=group.replication_state, lag_seconds=group.lag_seconds,
                source_region=group.source_region, instance_type=group.instance_type,
            )
        key = f"{account_id}/{group.region}"
        counts[key] = counts.get(key, 0) + group.count
    return counts


def _seed_role(session: boto3.Session, role: RoleSpec, trusted_account_id: str) -> None:
    condition = {"StringEquals": {"sts:ExternalId": role.external_id}} if role.external_id else {}
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{trusted_account_id}:root"},
                       "Action": "sts:AssumeRole", **({"Condition": condition} if condition else {})}],
    }
    iam = session.client("iam", region_name="us-east-1")
    iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=json.dumps(trust),
                    Description="Lets the DR orchestrator act in this account")


def _seed_database(session: boto3.Session, db: DatabaseSpec) -> dict[str, str]:
    primary = session.client("rds", region_name=db.region)
    created = primary.create_db_instance(
        DBInstanceIdentifier=db.identifier, Engine=db.engine, DBInstanceClass=db.instance_class,
        AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="sandbox-only-password",
        BackupRetentionPeriod=7,
    )["DBInstance"]
    summary = {"primary": created["DBInstanceArn"]}
    for replica in db.replicas:
        client = session.client("rds", region_name=replica.region)
        made = client.create_db_instance_read_replica(
            DBInstanceIdentifier=replica.identifier, SourceDBInstanceIdentifier=created["DBInstanceArn"],
            SourceRegion=db.region, DBInstanceClass=db.instance_class,
        )["DBInstance"]
        summary[replica.identifier] = made["DBInstanceArn"]
    return summary


def _seed_zone(session: boto3.Session, zone: ZoneSpec) -> dict[str, str]:
    route53 = session.client("route53", region_name="us-east-1")
    zone_id = route53.create_hosted_zone(Name=zone.name, CallerReference=f"sandbox-{zone.name}")["HostedZone"]["Id"]
    if zone.records:
        route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
            {"Action": "UPSERT", "ResourceRecordSet": {"Name": r.name, "Type": r.type, "TTL": r.ttl,
                                                       "ResourceRecords": [{"Value": r.value}]}}
            for r in zone.records
        ]})
    return {"zone": zone.name, "id": zone_id}
