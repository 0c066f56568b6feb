"""aurora.global_database on the sandbox: a global database with its primary cluster in us-east-1 and a secondary in
us-west-2, in the app account, reached through the orchestrator's role."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.core import registry
from activities.core.context import TAG_EXECUTION
from plans.model import Mode, Phase
from tests.aws_helpers import PRIMARY_REGION, RECOVERY_REGION, count_calls, drive, make_ctx, unique, with_phase
from tests.estates import aurora as estates

module = registry.get("aurora.global_database")
assert module is not None


@pytest.fixture
def db(sandbox) -> estates.GlobalDatabase:  # type: ignore[no-untyped-def]
    return estates.create(unique("gdb"))


def _members(db: estates.GlobalDatabase) -> dict[str, dict]:
    return {m["DBClusterArn"].split(":")[-1]: m for m in db.describe()["GlobalClusterMembers"]}


def _unchanged(db: estates.GlobalDatabase) -> None:
    found = db.describe()
    assert not found.get("FailoverState")
    members = _members(db)
    assert members[db.primary]["IsWriter"] and not members[db.secondary]["IsWriter"]
    secondary = db.cluster(db.west, db.secondary)
    assert secondary is not None and secondary["ReplicationSourceIdentifier"].endswith(f":cluster:{db.primary}")


def test_sandbox_switchover_is_visible_then_swaps_roles(db: estates.GlobalDatabase) -> None:
    # moto 5.2.5 left the source of CreateGlobalCluster IsWriter false, named by the global ARN.
    assert db.cluster(db.east, db.primary)["GlobalClusterIdentifier"] == db.global_id
    assert _members(db)[db.primary]["IsWriter"]
    secondary_arn = db.cluster(db.west, db.secondary)["DBClusterArn"]
    state = db.west.switchover_global_cluster(GlobalClusterIdentifier=db.global_id,
                                              TargetDbClusterIdentifier=secondary_arn)["GlobalCluster"]["FailoverState"]
    assert state["Status"] == "pending" and state["IsDataLossAllowed"] is False
    assert state["ToDbClusterArn"] == secondary_arn
    with pytest.raises(ClientError) as busy:
        db.west.failover_global_cluster(GlobalClusterIdentifier=db.global_id, TargetDbClusterIdentifier=secondary_arn,
                                        AllowDataLoss=True)
    assert busy.value.response["Error"]["Code"] == "InvalidGlobalClusterStateFault"
    seen = [db.describe().get("FailoverState", {}).get("Status") for _ in range(3)]
    assert seen == ["switching-over", "switching-over", None]
    assert db.writer_region() == RECOVERY_REGION
    assert db.cluster(db.east, db.primary)["ReplicationSourceIdentifier"] == secondary_arn
    with pytest.raises(ClientError) as missing:
        db.west.describe_global_clusters(GlobalClusterIdentifier="absent")
    assert missing.value.response["Error"]["Code"] == "GlobalClusterNotFoundFault"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_instantiate_preflight(db: estates.GlobalDatabase) -> None:
    ctx, params = make_ctx(module, db.parameters(), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    operation = module.start(ctx, params)
    assert operation.done and "healthy secondary" in operation.message
    assert operation.outputs["writerRegion"] == PRIMARY_REGION and operation.outputs["failoverState"] is None
    assert operation.outputs["lagMilliseconds"] is None  # no CloudWatch datapoints in the sandbox


@pytest.mark.parametrize(("override", "error_type", "named"), [
    ({"globalClusterIdentifier": "absent-global"}, "GlobalClusterNotFound", "absent-global"),
    ({"recoveryClusterIdentifier": "absent-cluster"}, "ClusterNotFound", "absent-cluster"),
])
def test_missing_resources_are_permanent_errors(db: estates.GlobalDatabase, override: dict, error_type: str,
                                                named: str) -> None:
    for phase in (Phase.INSTANTIATE, Phase.ACTIVATE):
        ctx, params = make_ctx(module, db.parameters(**override), mode=Mode.PLANNED, phase=phase)
        with pytest.raises(ApplicationError) as error:
            module.start(ctx, params)
        assert error.value.type == error_type and error.value.non_retryable and named in error.value.message


def test_a_cluster_outside_the_global_database_is_refused(db: estates.GlobalDatabase) -> None:
    outsider = unique("outsider")
    db.west.create_db_cluster(DBClusterIdentifier=outsider, Engine=estates.ENGINE, MasterUsername="app",
                              MasterUserPassword="sandbox-password")
    ctx, params = make_ctx(module, db.parameters(recoveryClusterIdentifier=outsider), mode=Mode.PLANNED,
                           phase=Phase.INSTANTIATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "NotAGlobalMember"


def test_drill_restores_a_standalone_copy_and_leaves_the_global_database(db: estates.GlobalDatabase) -> None:
    ctx, params = make_ctx(module, db.parameters(), mode=Mode.DRILL, phase=Phase.ACTIVATE)
    steps = drive(module, ctx, params)
    assert [s.handle.get("step") for s in steps[:-1]] == ["snapshot", "restore", "instance"]
    handle = steps[-1].handle
    copy = db.cluster(db.west, handle["clusterId"])
    assert copy is not None and copy["Status"] == "available"
    assert not copy.get("GlobalClusterIdentifier") and not copy.get("ReplicationSourceIdentifier")
    assert {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} in copy["TagList"]
    instance = db.west.describe_db_instances(DBInstanceIdentifier=handle["instanceId"])["DBInstances"][0]
    assert instance["DBClusterIdentifier"] == handle["clusterId"] and instance["DBInstanceClass"] == "db.r6g.large"
    _unchanged(db)

    west = ctx.client("rds", region=RECOVERY_REGION)
    with count_calls(west.meta.events, "rds", "CreateDBClusterSnapshot") as snapshots, \
            count_calls(west.meta.events, "rds", "RestoreDBClusterFromSnapshot") as restores:
        assert module.start(ctx, params).done  # a retried ACTIVATE finds the copy
    assert len(snapshots) == 0 and len(restores) == 0
    assert module.start(with_phase(ctx, Phase.REPLICATE), params).message == "replication untouched by drill"

    cleanup = with_phase(ctx, Phase.CLEANUP)
    drive(module, cleanup, params)
    assert db.cluster(db.west, handle["clusterId"]) is None
    assert not db.west.describe_db_cluster_snapshots(
        Filters=[{"Name": "db-cluster-snapshot-id", "Values": [handle["snapshotId"]]}])["DBClusterSnapshots"]
    assert module.start(cleanup, params).done  # again: nothing left
    _unchanged(db)


def test_drill_cleanup_refuses_an_untagged_lookalike(db: estates.GlobalDatabase) -> None:
    ctx, params = make_ctx(module, db.parameters(), mode=Mode.DRILL, phase=Phase.CLEANUP)
    lookalike = f"{db.secondary}-drill-{ctx.drill_suffix()}"
    db.west.create_db_cluster(DBClusterIdentifier=lookalike, Engine=estates.ENGINE, MasterUsername="app",
                              MasterUserPassword="sandbox-password")
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "NotOurs" and db.cluster(db.west, lookalike) is not None


def test_planned_switchover_waits_for_the_swap_and_is_not_repeated(db: estates.GlobalDatabase) -> None:
    ctx, params = make_ctx(module, db.parameters(), mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    west = ctx.client("rds", region=RECOVERY_REGION)
    with count_calls(west.meta.events, "rds", "SwitchoverGlobalCluster") as switchovers:
        first = module.start(ctx, params)
        assert not first.done and first.handle == {"requested": True}
        assert not module.start(ctx, params).done  # a retried start while it runs waits; it asks for nothing
        steps = [first, *drive(module, ctx, params)]
    assert len(switchovers) == 1
    assert any("switching-over" in s.message for s in steps)
    assert db.writer_region() == RECOVERY_REGION
    members = _members(db)
    assert members[db.primary].get("SynchronizationStatus") == "connected"
    assert db.cluster(db.east, db.primary)["ReplicationSourceIdentifier"] == members[db.secondary]["DBClusterArn"]

    with count_calls(west.meta.events, "rds", "SwitchoverGlobalCluster") as again:
        assert module.start(ctx, params).done  # after the switchover: done, and never a switch back
    assert len(again) == 0 and db.writer_region() == RECOVERY_REGION

    assert "left as it is" in module.start(with_phase(ctx, Phase.CLEANUP), params).message
    east = ctx.client("rds", region=PRIMARY_REGION)
    with count_calls(east.meta.events, "rds", "CreateDBCluster") as creates:
        replicate = drive(module, with_phase(ctx, Phase.REPLICATE), params)[-1]
    assert len(creates) == 0 and "replicates from" in replicate.message


def test_disaster_fails_over_with_data_loss_and_replicate_waits_for_the_resync(db: estates.GlobalDatabase) -> None:
    ctx, params = make_ctx(module, db.parameters(), mode=Mode.DISASTER, phase=Phase.ACTIVATE)
    west = ctx.client("rds", region=RECOVERY_REGION)
    with count_calls(west.meta.events, "rds", "FailoverGlobalCluster") as failovers:
        steps = drive(module, ctx, params)
    assert [c["body"].get("AllowDataLoss") for c in failovers.calls] == ["true"]
    assert any("failing-over" in s.message for s in steps)
    members = _members(db)  # one look: the sandbox's resync advances with each describe
    assert members[db.secondary]["IsWriter"] and members[db.primary]["SynchronizationStatus"] == "pending-resync"

    replicate = drive(module, with_phase(ctx, Phase.REPLICATE), params)
    assert "resynchronising" in replicate[0].message and replicate[-1].done
    assert _members(db)[db.primary]["SynchronizationStatus"] == "connected"


def test_disaster_detach_then_replicate_rebuilds_the_global_database(db: estates.GlobalDatabase) -> None:
    ctx, params = make_ctx(module, db.parameters(disasterMethod="detach"), mode=Mode.DISASTER, phase=Phase.ACTIVATE)
    drive(module, ctx, params)
    promoted = db.cluster(db.west, db.secondary)
    assert not promoted.get("GlobalClusterIdentifier") and not promoted.get("ReplicationSourceIdentifier")
    assert set(_members(db)) == {db.primary}  # the old primary still heads the old global database
    assert module.start(ctx, params).done  # a retry: detached already

    replicate = with_phase(ctx, Phase.REPLICATE)
    steps = drive(module, replicate, params)
    assert steps[-1].done
    members = _members(db)
    assert members[db.secondary]["IsWriter"] and set(members) == {db.secondary, f"{db.primary}-secondary"}
    old = db.cluster(db.east, db.primary)
    assert old is not None and not old.get("GlobalClusterIdentifier")  # kept, standalone, for a human to retire
    new = db.cluster(db.east, f"{db.primary}-secondary")
    assert {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} in new["TagList"]

    east = ctx.client("rds", region=PRIMARY_REGION)
    with count_calls(east.meta.events, "rds", "CreateDBCluster") as creates:
        assert drive(module, replicate, params)[-1].done
    assert len(creates) == 0


def test_replicate_before_activate_is_refused(db: estates.GlobalDatabase) -> None:
    ctx, params = make_ctx(module, db.parameters(), mode=Mode.PLANNED, phase=Phase.REPLICATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "NotPromoted"


def test_status(db: estates.GlobalDatabase) -> None:
    ctx, params = make_ctx(module, db.parameters(), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    status = module.status(ctx, params)
    assert status["exists"] and status["writerRegion"] == PRIMARY_REGION
    missing, params = make_ctx(module, db.parameters(globalClusterIdentifier="absent"), mode=Mode.PLANNED,
                               phase=Phase.INSTANTIATE)
    assert module.status(missing, params) == {"globalCluster": "absent", "exists": False}


@pytest.mark.parametrize("mode", [Mode.DRILL, Mode.PLANNED])
def test_estate_through_every_phase(sandbox, mode: Mode) -> None:  # type: ignore[no-untyped-def]
    estate = estates.build(unique("est"))
    execution = unique("exec")
    for resource in estate.resources:
        for phase in (Phase.INSTANTIATE, Phase.ACTIVATE, Phase.CLEANUP, Phase.REPLICATE):
            ctx, params = make_ctx(registry.get(resource["action"]), resource["parameters"], mode=mode, phase=phase,
                                   execution_id=execution)
            drive(registry.get(resource["action"]), ctx, params)
            estate.check(phase, mode)
