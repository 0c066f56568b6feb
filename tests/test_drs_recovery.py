"""DRS recovery through the lifecycle: waves as a DAG, jobs within quotas, drill cleanup per execution."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import boto3
import pytest
from temporalio.common import SearchAttributeKey

from plans.model import Mode, Phase, Plan
from sandbox.drs.models import DrsWorld
from tests.conftest import APP_ACCOUNT, HUB_ACCOUNT, account_session
from tests.cli_helpers import cli_env, drctl, listed
from tests.lifecycle_helpers import finish, resource, start_run, status_of
from contracts.drs_recovery import DrsRecoveryState
from contracts.lifecycle import RunOptions, RunStatus, StepStatus

REGION = "us-west-2"
DR_STATUS = SearchAttributeKey.for_keyword("DrStatus")


def estate(world: DrsWorld, tiers: dict[str, int], app_tiers: dict[str, int] | None = None) -> str:
    """Servers tagged App=<unique>, Tier=<tier>: `tiers` in the hub account, `app_tiers` in the app account."""
    app = f"app-{uuid.uuid4().hex[:6]}"
    for account, counts in ((HUB_ACCOUNT, tiers), (APP_ACCOUNT, app_tiers or {})):
        for tier, count in counts.items():
            for n in range(count):
                world.add_source_server(account, REGION, f"{tier}-{n:03d}.{app}.example.com",
                                        tags={"App": app, "Tier": tier}, source_region="us-east-1")
    return app


def drs_plan(name: str, app: str, waves: list[dict[str, Any]], groups: dict[str, dict[str, Any]],
             cleanup: bool = True) -> Plan:
    resource = {"name": "servers", "action": "drs.recovery", "parameters": {"waves": waves}}
    phases: dict[str, Any] = {"ACTIVATE": {"layers": [{"name": "servers", "resources": [resource]}]}}
    if cleanup:
        phases["CLEANUP"] = {"layers": [{"name": "servers", "resources": [resource]}]}
    return Plan.model_validate({
        "name": name,
        "accounts": {"hub": {"id": HUB_ACCOUNT},
                     "app": {"id": APP_ACCOUNT, "roleName": "DrTarget", "externalId": {"value": "x-external"}}},
        "regions": {"primary": "us-east-1", "recovery": REGION},
        "defaults": {"account": "hub"},
        "protectionGroups": {g: {"selection": {"tags": {"App": app, **spec.pop("tags", {})}}, **spec}
                             for g, spec in groups.items()},
        "phases": phases,
    })


async def child_state(worker, run_id: str, phase: str) -> DrsRecoveryState:
    handle = worker.client.get_workflow_handle(f"{run_id}/{phase}/servers/servers")
    return await handle.query("status", result_type=DrsRecoveryState)


def jobs_of(client: Any, execution_id: str) -> list[dict[str, Any]]:
    items = [j for page in client.get_paginator("describe_jobs").paginate(filters={}) for j in page["items"]]
    return [j for j in items if j.get("tags", {}).get("dr:execution") == execution_id]


async def test_waves_follow_the_dag_across_accounts_and_a_drill_cleans_up_only_itself(worker, world):
    app = estate(world, {"db": 3, "app": 4}, {"web": 5})
    plan = drs_plan("drs-dag", app, waves=[
        {"name": "web", "protectionGroups": ["web"], "dependsOn": ["app"]},
        {"name": "db", "protectionGroups": ["db"]},
        {"name": "app", "protectionGroups": ["app"], "dependsOn": ["db"]},
    ], groups={"db": {"tags": {"Tier": "db"}}, "app": {"tags": {"Tier": "app"}},
               "web": {"tags": {"Tier": "web"}, "account": "app"}})
    # Another execution's drill of the db servers' neighbours, running at the same time, must survive our cleanup.
    other = boto3.client("drs", region_name=REGION)
    bystander = world.add_source_server(HUB_ACCOUNT, REGION, f"bystander.{app}.example.com")
    other_job = other.start_recovery(sourceServers=[{"sourceServerID": bystander}], isDrill=True,
                                     tags={"dr:execution": "someone-else"})["job"]

    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    result = await finish(handle)
    state = await status_of(handle)
    assert result.status is RunStatus.COMPLETED, result.message
    activate = resource(state, "ACTIVATE", "servers", "servers")
    assert activate.status is StepStatus.SUCCEEDED and activate.outputs["launched"] == 12
    assert activate.outputs["waves"] == {"web": "SUCCEEDED", "db": "SUCCEEDED", "app": "SUCCEEDED"}

    child = await child_state(worker, handle.id, "ACTIVATE")
    waves = {w.name: w for w in child.waves}
    assert waves["db"].ended_at <= waves["app"].started_at and waves["app"].ended_at <= waves["web"].started_at
    assert all(s.status.value == "LAUNCHED" and s.recovery_instance_id for s in child.servers.values())
    # Per server, the status query shows where it runs now and when it got there.
    assert all(s.ec2_instance_id and s.ec2_instance_id.startswith("i-") and s.private_ip and
               s.started_at <= s.ended_at for s in child.servers.values())
    # The DRS side agrees: one job per wave (per account), each created after its prerequisite's ended.
    hub_jobs = {j["tags"]["dr:wave"]: j for j in jobs_of(other, handle.id) if j["type"] == "LAUNCH"}
    app_drs = account_session(APP_ACCOUNT).client("drs", region_name=REGION)
    app_jobs = {j["tags"]["dr:wave"]: j for j in jobs_of(app_drs, handle.id) if j["type"] == "LAUNCH"}
    assert set(hub_jobs) == {"db", "app"} and set(app_jobs) == {"web"}
    assert hub_jobs["db"]["endDateTime"] <= hub_jobs["app"]["creationDateTime"]
    assert hub_jobs["app"]["endDateTime"] <= app_jobs["web"]["creationDateTime"]

    # CLEANUP: none of this execution's drill instances remain; the other execution's is untouched.
    cleanup = resource(state, "CLEANUP", "servers", "servers")
    assert cleanup.status is StepStatus.SUCCEEDED and "terminated 12 drill instance" in cleanup.message
    remaining = [r for client in (other, app_drs)
                 for r in client.describe_recovery_instances(filters={})["items"]]
    ours = {s.recovery_instance_id for s in child.servers.values()}
    assert not ours & {r["recoveryInstanceID"] for r in remaining}
    theirs = [r for r in remaining if r["jobID"] == other_job["jobID"]]
    assert len(theirs) == 1
    ec2 = boto3.client("ec2", region_name=REGION)
    assert ec2.describe_instances(InstanceIds=[theirs[0]["ec2InstanceID"]])["Reservations"][0]["Instances"][0][
        "State"]["Name"] == "running"


async def test_a_critical_failure_fails_its_wave_and_skips_its_dependants(worker, world):
    app = estate(world, {"db": 2, "app": 2})
    world.set_faults(launch_failures={f"db-001.{app}.example.com"})
    plan = drs_plan("drs-fail", app, waves=[
        {"name": "db", "protectionGroups": ["db"]},
        {"name": "app", "protectionGroups": ["app"], "dependsOn": ["db"]},
    ], groups={"db": {"tags": {"Tier": "db"}}, "app": {"tags": {"Tier": "app"}}}, cleanup=False)
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL,
                             options=RunOptions(phases=["ACTIVATE"]))
    with pytest.raises(Exception):
        await handle.result()
    state = await status_of(handle)
    # A critical server is not within any policy: the run fails, never PARTIAL.
    assert state.status is RunStatus.FAILED
    assert (await handle.describe()).typed_search_attributes.get(DR_STATUS) == "FAILED"
    servers = resource(state, "ACTIVATE", "servers", "servers")
    assert servers.status is StepStatus.FAILED
    assert "db-001" in servers.error and "1/2 launched" in servers.error  # partial success, named
    child = await child_state(worker, handle.id, "ACTIVATE")
    assert {w.name: w.status.value for w in child.waves} == {"db": "FAILED", "app": "SKIPPED"}
    assert {s.hostname.split(".")[0]: s.status.value for s in child.servers.values()} == {
        "db-000": "LAUNCHED", "db-001": "FAILED"}


async def test_optional_failures_within_the_threshold_end_the_run_partial(worker, world, temporal_env):
    app = estate(world, {"web": 4})
    world.set_faults(launch_failures={f"web-002.{app}.example.com"})
    plan = drs_plan("drs-optional", app, waves=[{"name": "web", "protectionGroups": ["web"], "maxFailedPercent": 25}],
                    groups={"web": {"tags": {"Tier": "web"}, "impact": "optional"}}, cleanup=False)
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL,
                             options=RunOptions(phases=["ACTIVATE"]))
    result = await finish(handle)
    # PARTIAL, not COMPLETED: the result, DrStatus and the message all say which server failed.
    assert result.status is RunStatus.PARTIAL
    assert (await handle.describe()).typed_search_attributes.get(DR_STATUS) == "PARTIAL"
    failed_server = f"web-002.{app}.example.com"
    assert result.message.startswith("drill of drs-optional partial: ACTIVATE/servers/servers: wave web: "
                                     f"1 optional server failed ({failed_server}: "), result.message
    assert result.failed_resources == [] and len(result.partial_resources) == 1
    state = await status_of(handle)
    servers = resource(state, "ACTIVATE", "servers", "servers")
    assert servers.status is StepStatus.PARTIAL and servers.error_type == "FailedWithinPolicy"
    assert servers.outputs["waves"] == {"web": "PARTIAL"} and servers.outputs["failed"] == 1
    assert "3/4 launched" in servers.message
    assert state.phase(Phase.ACTIVATE).status is StepStatus.PARTIAL

    # drctl shows it, and exits with the PARTIAL code (3): not 0 like COMPLETED, not 1 like FAILED.
    env = cli_env(temporal_env)
    (code, out, err), (status_code, table, _), rows = await asyncio.gather(
        drctl("drill", "watch", handle.id, env=env), drctl("drill", "status", handle.id, env=env),
        listed(env, "--plan", "drs-optional", "--status", "PARTIAL", expect=1))
    assert code == 3, err
    assert f"Run {handle.id}: PARTIAL" in out and failed_server in out
    assert [(r["workflow_id"], r["status"], r["execution_status"]) for r in rows] == [
        (handle.id, "PARTIAL", "COMPLETED")]  # Temporal's own status stays Completed
    assert status_code == 0 and "◐ PARTIAL" in table and "drill of drs-optional partial: ACTIVATE" in table


THIRD_ACCOUNT = "333333333333"
SCALE_WAVES = [  # (wave, account, servers, depends on): 1,000 servers; the hub's web waves together exceed 500
    ("db-hub", "hub", 100, []), ("db-app", "app", 50, []), ("db-third", "third", 50, []),
    ("app-hub", "hub", 100, ["db-hub"]), ("app-app", "app", 50, ["db-app"]), ("app-third", "third", 50, ["db-third"]),
    # The hub's three web waves become ready together: 550 servers against a quota of 500 in active jobs.
    ("web-hub-1", "hub", 200, ["app-hub"]), ("web-hub-2", "hub", 200, ["app-hub"]),
    ("web-hub-3", "hub", 150, ["app-hub"]), ("web-app", "app", 50, ["app-app", "app-third"]),
]


async def test_a_thousand_servers_in_ten_waves_across_three_accounts(worker, world, capsys):
    world.time_scale = 10
    # Each job lasts about 4 s instead of 1: five web jobs must be running together for the quota to fill, and on
    # a loaded machine (parallel test files) starting them took longer than a whole 1-second job.
    world.set_durations(launch=30.0)
    ids = {"hub": HUB_ACCOUNT, "app": APP_ACCOUNT, "third": THIRD_ACCOUNT}
    app = f"scale-{uuid.uuid4().hex[:6]}"
    for wave, account, count, _ in SCALE_WAVES:
        for n in range(count):
            world.add_source_server(ids[account], REGION, f"{wave}-{n:03d}.{app}.example.com",
                                    tags={"App": app, "Wave": wave}, source_region="us-east-1")
    drs_resource = {"name": "servers", "action": "drs.recovery", "parameters": {"waves": [
        {"name": w, "protectionGroups": [w], "dependsOn": deps} for w, _, _, deps in SCALE_WAVES]}}
    plan = Plan.model_validate({
        "name": "drs-scale",
        "accounts": {"hub": {"id": HUB_ACCOUNT},
                     "app": {"id": APP_ACCOUNT, "roleName": "DrTarget", "externalId": {"value": "x-external"}},
                     "third": {"id": THIRD_ACCOUNT, "roleName": "DrTarget", "externalId": {"value": "y-external"}}},
        "regions": {"primary": "us-east-1", "recovery": REGION},
        "defaults": {"account": "hub"},
        "protectionGroups": {w: {"account": a, "selection": {"tags": {"App": app, "Wave": w}}}
                             for w, a, _, _ in SCALE_WAVES},
        "phases": {"ACTIVATE": {"layers": [{"name": "servers", "resources": [drs_resource]}]}},
    })
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    result = await finish(handle)
    assert result.status is RunStatus.COMPLETED, result.message
    servers = resource(await status_of(handle), "ACTIVATE", "servers", "servers")
    assert servers.outputs["launched"] == 1000 and servers.outputs["failed"] == 0

    # From DRS's own records: every job of a wave was created after every job of its prerequisites ended, and no
    # account ever had more servers in active jobs than its quota.
    jobs: list[dict[str, Any]] = []
    for account in ids.values():
        client = boto3.client("drs", region_name=REGION) if account == HUB_ACCOUNT else \
            account_session(account).client("drs", region_name=REGION)
        jobs += [dict(j, account=account) for j in jobs_of(client, handle.id)]
    by_wave: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_wave.setdefault(job["tags"]["dr:wave"], []).append(job)
    for wave, _, count, deps in SCALE_WAVES:
        assert sum(len(j["participatingServers"]) for j in by_wave[wave]) == count
        for dep in deps:
            assert max(j["endDateTime"] for j in by_wave[dep]) <= min(j["creationDateTime"] for j in by_wave[wave])
    peak: dict[str, int] = {}
    for account in ids.values():
        edges = sorted([(j["creationDateTime"], len(j["participatingServers"])) for j in jobs
                        if j["account"] == account] + [(j["endDateTime"], -len(j["participatingServers"]))
                                                       for j in jobs if j["account"] == account],
                       key=lambda e: (e[0], e[1]))
        level = 0
        for _, delta in edges:
            level += delta
            peak[account] = max(peak.get(account, 0), level)
    assert peak[HUB_ACCOUNT] == 500, peak  # the quota was filled, and the 6th job of the web waves waited its turn
    assert all(p <= 500 for p in peak.values()), peak
    quota_errors = world.errors_returned.get("ServiceQuotaExceededException", 0)
    conflicts = world.errors_returned.get("ConflictException", 0)
    assert quota_errors == 0 and conflicts == 0

    parent_events = len((await handle.fetch_history()).events)
    child = worker.client.get_workflow_handle(f"{handle.id}/ACTIVATE/servers/servers")
    child_events = len((await child.fetch_history()).events)
    assert parent_events < 10_000 and child_events < 10_000
    with capsys.disabled():
        print(f"\n  1,000 servers / 10 waves / 3 accounts: {len(jobs)} DRS jobs, quota errors {quota_errors}, "
              f"conflicts {conflicts}, peak servers in active jobs per account {peak}, history events: "
              f"lifecycle {parent_events}, DRS child {child_events}")


async def test_failback_recovers_the_reversed_servers_into_the_original_region(worker, world):
    app = estate(world, {"app": 3})
    waves = [{"name": "app", "protectionGroups": ["app"]}]
    resource = {"name": "servers", "action": "drs.recovery", "parameters": {"waves": waves}}
    layers = {"layers": [{"name": "servers", "resources": [resource]}]}
    base = drs_plan("failback", app, waves=waves, groups={"app": {"tags": {"Tier": "app"}}}, cleanup=False)
    plan = base.model_validate({**base.model_dump(by_alias=True, mode="json"),
                                "phases": {"ACTIVATE": layers, "REPLICATE": layers}})
    # A real failover to us-west-2, then REPLICATE reverses replication towards us-east-1.
    failover = await start_run(worker.client, worker.task_queue, plan, mode=Mode.PLANNED)
    assert (await finish(failover)).status is RunStatus.COMPLETED
    replicate = resource_of(await status_of(failover), "REPLICATE")
    assert "reverse replication started for 3 server(s)" in replicate.message

    # The failback recovers the reversed servers in us-east-1, selected by the same plan.
    back = await start_run(worker.client, worker.task_queue, plan, mode=Mode.FAILBACK,
                           options=RunOptions(phases=["ACTIVATE"]))
    assert (await finish(back)).status is RunStatus.COMPLETED
    east = boto3.client("drs", region_name="us-east-1")
    jobs = [j for j in jobs_of(east, back.id) if j["type"] == "LAUNCH"]
    assert len(jobs) == 1 and len(jobs[0]["participatingServers"]) == 3
    assert {p["launchStatus"] for p in jobs[0]["participatingServers"]} == {"LAUNCHED"}
    child = await child_state(worker, back.id, "ACTIVATE")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    instances = ec2.describe_instances(InstanceIds=[s.ec2_instance_id for s in child.servers.values()])
    assert [i["State"]["Name"] for r in instances["Reservations"] for i in r["Instances"]] == ["running"] * 3
    assert not jobs_of(boto3.client("drs", region_name=REGION), back.id)  # nothing launched in us-west-2


def resource_of(state: Any, phase: str) -> Any:
    return resource(state, phase, "servers", "servers")


async def test_a_server_in_another_runs_active_job_is_named_not_launched(worker, world):
    app = estate(world, {"db": 2})
    drs = boto3.client("drs", region_name=REGION)
    servers = [s for s in drs.describe_source_servers(filters={})["items"] if s["tags"].get("App") == app]
    busy = sorted(servers, key=lambda s: s["sourceServerID"])[0]
    world.set_durations(pending=3600)  # the other run's job stays active throughout
    other = drs.start_recovery(sourceServers=[{"sourceServerID": busy["sourceServerID"]}], isDrill=True,
                               tags={"dr:execution": "dr-other-run"})["job"]
    world.set_durations(pending=1)
    plan = drs_plan("drs-busy", app, waves=[{"name": "db", "protectionGroups": ["db"]}],
                    groups={"db": {"tags": {"Tier": "db"}}}, cleanup=False)
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL,
                             options=RunOptions(phases=["ACTIVATE"]))
    with pytest.raises(Exception):
        await handle.result()
    child = await child_state(worker, handle.id, "ACTIVATE")
    record = child.servers[busy["sourceServerID"]]
    assert record.status.value == "NOT_RECOVERABLE"
    assert record.detail == f"in active DRS job {other['jobID']} (execution dr-other-run)"
    assert world.errors_returned.get("ConflictException", 0) == 0  # named up front, never collided
