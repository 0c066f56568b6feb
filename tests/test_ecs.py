"""ecs.service on the sandbox: what a drill changes and puts back, and what a real failover does."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.ecs import EcsService
from plans.model import Mode, Phase
from tests.aws_helpers import PRIMARY_REGION, RECOVERY_REGION, drive, make_ctx, unique, with_phase
from tests.conftest import APP_ACCOUNT, account_session

module = EcsService()


def _service(region: str, cluster: str, desired: int) -> Any:
    ecs = account_session(APP_ACCOUNT).client("ecs", region_name=region)
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(family="web", containerDefinitions=[{"name": "web", "image": "nginx",
                                                                       "memory": 128}])
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition="web", desiredCount=desired)
    return ecs


def _desired(ecs: Any, cluster: str) -> int:
    return int(ecs.describe_services(cluster=cluster, services=["web"])["services"][0]["desiredCount"])


def test_drill_scales_up_then_cleanup_restores_the_previous_count(sandbox):
    cluster = unique("west")
    west = _service(RECOVERY_REGION, cluster, desired=1)
    params = {"cluster": cluster, "service": "web", "desiredCount": 4}
    ctx, parsed = make_ctx(module, params, mode=Mode.DRILL, phase=Phase.ACTIVATE)
    steps = drive(module, ctx, parsed)
    assert steps[-1].done and steps[-1].outputs["runningCount"] == 4 and _desired(west, cluster) == 4
    drive(module, ctx, parsed)  # a retried ACTIVATE must not record 4 as "the count before"
    drive(module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert _desired(west, cluster) == 1
    tags = west.describe_services(cluster=cluster, services=["web"], include=["TAGS"])["services"][0].get("tags", [])
    assert not [t for t in tags if t["key"].startswith("dr:previous-desired-count:")]
    # CLEANUP again (a retry): nothing left to restore, nothing changes.
    assert "nothing this drill changed" in drive(module, with_phase(ctx, Phase.CLEANUP), parsed)[-1].message


def test_real_failover_scales_up_and_cleanup_scales_the_old_primary_down_when_asked(sandbox):
    west_cluster, east_cluster = unique("west"), unique("east")
    west = _service(RECOVERY_REGION, west_cluster, desired=0)
    east = _service(PRIMARY_REGION, east_cluster, desired=5)
    params = {"cluster": west_cluster, "service": "web", "desiredCount": 5, "primaryCluster": east_cluster,
              "scaleDownPrimary": True}
    ctx, parsed = make_ctx(module, params, mode=Mode.PLANNED, phase=Phase.ACTIVATE)
    drive(module, ctx, parsed)
    assert _desired(west, west_cluster) == 5 and _desired(east, east_cluster) == 5
    drive(module, with_phase(ctx, Phase.CLEANUP), parsed)
    assert _desired(east, east_cluster) == 0 and _desired(west, west_cluster) == 5


def test_a_missing_service_is_a_clear_permanent_error(sandbox):
    ctx, parsed = make_ctx(module, {"cluster": unique("none"), "service": "web", "desiredCount": 1},
                           mode=Mode.DRILL, phase=Phase.INSTANTIATE)
    with pytest.raises(ApplicationError) as failure:
        module.start(ctx, parsed)
    assert failure.value.non_retryable and "not found" in failure.value.message
