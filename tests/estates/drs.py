"""DRS: a few replicating source servers in the application account, recovered in two waves."""

from __future__ import annotations

from typing import Any

from plans.model import Mode, Phase
from sandbox.drs.models import drs_world
from tests.conftest import APP_ACCOUNT, account_session
from tests.estates import Estate

RECOVERY = "us-west-2"


def build(prefix: str) -> Estate:
    world = drs_world()
    servers = {tier: [world.add_source_server(APP_ACCOUNT, RECOVERY, f"{tier}-{n}.{prefix}.example.com",
                                              tags={"App": prefix, "Tier": tier}, source_region="us-east-1")
                      for n in range(count)]
               for tier, count in (("db", 2), ("app", 3))}
    every = [s for ids in servers.values() for s in ids]
    groups = {f"{prefix}-{tier}": {"account": "app", "selection": {"tags": {"App": prefix, "Tier": tier}}}
              for tier in servers}
    resource = {"name": f"{prefix}-servers", "action": "drs.recovery", "parameters": {"waves": [
        {"name": "db", "protectionGroups": [f"{prefix}-db"]},
        {"name": "app", "protectionGroups": [f"{prefix}-app"], "dependsOn": ["db"]},
    ]}}

    def check(phase: Phase, mode: Mode) -> None:
        drs = account_session(APP_ACCOUNT).client("drs", region_name=RECOVERY)
        source = {s["sourceServerID"]: s for s in drs.describe_source_servers(
            filters={"sourceServerIDs": every})["items"]}
        assert len(source) == len(every)
        instances = _recovery_instances(drs, every)
        if phase is Phase.INSTANTIATE:
            assert not instances, "INSTANTIATE launched recovery instances"
        if phase is Phase.ACTIVATE:
            assert sorted(instances) == sorted(every), f"launched {len(instances)} of {len(every)}"
            assert all(i["isDrill"] is (mode is Mode.DRILL) for i in instances.values())
        if mode is Mode.DRILL:
            # A drill never disturbs replication of the production servers.
            assert all(s["dataReplicationInfo"]["dataReplicationState"] == "CONTINUOUS" for s in source.values())
            if phase in (Phase.CLEANUP, Phase.REPLICATE):
                assert not instances, f"drill instances left after {phase.value}: {sorted(instances)}"

    return Estate(resources=[resource], check=check, protection_groups=groups)


def _recovery_instances(drs: Any, source_ids: list[str]) -> dict[str, dict[str, Any]]:
    pages = drs.get_paginator("describe_recovery_instances").paginate(filters={"sourceServerIDs": source_ids})
    return {i["sourceServerID"]: i for page in pages for i in page["items"]}
