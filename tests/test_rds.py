"""rds.read_replica on the sandbox: a primary in us-east-1 and its cross-region replica in us-west-2, in the app
account, reached through the orchestrator's role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config
from temporalio.exceptions import ApplicationError

from activities.core import registry
from activities.core.aws import AwsClients
from activities.core.context import TAG_EXECUTION
from plans.model import Account, Mode, Phase
from tests.aws_helpers import (
    PRIMARY_REGION,
    RECOVERY_REGION,
    count_calls,
    drive,
    make_ctx,
    unique,
    with_phase,
)
from tests.conftest import APP_ACCOUNT, account_session

# Through the registry, as the runtime finds it: a direct import would fill the registry with this module alone, and
# registry.get loads the other built-in modules only while it is empty.
module = registry.get("rds.read_replica")
assert module is not None


@dataclass
class Estate:
    primary: str
    replica: str
    east: Any  # RDS clients in the app account, to read back what the module did
    west: Any

    def instance(self, client: Any, name: str) -> dict[str, Any] | None:
        found = client.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [name]}])["DBInstances"]
        return found[0] if found else None

    def snapshot(self, name: str) -> dict[str, Any] | None:
        found = self.west.describe_db_snapshots(Filters=[{"Name": "db-snapshot-id", "Values": [name]}])
        return found["DBSnapshots"][0] if found["DBSnapshots"] else None

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"replicaIdentifier": self.replica, "primaryIdentifier": self.primary, **extra}


@pytest.fixture
def estate(sandbox) -> Estate:  # type: ignore[no-untyped-def]
    app = account_session(APP_ACCOUNT)
    east, west = app.client("rds", region_name=PRIMARY_REGION), app.client("rds", region_name=RECOVERY_REGION)
    primary, replica = unique("orders"), unique("orders-replica")
    arn = east.create_db_instance(
        DBInstanceIdentifier=primary,
        Engine="postgres",
        DBInstanceClass="db.t3.medium",
        AllocatedStorage=20,
        MasterUsername="app",
        MasterUserPassword="sandbox-password",
        BackupRetentionPeriod=1,
    )["DBInstance"]["DBInstanceArn"]
    west.create_db_instance_read_replica(
        DBInstanceIdentifier=replica, SourceDBInstanceIdentifier=arn, SourceRegion=PRIMARY_REGION
    )
    return Estate(primary=primary, replica=replica, east=east, west=west)


def test_instantiate_preflight(estate: Estate) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    operation = module.start(ctx, params)
    assert operation.done
    assert operation.outputs["source"].endswith(f":db:{estate.primary}")
    assert operation.outputs["status"] == "available" and operation.outputs["isReplica"]
    assert operation.outputs["lagSeconds"] is None  # no ReplicaLag datapoints in the sandbox


def test_instantiate_rejects_wrong_or_missing_replica(estate: Estate) -> None:
    ctx, params = make_ctx(
        module, estate.params(primaryIdentifier="someone-else"), mode=Mode.PLANNED, phase=Phase.INSTANTIATE
    )
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "NotAReadReplica" and error.value.non_retryable

    ctx, params = make_ctx(module, estate.params(replicaIdentifier="absent"), mode=Mode.DRILL, phase=Phase.INSTANTIATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "ReplicaNotFound" and error.value.non_retryable


def test_drill_restores_a_tagged_copy_and_leaves_the_replica(estate: Estate) -> None:
    parameters = estate.params(drillInstanceClass="db.t3.small")
    ctx, params = make_ctx(module, parameters, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    steps = drive(module, ctx, params)
    assert [s.handle.get("step") for s in steps[:-1]] == ["snapshot", "restore"]
    copy_id, snapshot_id = steps[-1].handle["instanceId"], steps[-1].handle["snapshotId"]
    assert copy_id == f"{estate.replica}-drill-{ctx.drill_suffix()}" and snapshot_id == f"dr-drill-{ctx.drill_suffix()}"

    copy = estate.instance(estate.west, copy_id)
    assert copy is not None and copy["DBInstanceStatus"] == "available"
    assert copy["DBInstanceClass"] == "db.t3.small"
    assert {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} in copy["TagList"]
    assert steps[-1].outputs["endpoint"].startswith(f"{copy_id}.")
    snapshot = estate.snapshot(snapshot_id)
    assert snapshot is not None and {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} in snapshot["TagList"]

    replica = estate.instance(estate.west, estate.replica)
    assert replica is not None and replica["ReadReplicaSourceDBInstanceIdentifier"].endswith(f":db:{estate.primary}")
    primary = estate.instance(estate.east, estate.primary)
    assert primary is not None and any(r.endswith(estate.replica) for r in primary["ReadReplicaDBInstanceIdentifiers"])

    # A retried start finds the copy: no second snapshot, no second restore.
    west = ctx.client("rds", region=RECOVERY_REGION)
    with count_calls(west.meta.events, "rds", "CreateDBSnapshot") as snapshots, count_calls(
        west.meta.events, "rds", "RestoreDBInstanceFromDBSnapshot"
    ) as restores:
        assert module.start(ctx, params).done
    assert len(snapshots) == 0 and len(restores) == 0


def test_drill_cleanup_deletes_copy_and_snapshot_only(estate: Estate) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.DRILL, phase=Phase.ACTIVATE)
    done = drive(module, ctx, params)[-1]
    cleanup = with_phase(ctx, Phase.CLEANUP)
    drive(module, cleanup, params)
    assert estate.instance(estate.west, done.handle["instanceId"]) is None
    assert estate.snapshot(done.handle["snapshotId"]) is None
    assert estate.instance(estate.west, estate.replica) is not None
    assert estate.instance(estate.east, estate.primary) is not None
    assert module.start(cleanup, params).done  # again: nothing left, nothing to do


def test_drill_cleanup_refuses_an_untagged_instance(estate: Estate) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.DRILL, phase=Phase.CLEANUP)
    lookalike = f"{estate.replica}-drill-{ctx.drill_suffix()}"
    estate.west.create_db_instance(
        DBInstanceIdentifier=lookalike,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="app",
        MasterUserPassword="sandbox-password",
    )
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "NotOurs"
    assert estate.instance(estate.west, lookalike) is not None


def test_drill_replicate_changes_nothing(estate: Estate) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.DRILL, phase=Phase.REPLICATE)
    operation = module.start(ctx, params)
    assert operation.done and operation.message == "replication untouched by drill"
    assert estate.instance(estate.east, f"{estate.primary}-replica") is None


def test_planned_promote_makes_the_replica_standalone(estate: Estate) -> None:
    ctx, params = make_ctx(module, estate.params(backupRetentionPeriod=5), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    steps = drive(module, ctx, params)
    assert steps[0].handle == {"promoteRequested": True}
    promoted = estate.instance(estate.west, estate.replica)
    assert promoted is not None and not promoted.get("ReadReplicaSourceDBInstanceIdentifier")
    assert promoted["BackupRetentionPeriod"] == 5 and promoted["DBInstanceStatus"] == "available"

    west = ctx.client("rds", region=RECOVERY_REGION)
    with count_calls(west.meta.events, "rds", "PromoteReadReplica") as promotes:
        again = module.start(ctx, params)
    assert again.done and len(promotes) == 0


def test_replicate_creates_a_replica_in_the_primary_region(estate: Estate) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.PLANNED, phase=Phase.REPLICATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)  # the replica is not promoted yet
    assert error.value.type == "NotPromoted"

    drive(module, with_phase(ctx, Phase.ACTIVATE), params)
    steps = drive(module, ctx, params)
    new_id = f"{estate.primary}-replica"
    assert steps[-1].outputs["replica"] == new_id
    replica = estate.instance(estate.east, new_id)
    promoted = estate.instance(estate.west, estate.replica)
    assert replica is not None and promoted is not None
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == promoted["DBInstanceArn"]
    assert {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} in replica["TagList"]

    east = ctx.client("rds", region=PRIMARY_REGION)
    with count_calls(east.meta.events, "rds", "CreateDBInstanceReadReplica") as creates:
        assert module.start(ctx, params).done
    assert len(creates) == 0


def test_replicate_refuses_an_identifier_taken_by_another_instance(estate: Estate) -> None:
    ctx, params = make_ctx(
        module, estate.params(newReplicaIdentifier=estate.primary), mode=Mode.PLANNED, phase=Phase.ACTIVATE
    )
    drive(module, ctx, params)
    with pytest.raises(ApplicationError) as error:
        module.start(with_phase(ctx, Phase.REPLICATE), params)
    assert error.value.type == "ReplicaIdentifierTaken"


@pytest.mark.parametrize("action", ["stop", "delete", "none"])
def test_cleanup_old_primary(estate: Estate, action: str) -> None:
    ctx, params = make_ctx(module, estate.params(oldPrimaryAction=action), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    drive(module, ctx, params)
    cleanup = with_phase(ctx, Phase.CLEANUP)
    steps = drive(module, cleanup, params)
    primary = estate.instance(estate.east, estate.primary)
    if action == "stop":
        assert primary is not None and primary["DBInstanceStatus"] == "stopped"
    elif action == "delete":
        assert primary is None
        final = steps[0].outputs["finalSnapshot"]
        assert estate.east.describe_db_snapshots(DBSnapshotIdentifier=final)["DBSnapshots"]
    else:
        assert primary is not None and primary["DBInstanceStatus"] == "available"
    assert module.start(cleanup, params).done  # a retry has nothing more to do
    assert estate.instance(estate.west, estate.replica) is not None  # the promoted instance is never touched


class _PrimaryRegionDown(AwsClients):
    """The primary region does not answer: its RDS client points at a closed port, as in a regional outage."""

    def client(self, service: str, account: Account, region: str, **options: Any) -> Any:
        if service == "rds" and region == PRIMARY_REGION:
            creds = self.session_for(account).get_credentials().get_frozen_credentials()
            return boto3.client(
                "rds",
                region_name=region,
                endpoint_url="http://127.0.0.1:9",
                aws_access_key_id=creds.access_key,
                aws_secret_access_key=creds.secret_key,
                aws_session_token=creds.token,
                config=Config(connect_timeout=1, retries={"max_attempts": 1}),
            )
        return super().client(service, account, region, **options)


def test_disaster_cleanup_reports_an_unreachable_primary_region(estate: Estate) -> None:
    parameters = estate.params(oldPrimaryAction="stop")
    ctx, params = make_ctx(module, parameters, mode=Mode.DISASTER, phase=Phase.CLEANUP, aws=_PrimaryRegionDown())
    operation = module.start(ctx, params)
    assert operation.done and operation.outputs == {"primaryReachable": False}
    assert "unreachable" in operation.message and PRIMARY_REGION in operation.message

    planned = with_phase(ctx, Phase.CLEANUP, mode=Mode.PLANNED)
    with pytest.raises(Exception) as error:  # outside a disaster the error is Temporal's to retry
        module.start(planned, params)
    assert not isinstance(error.value, ApplicationError)


def test_resources_live_in_the_app_account_only(estate: Estate) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.DRILL, phase=Phase.ACTIVATE)
    copy_id = drive(module, ctx, params)[-1].handle["instanceId"]
    hub = boto3.client("rds", region_name=RECOVERY_REGION)
    hub_ids = {d["DBInstanceIdentifier"] for d in hub.describe_db_instances()["DBInstances"]}
    assert estate.replica not in hub_ids and copy_id not in hub_ids
    assert estate.instance(estate.west, copy_id) is not None


def test_status(estate: Estate) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    status = module.status(ctx, params)
    assert status["exists"] and status["isReplica"] and status["status"] == "available"
    assert status["engine"] == "postgres" and status["endpoint"].startswith(f"{estate.replica}.")
    missing, params = make_ctx(
        module, estate.params(replicaIdentifier="absent"), mode=Mode.PLANNED, phase=Phase.INSTANTIATE
    )
    assert module.status(missing, params) == {"identifier": "absent", "exists": False}


def test_deleting_a_cross_region_replica_detaches_it_from_its_source(estate: Estate) -> None:
    # moto 5.2.5 answered 500 here and left the source listing the deleted replica (sandbox/moto_fixes/rds.py).
    estate.west.delete_db_instance(DBInstanceIdentifier=estate.replica, SkipFinalSnapshot=True)
    assert estate.instance(estate.west, estate.replica) is None
    primary = estate.instance(estate.east, estate.primary)
    assert primary is not None and primary["ReadReplicaDBInstanceIdentifiers"] == []


@pytest.fixture
def sqlserver(sandbox) -> Estate:  # type: ignore[no-untyped-def]
    app = account_session(APP_ACCOUNT)
    east, west = app.client("rds", region_name=PRIMARY_REGION), app.client("rds", region_name=RECOVERY_REGION)
    primary, replica = unique("ledger"), unique("ledger-replica")
    # As SQL Server wants it: license-included, no DBName, an option group of the engine's major version.
    arn = east.create_db_instance(
        DBInstanceIdentifier=primary,
        Engine="sqlserver-se",
        EngineVersion="15.00.4073.23.v1",
        LicenseModel="license-included",
        DBInstanceClass="db.m5.xlarge",
        AllocatedStorage=200,
        MasterUsername="app",
        MasterUserPassword="sandbox-password",
        BackupRetentionPeriod=1,
    )["DBInstance"]["DBInstanceArn"]
    options = unique("ledger-tde")  # where SQL Server keeps TDE: a drill copy without it could not open the data
    west.create_option_group(OptionGroupName=options, EngineName="sqlserver-se", MajorEngineVersion="15.00",
                             OptionGroupDescription="TDE for the ledger")
    west.create_db_instance_read_replica(
        DBInstanceIdentifier=replica, SourceDBInstanceIdentifier=arn, SourceRegion=PRIMARY_REGION,
        OptionGroupName=options,
    )
    return Estate(primary=primary, replica=replica, east=east, west=west)


def test_sql_server_replica_through_drill_and_failover(sqlserver: Estate) -> None:
    ctx, params = make_ctx(module, sqlserver.params(), mode=Mode.DRILL, phase=Phase.INSTANTIATE)
    preflight = module.start(ctx, params)
    assert preflight.done and preflight.outputs["engine"] == "sqlserver-se"

    copy_id = drive(module, with_phase(ctx, Phase.ACTIVATE), params)[-1].handle["instanceId"]
    copy = sqlserver.instance(sqlserver.west, copy_id)
    assert copy is not None and copy["Engine"] == "sqlserver-se" and copy["LicenseModel"] == "license-included"
    replica = sqlserver.instance(sqlserver.west, sqlserver.replica)
    assert replica is not None and replica["OptionGroupMemberships"][0]["OptionGroupName"].startswith("ledger-tde-")
    assert copy["OptionGroupMemberships"] == replica["OptionGroupMemberships"]
    drive(module, with_phase(ctx, Phase.CLEANUP), params)
    assert sqlserver.instance(sqlserver.west, copy_id) is None
    replica = sqlserver.instance(sqlserver.west, sqlserver.replica)
    assert replica is not None and replica["ReadReplicaSourceDBInstanceIdentifier"].endswith(f":db:{sqlserver.primary}")

    planned, params = make_ctx(module, sqlserver.params(), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    drive(module, planned, params)
    promoted = sqlserver.instance(sqlserver.west, sqlserver.replica)
    assert promoted is not None and not promoted.get("ReadReplicaSourceDBInstanceIdentifier")
    drive(module, with_phase(planned, Phase.REPLICATE), params)
    back = sqlserver.instance(sqlserver.east, f"{sqlserver.primary}-replica")
    assert back is not None and back["Engine"] == "sqlserver-se"
    assert back["ReadReplicaSourceDBInstanceIdentifier"] == promoted["DBInstanceArn"]


@pytest.mark.parametrize("mode", [Mode.DRILL, Mode.PLANNED])
def test_estate_through_every_phase(sandbox, mode: Mode) -> None:  # type: ignore[no-untyped-def]
    from tests.estates import rds as rds_estate

    estate = rds_estate.build(unique("est"))
    execution = unique("exec")
    for resource in estate.resources:
        action = registry.get(resource["action"])
        assert action is not None
        for phase in (Phase.INSTANTIATE, Phase.ACTIVATE, Phase.CLEANUP, Phase.REPLICATE):
            ctx, params = make_ctx(action, resource["parameters"], mode=mode, phase=phase, execution_id=execution)
            drive(action, ctx, params)
            estate.check(phase, mode)
