"""elasticache.global_datastore on the sandbox: a global datastore with its primary in us-east-1 and its secondary in
us-west-2, in the app account, reached through the orchestrator's role."""

from __future__ import annotations

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
    RECOVERY_REGION,
    count_calls,
    drive,
    make_ctx,
    unique,
    with_phase,
)
from tests.estates import elasticache as estates
from tests.estates.elasticache import GlobalDatastore

module = registry.get("elasticache.global_datastore")
assert module is not None


@pytest.fixture
def estate(sandbox) -> GlobalDatastore:  # type: ignore[no-untyped-def]
    return estates.seed(unique("sess"))


def _tags(estate: GlobalDatastore, arn: str) -> list[dict[str, str]]:
    return list(estate.west.list_tags_for_resource(ResourceName=arn)["TagList"])


def test_instantiate_preflight(estate: GlobalDatastore) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    operation = module.start(ctx, params)
    assert operation.done, operation.message
    assert operation.outputs["datastoreStatus"] == "available" and operation.outputs["groupStatus"] == "available"
    assert sorted(operation.outputs["members"]) == sorted(
        [f"{estate.primary}@us-east-1:PRIMARY", f"{estate.secondary}@us-west-2:SECONDARY"])


def test_missing_datastore_or_member_is_a_clear_permanent_error(estate: GlobalDatastore) -> None:
    ctx, params = make_ctx(module, estate.params(globalReplicationGroupId="xxxxx-absent"), mode=Mode.PLANNED,
                           phase=Phase.INSTANTIATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "GlobalDatastoreNotFound" and error.value.non_retryable
    assert "xxxxx-absent" in str(error.value)

    ctx, params = make_ctx(module, estate.params(replicationGroupId="absent"), mode=Mode.DISASTER,
                           phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "ReplicationGroupNotFound" and error.value.non_retryable and "absent" in str(error.value)

    ctx, params = make_ctx(module, estate.params(primaryReplicationGroupId="someone-else"), mode=Mode.DRILL,
                           phase=Phase.INSTANTIATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "NotThePrimary"


def test_drill_restores_a_tagged_copy_and_cleanup_deletes_it(estate: GlobalDatastore) -> None:
    ctx, params = make_ctx(module, estate.params(drillNodeType="cache.r6g.xlarge"), mode=Mode.DRILL,
                           phase=Phase.ACTIVATE)
    steps = drive(module, ctx, params)
    assert len(steps) > 2  # snapshot, then restore, each took a look or two
    copy_id, snapshot_name = steps[-1].outputs["drillGroup"], steps[-1].outputs["snapshot"]
    assert copy_id == f"{estate.secondary}-drill-{ctx.drill_suffix()}"
    copy = estate.group(estate.west, copy_id)
    assert copy is not None and copy["Status"] == "available" and copy["CacheNodeType"] == "cache.r6g.xlarge"
    assert "GlobalReplicationGroupInfo" not in copy  # standalone: writes to it go nowhere
    assert {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} in _tags(estate, copy["ARN"])
    assert steps[-1].outputs["endpoint"].startswith(f"master.{copy_id}.")
    snapshot = estate.west.describe_snapshots(SnapshotName=snapshot_name)["Snapshots"][0]
    assert snapshot["ReplicationGroupId"] == estate.secondary
    # Production is untouched: same roles, datastore available.
    assert estate.roles() == {estate.primary: "PRIMARY", estate.secondary: "SECONDARY"}
    assert estate.datastore()["Status"] == "available"

    west = ctx.client("elasticache", region=RECOVERY_REGION)
    with count_calls(west.meta.events, "elasticache", "CreateSnapshot") as snapshots, count_calls(
        west.meta.events, "elasticache", "CreateReplicationGroup"
    ) as restores:
        assert module.start(ctx, params).done
    assert len(snapshots) == 0 and len(restores) == 0

    cleanup = with_phase(ctx, Phase.CLEANUP)
    drive(module, cleanup, params)
    assert estate.group(estate.west, copy_id) is None
    assert not estate.west.describe_snapshots(ReplicationGroupId=estate.secondary)["Snapshots"]
    assert estate.roles() == {estate.primary: "PRIMARY", estate.secondary: "SECONDARY"}
    assert module.start(cleanup, params).done  # again: nothing left

    replicate = module.start(with_phase(ctx, Phase.REPLICATE), params)
    assert replicate.done and replicate.message == "replication untouched by drill"


def test_drill_check_is_read_only(estate: GlobalDatastore) -> None:
    ctx, params = make_ctx(module, estate.params(drillMethod="check"), mode=Mode.DRILL, phase=Phase.ACTIVATE)
    west = ctx.client("elasticache", region=RECOVERY_REGION)
    with count_calls(west.meta.events, "elasticache", "CreateSnapshot") as snapshots:
        operation = module.start(ctx, params)
    assert operation.done and len(snapshots) == 0 and not estate.drill_copies()
    assert module.start(with_phase(ctx, Phase.CLEANUP), params).done


def test_drill_cleanup_refuses_an_untagged_group(estate: GlobalDatastore) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.DRILL, phase=Phase.CLEANUP)
    lookalike = f"{estate.secondary}-drill-{ctx.drill_suffix()}"
    estate.west.create_replication_group(ReplicationGroupId=lookalike, ReplicationGroupDescription="not ours",
                                         CacheNodeType=estates.NODE_TYPE, Engine="redis")
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "NotOurs"
    assert estate.group(estate.west, lookalike) is not None


@pytest.mark.parametrize("mode", [Mode.PLANNED, Mode.FAILBACK])
def test_planned_failover_swaps_roles_and_replicate_verifies(estate: GlobalDatastore, mode: Mode) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=mode, phase=Phase.ACTIVATE)
    steps = drive(module, ctx, params)
    assert not steps[0].done and steps[-1].done  # the failover took a look or two
    assert estate.roles() == {estate.primary: "SECONDARY", estate.secondary: "PRIMARY"}
    assert estate.datastore()["Status"] == "available"
    info = estate.group(estate.west, estate.secondary)["GlobalReplicationGroupInfo"]  # type: ignore[index]
    assert info == {"GlobalReplicationGroupId": estate.global_id, "GlobalReplicationGroupMemberRole": "PRIMARY"}

    west = ctx.client("elasticache", region=RECOVERY_REGION)
    with count_calls(west.meta.events, "elasticache", "FailoverGlobalReplicationGroup") as failovers:
        assert module.start(ctx, params).done
    assert len(failovers) == 0

    assert module.start(with_phase(ctx, Phase.CLEANUP), params).done
    replicate = drive(module, with_phase(ctx, Phase.REPLICATE), params)[-1]
    assert replicate.outputs["datastore"] == estate.global_id and "oldDatastore" not in replicate.outputs
    assert estate.roles() == {estate.primary: "SECONDARY", estate.secondary: "PRIMARY"}


def test_disaster_detaches_the_secondary_and_replicate_builds_a_new_datastore(estate: GlobalDatastore) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.DISASTER, phase=Phase.REPLICATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)  # nothing promoted yet
    assert error.value.type == "NotPromoted"

    activate = with_phase(ctx, Phase.ACTIVATE)
    steps = drive(module, activate, params)
    assert not steps[0].done
    group = estate.group(estate.west, estate.secondary)
    assert group is not None and group["Status"] == "available" and "GlobalReplicationGroupInfo" not in group
    assert estate.roles() == {estate.primary: "PRIMARY"}  # the old datastore keeps its (unreachable) primary
    west = ctx.client("elasticache", region=RECOVERY_REGION)
    with count_calls(west.meta.events, "elasticache", "DisassociateGlobalReplicationGroup") as calls:
        assert module.start(activate, params).done
    assert len(calls) == 0

    steps = drive(module, ctx, params)
    new_id, new_secondary = steps[-1].outputs["datastore"], f"{estate.primary}-dr"
    assert new_id != estate.global_id and steps[-1].outputs["oldDatastore"] == estate.global_id
    assert estate.roles(new_id) == {estate.secondary: "PRIMARY", new_secondary: "SECONDARY"}
    secondary = estate.group(estate.east, new_secondary)
    assert secondary is not None and secondary["Status"] == "available"
    assert {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} in estate.east.list_tags_for_resource(
        ResourceName=secondary["ARN"])["TagList"]
    east = ctx.client("elasticache", region="us-east-1")
    with count_calls(west.meta.events, "elasticache", "CreateGlobalReplicationGroup") as globals_, count_calls(
        east.meta.events, "elasticache", "CreateReplicationGroup"
    ) as groups:
        assert module.start(ctx, params).done
    assert len(globals_) == 0 and len(groups) == 0


class _PrimaryRegionDown(AwsClients):
    """The primary region does not answer: its ElastiCache client points at a closed port, as in a regional outage."""

    def client(self, service: str, account: Account, region: str, **options: Any) -> Any:
        if service == "elasticache" and region == "us-east-1":
            creds = self.session_for(account).get_credentials().get_frozen_credentials()
            return boto3.client(service, region_name=region, endpoint_url="http://127.0.0.1:9",
                                aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
                                aws_session_token=creds.token,
                                config=Config(connect_timeout=1, retries={"max_attempts": 1}))
        return super().client(service, account, region, **options)


def test_disaster_needs_nothing_from_the_primary_region(estate: GlobalDatastore) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.DISASTER, phase=Phase.INSTANTIATE,
                           aws=_PrimaryRegionDown())
    assert drive(module, ctx, params)[-1].done
    drive(module, with_phase(ctx, Phase.ACTIVATE), params)
    group = estate.group(estate.west, estate.secondary)
    assert group is not None and group["Status"] == "available" and "GlobalReplicationGroupInfo" not in group
    assert module.start(with_phase(ctx, Phase.CLEANUP), params).done


def test_status(estate: GlobalDatastore) -> None:
    ctx, params = make_ctx(module, estate.params(), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    status = module.status(ctx, params)
    assert status["datastore"] == "available" and status["role"] == "SECONDARY"
    assert status["groupStatus"] == "available" and status["endpoint"].startswith(f"master.{estate.secondary}.")


@pytest.mark.parametrize("mode", [Mode.DRILL, Mode.PLANNED])
def test_estate_for_the_every_module_plan(sandbox, mode: Mode) -> None:  # type: ignore[no-untyped-def]
    built = estates.build(unique("plan"))
    for resource in built.resources:
        action = registry.get(resource["action"])
        assert action is not None
        ctx, params = make_ctx(action, resource["parameters"], mode=mode, phase=Phase.INSTANTIATE)
        for phase in (Phase.INSTANTIATE, Phase.ACTIVATE, Phase.CLEANUP, Phase.REPLICATE):
            drive(action, with_phase(ctx, phase), params)
            built.check(phase, mode)
