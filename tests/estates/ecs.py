"""ECS: the web service, running in the primary region and kept at 0 tasks in the recovery region."""

from __future__ import annotations

from typing import Any

from plans.model import Mode, Phase
from tests.conftest import APP_ACCOUNT, account_session
from tests.estates import Estate

PRIMARY_COUNT = 3


def _service(region: str, cluster: str, desired: int) -> Any:
    ecs = account_session(APP_ACCOUNT).client("ecs", region_name=region)
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(family="web", containerDefinitions=[{"name": "web", "image": "nginx",
                                                                       "memory": 128}])
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition="web", desiredCount=desired)
    return ecs


def build(prefix: str) -> Estate:
    cluster = f"{prefix}-web"
    recovery, primary = _service("us-west-2", cluster, 0), _service("us-east-1", cluster, PRIMARY_COUNT)
    resource = {"name": f"{prefix}-web", "action": "ecs.service",
                "parameters": {"cluster": cluster, "service": "web", "desiredCount": PRIMARY_COUNT,
                               "primaryCluster": cluster, "scaleDownPrimary": True}}

    def desired(client: Any) -> int:
        return int(client.describe_services(cluster=cluster, services=["web"])["services"][0]["desiredCount"])

    def check(phase: Phase, mode: Mode) -> None:
        in_recovery, in_primary = desired(recovery), desired(primary)
        if mode is Mode.DRILL:
            assert in_primary == PRIMARY_COUNT, "a drill changed the production service"
            expected = PRIMARY_COUNT if phase is Phase.ACTIVATE else 0
            assert in_recovery == expected, f"recovery service at {in_recovery} after {phase.value}"
            return
        if phase is Phase.INSTANTIATE:
            assert (in_recovery, in_primary) == (0, PRIMARY_COUNT)
        elif phase is Phase.ACTIVATE:
            assert (in_recovery, in_primary) == (PRIMARY_COUNT, PRIMARY_COUNT)
        else:  # CLEANUP of a real failover scales the old primary down (the plan asks for it)
            assert (in_recovery, in_primary) == (PRIMARY_COUNT, 0)

    return Estate(resources=[resource], check=check)
