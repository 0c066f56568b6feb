"""memorydb.cluster on the sandbox: a multi-region cluster (members in us-east-1 and us-west-2) and snapshot restores
in us-west-2, in the app account, reached through the orchestrator's role."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from pydantic import ValidationError
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
from tests.estates import memorydb as estates
from tests.estates.memorydb import MemoryDbEstate

module = registry.get("memorydb.cluster")
assert module is not None


@pytest.fixture
def estate(sandbox) -> MemoryDbEstate:  # type: ignore[no-untyped-def]
    return estates.seed(unique("mdb"))


def _tags(estate: MemoryDbEstate, arn: str) -> list[dict[str, str]]:
    return list(estate.west.list_tags(ResourceArn=arn)["TagList"])


@pytest.mark.parametrize("mode", [Mode.DRILL, Mode.PLANNED, Mode.DISASTER])
def test_multi_region_activate_reports_the_recovery_endpoint_and_changes_nothing(
    estate: MemoryDbEstate, mode: Mode
) -> None:
    ctx, params = make_ctx(module, estate.multi_region_params(), mode=mode, phase=Phase.ACTIVATE)
    west = ctx.client("memorydb", region=RECOVERY_REGION)
    with count_calls(west.meta.events, "memorydb", "CreateCluster") as creates, count_calls(
        west.meta.events, "memorydb", "UpdateCluster"
    ) as updates:
        operation = drive(module, ctx, params)[-1]
    assert len(creates) == 0 and len(updates) == 0
    member = estate.cluster(estate.west, estate.west_member)
    assert member is not None
    assert operation.outputs["cluster"] == estate.west_member and operation.outputs["region"] == RECOVERY_REGION
    assert operation.outputs["endpointAddress"] == member["ClusterEndpoint"]["Address"]
    assert operation.outputs["endpoint"] == f"{member['ClusterEndpoint']['Address']}:6379"
    assert estate.members() == {estate.east_member: "available", estate.west_member: "available"}

    replicate = drive(module, with_phase(ctx, Phase.REPLICATE), params)[-1]
    if mode is Mode.DRILL:
        assert "cluster" not in replicate.outputs
    else:  # the primary region's member is verified, not changed
        assert replicate.outputs["cluster"] == estate.east_member and replicate.outputs["status"] == "available"


class _PrimaryRegionDown(AwsClients):
    """The primary region does not answer: its MemoryDB client points at a closed port, as in a regional outage."""

    def client(self, service: str, account: Account, region: str, **options: Any) -> Any:
        if service == "memorydb" and region == "us-east-1":
            creds = self.session_for(account).get_credentials().get_frozen_credentials()
            return boto3.client(service, region_name=region, endpoint_url="http://127.0.0.1:9",
                                aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
                                aws_session_token=creds.token,
                                config=Config(connect_timeout=1, retries={"max_attempts": 1}))
        return super().client(service, account, region, **options)


def test_multi_region_disaster_needs_nothing_from_the_primary_region(estate: MemoryDbEstate) -> None:
    ctx, params = make_ctx(module, estate.multi_region_params(), mode=Mode.DISASTER, phase=Phase.INSTANTIATE,
                           aws=_PrimaryRegionDown())
    assert drive(module, ctx, params)[-1].done
    assert drive(module, with_phase(ctx, Phase.ACTIVATE), params)[-1].outputs["cluster"] == estate.west_member
    with pytest.raises(Exception) as error:  # REPLICATE waits for the region: Temporal retries it
        module.start(with_phase(ctx, Phase.REPLICATE), params)
    assert not isinstance(error.value, ApplicationError)


def test_multi_region_waits_for_a_member_still_creating(estate: MemoryDbEstate) -> None:
    late = f"{estate.west_member}-2"
    estate.west.delete_cluster(ClusterName=estate.west_member)
    estate.west.create_cluster(ClusterName=late, NodeType=estates.NODE_TYPE, ACLName="open-access",
                               MultiRegionClusterName=estate.multi_region)
    ctx, params = make_ctx(module, estate.multi_region_params(clusterName=late), mode=Mode.PLANNED,
                           phase=Phase.INSTANTIATE)
    steps = drive(module, ctx, params)
    assert not steps[0].done and steps[-1].done and steps[-1].outputs["status"] == "available"


def test_multi_region_errors_are_clear_and_permanent(estate: MemoryDbEstate) -> None:
    ctx, params = make_ctx(module, estate.multi_region_params(multiRegionClusterName="xxxxx-absent"),
                           mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "MultiRegionClusterNotFound" and error.value.non_retryable
    assert "xxxxx-absent" in str(error.value)

    ctx, params = make_ctx(module, estate.multi_region_params(clusterName="stranger"), mode=Mode.DRILL,
                           phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "NotAMember" and error.value.non_retryable


def test_parameters_name_one_method() -> None:
    with pytest.raises(ValidationError):
        module.Parameters.model_validate({"method": "multi-region", "clusterName": "a"})
    with pytest.raises(ValidationError):
        module.Parameters.model_validate({"method": "snapshot-restore", "clusterName": "a", "snapshotName": "s",
                                          "sourceClusterName": "b"})


def test_real_restore_from_the_latest_snapshot_is_kept(estate: MemoryDbEstate) -> None:
    ctx, params = make_ctx(module, estate.restore_params(), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    assert module.start(ctx, params).outputs == {"snapshot": estate.snapshots[-1]}

    activate = with_phase(ctx, Phase.ACTIVATE)
    steps = drive(module, activate, params)
    assert not steps[0].done and steps[0].outputs["snapshot"] == estate.snapshots[-1]
    restored = estate.cluster(estate.west, estate.restored)
    assert restored is not None and restored["Status"] == "available"
    assert restored["NodeType"] == "db.r6g.large"  # the snapshot's
    assert {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} in _tags(estate, restored["ARN"])
    assert steps[-1].outputs["endpoint"] == f"{restored['ClusterEndpoint']['Address']}:6379"

    west = ctx.client("memorydb", region=RECOVERY_REGION)
    with count_calls(west.meta.events, "memorydb", "CreateCluster") as creates:
        assert module.start(activate, params).done
    assert len(creates) == 0

    for phase in (Phase.CLEANUP, Phase.REPLICATE):
        assert module.start(with_phase(ctx, phase), params).done
    assert estate.cluster(estate.west, estate.restored) is not None


def test_drill_restores_under_a_drill_name_and_cleanup_deletes_it(estate: MemoryDbEstate) -> None:
    parameters = estate.restore_params(sourceClusterName=None, snapshotName=estate.snapshots[0],
                                       nodeType="db.r7g.large")
    ctx, params = make_ctx(module, parameters, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    done = drive(module, ctx, params)[-1]
    drill_name = f"{estate.restored}-drill-{ctx.drill_suffix()}"
    assert done.outputs["cluster"] == drill_name
    drill = estate.cluster(estate.west, drill_name)
    assert drill is not None and drill["Status"] == "available" and drill["NodeType"] == "db.r7g.large"
    assert {"Key": TAG_EXECUTION, "Value": ctx.call.execution_id} in _tags(estate, drill["ARN"])
    assert estate.cluster(estate.west, estate.restored) is None

    cleanup = with_phase(ctx, Phase.CLEANUP)
    drive(module, cleanup, params)
    assert estate.cluster(estate.west, drill_name) is None
    source = estate.cluster(estate.west, estate.source)
    assert source is not None and source["Status"] == "available"
    assert module.start(cleanup, params).done  # again: nothing left


def test_restore_errors_are_clear_and_permanent(estate: MemoryDbEstate) -> None:
    ctx, params = make_ctx(module, estate.restore_params(sourceClusterName=None, snapshotName="absent-snapshot"),
                           mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "SnapshotNotFound" and "absent-snapshot" in str(error.value)
    assert error.value.non_retryable

    # A cluster under the target name that this execution did not create is neither adopted nor deleted.
    ctx, params = make_ctx(module, estate.restore_params(clusterName=estate.source), mode=Mode.PLANNED,
                           phase=Phase.ACTIVATE)
    with pytest.raises(ApplicationError) as error:
        module.start(ctx, params)
    assert error.value.type == "NotOurs"


def test_status(estate: MemoryDbEstate) -> None:
    ctx, params = make_ctx(module, estate.multi_region_params(), mode=Mode.PLANNED, phase=Phase.INSTANTIATE)
    status = module.status(ctx, params)
    assert status["exists"] and status["status"] == "available" and status["endpoint"].endswith(":6379")


@pytest.mark.parametrize("mode", [Mode.DRILL, Mode.PLANNED])
def test_estate_for_the_every_module_plan(sandbox, mode: Mode) -> None:  # type: ignore[no-untyped-def]
    built = estates.build(unique("plan"))
    contexts = []
    for resource in built.resources:
        action = registry.get(resource["action"])
        assert action is not None
        contexts.append((action, *make_ctx(action, resource["parameters"], mode=mode, phase=Phase.INSTANTIATE)))
    for phase in (Phase.INSTANTIATE, Phase.ACTIVATE, Phase.CLEANUP, Phase.REPLICATE):
        for action, ctx, params in contexts:
            drive(action, with_phase(ctx, phase), params)
        built.check(phase, mode)
