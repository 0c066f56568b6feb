"""A drill never leaves anything behind (issue 13 item 3): a failed or cancelled drill cleans up what it created
unless told to keep it, and `drctl drill cleanup` removes what an earlier drill left. Leftovers are counted in the
sandbox with boto3: live DRS drill instances launched by the run's tagged jobs, and RDS drill copies."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowFailureError

from contracts.lifecycle import LifecycleInput, RunOptions, RunStatus, StepStatus
from plans.model import Mode, Phase, Plan
from tests.cli_helpers import cli_env, drctl
from tests.conftest import HUB_ACCOUNT
from tests.lifecycle_helpers import INITIATOR, control, make_plan, send, start_run, status_of
from tests.lifecycle_helpers import wait_resource, wait_until
from tests.test_drs_recovery import REGION, estate as drs_estate, jobs_of
from tests.test_lifecycle_aws import Estate


def live_drill_instances(execution_id: str) -> list[str]:
    """The recovery instances launched by `execution_id`'s jobs in the hub account that are not terminated."""
    drs = boto3.client("drs", region_name=REGION)
    ours = {j["jobID"] for j in jobs_of(drs, execution_id) if j["type"] == "LAUNCH"}
    items = [i for page in drs.get_paginator("describe_recovery_instances").paginate(filters={})
             for i in page["items"]]
    return [i["recoveryInstanceID"] for i in items if i.get("jobID") in ours and i.get("isDrill")
            and (i.get("ec2InstanceState") or "").upper() not in ("TERMINATED", "SHUTTING-DOWN")]


def drs_layer(app_waves: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "servers", "resources": [{"name": "servers", "action": "drs.recovery", "account": "hub",
                                              "parameters": {"waves": app_waves}}]}


TWO_WAVES = [{"name": "db", "protectionGroups": ["db"]},
             {"name": "app", "protectionGroups": ["app"], "dependsOn": ["db"]}]


def drs_plan(name: str, app: str, defaults: dict[str, Any] | None = None, **phases: list[dict[str, Any]]) -> Plan:
    """DRS servers of the hub account (groups db and app of `app`), with the given phases' layers."""
    return make_plan(phases, name=name, defaults=defaults or {}, protectionGroups={
        tier: {"account": "hub", "selection": {"tags": {"App": app, "Tier": tier}}} for tier in ("db", "app")})


def three_tier(rds: Estate, app: str, name: str) -> Plan:
    """The example plan's database (a drill copies it) and DRS servers, in ACTIVATE and CLEANUP."""
    data = rds.plan(name).model_dump(by_alias=True, mode="json")
    database = data["phases"]["ACTIVATE"]["layers"][0]
    assert database["name"] == "database"
    data["accounts"]["hub"] = {"id": HUB_ACCOUNT}
    data["protectionGroups"] = {tier: {"account": "hub", "selection": {"tags": {"App": app, "Tier": tier}}}
                                for tier in ("db", "app")}
    data["phases"] = {"ACTIVATE": {"layers": [database, drs_layer(TWO_WAVES)]},
                      "CLEANUP": {"layers": [{**database, "name": "drill-artefacts"}, drs_layer(TWO_WAVES)]}}
    return Plan.model_validate(data)


@pytest.fixture
def rds(sandbox) -> Estate:  # type: ignore[no-untyped-def]
    return Estate()


async def test_a_drill_that_fails_in_activate_removes_its_instances_and_copies(worker, world, rds):
    app = drs_estate(world, {"db": 2, "app": 2})
    world.set_faults(launch_failures={f"db-001.{app}.example.com"})  # critical: the db wave fails, app never starts
    handle = await start_run(worker.client, worker.task_queue, three_tier(rds, app, "fails-cleans"))
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    state = await status_of(handle)
    assert state.status is RunStatus.FAILED
    assert state.error and state.error.startswith("phase ACTIVATE failed: ACTIVATE/servers/servers: ")
    assert (f"; cleanup after failure: drill-artefacts/orders-db: deleted 2 RDS drill artefact(s) of {handle.id}: "
            "drill copy ") in state.error
    assert "; servers/servers: terminated 1 drill instance(s) of this execution in 1 TERMINATE job(s): " in state.error
    assert [p.status for p in state.phases] == [StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SUCCEEDED,
                                                StepStatus.SKIPPED]
    assert live_drill_instances(handle.id) == []
    assert set(rds.instances("us-west-2")) == {rds.replica}  # the drill copy is gone, the replica stays


async def test_keep_on_failure_keeps_them_and_a_cleanup_run_removes_them_later(worker, world, rds):
    app = drs_estate(world, {"db": 2, "app": 2})
    world.set_faults(launch_failures={f"db-001.{app}.example.com"})
    plan = three_tier(rds, app, "fails-keeps")
    handle = await start_run(worker.client, worker.task_queue, plan, options=RunOptions(keep_on_failure=True))
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    state = await status_of(handle)
    assert state.status is RunStatus.FAILED and state.error
    assert ("; nothing was cleaned up after failure: kept for diagnosis, as the operator's keep_on_failure "
            "(--keep-on-failure) asks: the artefacts of ACTIVATE database/orders-db, servers/servers "
            "(1 DRS instance(s) launched) stay up") in state.error
    assert state.phase(Phase.CLEANUP).status is StepStatus.SKIPPED
    kept = live_drill_instances(handle.id)
    assert len(kept) == 1 and len(rds.instances("us-west-2")) == 2

    # A cleanup run of that execution (what `drctl drill cleanup` starts) removes exactly those.
    cleanup = await start_run(worker.client, worker.task_queue, plan, options=RunOptions(
        phases=["CLEANUP"], cleanup_of=handle.id))
    result = await cleanup.result()
    assert result.status is RunStatus.COMPLETED, result.message
    done = await status_of(cleanup)
    messages = [r.message for layer in done.phases[0].layers for r in layer.resources]
    assert messages[0].startswith(f"deleted 2 RDS drill artefact(s) of {handle.id}: drill copy ")
    assert messages[1] == f"terminated 1 drill instance(s) of {handle.id} in 1 TERMINATE job(s): {kept[0]}"
    assert live_drill_instances(handle.id) == []
    assert set(rds.instances("us-west-2")) == {rds.replica}


async def test_a_temporal_cancel_mid_launch_cleans_up_what_was_launched(worker, world):
    world.set_durations(launch=120.0)  # the db job lasts ~3 s: cancelled while it runs, it launches afterwards
    app = drs_estate(world, {"db": 3, "app": 2})
    plan = drs_plan("cancel-cleans", app, ACTIVATE=[drs_layer(TWO_WAVES)], CLEANUP=[drs_layer(TWO_WAVES)])
    handle = await start_run(worker.client, worker.task_queue, plan)
    drs = boto3.client("drs", region_name=REGION)
    await wait_until(handle, lambda _: bool(jobs_of(drs, handle.id)), timeout=30)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    state = await status_of(handle)
    assert state.status is RunStatus.CANCELLED
    assert state.error and state.error.startswith("cancelled through Temporal; cleanup after cancel: servers/servers: "
                                                  "terminated 3 drill instance(s) of this execution in 1 TERMINATE "
                                                  "job(s), after waiting for 1 of its LAUNCH job(s) still running: "
                                                  ), state.error
    assert state.phases[1].layers[0].resources[0].status is StepStatus.CANCELLED
    assert live_drill_instances(handle.id) == []


async def test_a_forced_cancel_mid_launch_ends_cancelled_and_cleans_up(worker, world):
    world.set_durations(launch=120.0)  # the db job lasts ~3 s: the forced cancel stops its watch, DRS goes on
    app = drs_estate(world, {"db": 2, "app": 2})
    plan = drs_plan("forced-cleans", app, ACTIVATE=[drs_layer(TWO_WAVES)], CLEANUP=[drs_layer(TWO_WAVES)])
    handle = await start_run(worker.client, worker.task_queue, plan)
    drs = boto3.client("drs", region_name=REGION)
    await wait_until(handle, lambda _: bool(jobs_of(drs, handle.id)), timeout=30)
    assert (await send(handle, "cancel", control(force=True, reason="abort"))).accepted
    result = await handle.result()
    assert result.status is RunStatus.CANCELLED
    assert result.message.startswith("cancelled by operator; cleanup after cancel: servers/servers: terminated 2 "
                                     "drill instance(s) of this execution in 1 TERMINATE job(s), after waiting for 1 "
                                     "of its LAUNCH job(s) still running: "), result.message
    state = await status_of(handle)
    activate = state.phases[1].layers[0].resources[0]
    assert (activate.status, activate.message) == (
        StepStatus.CANCELLED, "cancelled; the DRS jobs it started may still be running")
    assert live_drill_instances(handle.id) == []


async def test_an_operator_cancel_cleans_up_and_phases_without_cleanup_are_respected(worker, world):
    world.set_durations(launch=40.0)  # each wave's job ~1 s: the cancel comes while ACTIVATE runs
    plans = [drs_plan("op-cancel", drs_estate(world, {"db": 2, "app": 2}), defaults={"keepDrillOnFailure": n == 2},
                      ACTIVATE=[drs_layer(TWO_WAVES)], CLEANUP=[drs_layer(TWO_WAVES)]) for n in range(3)]
    kept = await start_run(worker.client, worker.task_queue, plans[0], options=RunOptions(phases=["ACTIVATE"]))
    cleaned = await start_run(worker.client, worker.task_queue, plans[1])
    by_plan = await start_run(worker.client, worker.task_queue, plans[2])
    drs = boto3.client("drs", region_name=REGION)
    for handle in (kept, cleaned, by_plan):
        await wait_until(handle, lambda _: bool(jobs_of(drs, handle.id)), timeout=30)
        answer = await send(handle, "cancel", control(reason="drill window closed"))
        assert answer.accepted
    outcomes = {}
    for handle in (kept, cleaned, by_plan):
        result = await handle.result()
        assert result.status is RunStatus.CANCELLED
        outcomes[handle.id] = result.message
    # The cancel lets the launch in flight finish (the whole DRS recovery), then cleans up all 4 instances.
    assert outcomes[cleaned.id].startswith("cancelled by operator; cleanup after cancel: servers/servers: terminated "
                                           "4 drill instance(s)"), outcomes[cleaned.id]
    assert live_drill_instances(cleaned.id) == []
    assert outcomes[kept.id] == (
        "cancelled by operator; no cleanup after cancel: the run's phases leave out CLEANUP, as the operator chose: "
        "the artefacts of ACTIVATE servers/servers (4 DRS instance(s) launched) stay up "
        f"(`drctl drill cleanup {kept.id}` removes them)")
    assert len(live_drill_instances(kept.id)) == 4
    assert outcomes[by_plan.id].startswith(
        "cancelled by operator; nothing was cleaned up after cancel: kept for diagnosis, as the plan's "
        "defaults.keepDrillOnFailure asks: the artefacts of ACTIVATE servers/servers (4 DRS instance(s) launched) "
        "stay up"), outcomes[by_plan.id]
    assert len(live_drill_instances(by_plan.id)) == 4


async def test_drill_start_takes_keep_on_failure_for_drills_only(temporal_env, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("w")]}]}, name="keep-cli")
                    .model_dump_json(by_alias=True))
    code, out, err = await drctl("drill", "start", str(plan), "--mode", "planned", "--keep-on-failure",
                                 env=cli_env(temporal_env))
    assert (code, out) == (2, "") and err == ("error: --keep-on-failure / --clean-up-on-failure are for drills: a "
                                              "real failover never cleans up on its own\n")


async def test_drctl_cleanup_removes_what_a_terminated_drill_left(worker, world, temporal_env):
    env = cli_env(temporal_env)
    app = drs_estate(world, {"db": 2, "app": 2})
    # After the servers, ACTIVATE waits: the run is terminated there, its instances up, its CLEANUP never run.
    plan = drs_plan("killed", app, ACTIVATE=[drs_layer(TWO_WAVES), {"name": "soak", "resources": [
        wait_resource("soak", 600)]}], CLEANUP=[drs_layer(TWO_WAVES)])
    handle = await start_run(worker.client, worker.task_queue, plan)
    await wait_until(handle, lambda s: s.phases[1].layers[1].status is StepStatus.RUNNING)

    code, out, err = await drctl("drill", "cleanup", handle.id, env=env)
    assert code == 1 and "is still running: a cleanup now would pull its drill instances from under it" in err, err
    assert "Traceback" not in err

    await handle.terminate(reason="worker host lost")
    kept = live_drill_instances(handle.id)
    assert len(kept) == 4
    code, out, err = await drctl("drill", "cleanup", handle.id, "--wait", env=env)
    assert code == 0, out + err
    cleanup_id = out.splitlines()[0]
    assert f"Run {cleanup_id}: COMPLETED" in out and "Traceback" not in err
    removed = next(line for line in out.splitlines() if line.startswith("  servers/servers: SUCCEEDED: "))
    assert removed.startswith(f"  servers/servers: SUCCEEDED: terminated 4 drill instance(s) of {handle.id} in 1 "
                              "TERMINATE job(s): "), out
    assert set(removed.split("): ")[1].split(", ")) == set(kept)
    assert live_drill_instances(handle.id) == []


def test_cleanup_of_is_checked_at_the_input():
    plan = make_plan({"CLEANUP": []})
    with pytest.raises(ValidationError, match="cleanup_of runs the CLEANUP phase only: phases must be \\[CLEANUP\\], "
                                              "not all four"):
        RunOptions(cleanup_of="dr-x")
    with pytest.raises(ValidationError, match="options.cleanup_of: only a drill's artefacts are cleaned up by another "
                                              "run; the mode must be drill, not planned"):
        LifecycleInput(plan=plan, mode=Mode.PLANNED, initiator=INITIATOR,
                       options=RunOptions(phases=["CLEANUP"], cleanup_of="dr-x"))


async def test_a_cleanup_that_fails_says_what_failed_and_what_is_left(worker, sandbox):
    missing_zone = {"name": "missing-zone", "action": "route53.record", "parameters": {
        "zoneName": "no-such-zone.example.com", "recordName": "www.no-such-zone.example.com",
        "recoveryValue": "elsewhere.example.com"}}
    plan = make_plan({
        "ACTIVATE": [{"name": "warm-up", "resources": [wait_resource("warm-up")]},
                     {"name": "dns", "resources": [missing_zone]}],
        "CLEANUP": [{"name": "dns", "resources": [missing_zone]},
                    {"name": "tidy", "resources": [wait_resource("tidy")]}],
    }, name="cleanup-fails")
    handle = await start_run(worker.client, worker.task_queue, plan)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    state = await status_of(handle)
    assert state.status is RunStatus.FAILED and state.error
    failed, cleanup = state.error.split("; cleanup after failure failed: ")
    assert failed.startswith("phase ACTIVATE failed: ACTIVATE/dns/missing-zone: ")
    assert cleanup.startswith("dns/missing-zone failed: ") and "no-such-zone.example.com" in cleanup
    assert cleanup.endswith(f"; not cleaned up: tidy/tidy (`drctl drill cleanup {handle.id}` removes them)")
    assert state.phase(Phase.CLEANUP).status is StepStatus.FAILED


async def test_a_drill_rejected_at_a_gate_after_its_servers_launched_cleans_up(worker, world):
    app = drs_estate(world, {"db": 2, "app": 2})
    plan = drs_plan("rejected-cleans", app, ACTIVATE=[drs_layer(TWO_WAVES), {
        "name": "traffic", "approvalRequired": True, "resources": [wait_resource("switch")]}],
        CLEANUP=[drs_layer(TWO_WAVES)])
    handle = await start_run(worker.client, worker.task_queue, plan)
    await wait_until(handle, lambda s: s.pending_gate() is not None, timeout=60)
    assert len(live_drill_instances(handle.id)) == 4
    assert (await send(handle, "reject", control("manager@example.com", reason="app tier broken"))).accepted
    result = await handle.result()
    assert result.status is RunStatus.REJECTED
    assert result.message.startswith("gate ACTIVATE/traffic rejected by manager@example.com: app tier broken; cleanup "
                                     "after rejection: servers/servers: terminated 4 drill instance(s)"), result.message
    assert live_drill_instances(handle.id) == []
