"""Records the workflow histories that tests/test_replay_histories.py replays against the code of the day.

    .venv/bin/python -m tests.histories.record [-k SCENARIO]

A recorded history stands for a run that was in flight when the code changed: a new worker must replay it without
nondeterminism, or that run breaks. So each scenario here drives a real run (dev server, sandbox, worker) and saves
its complete history, and its child workflows' histories, as `history.to_json()` under tests/histories/.

The module runs itself under pytest: the scenarios are pytest functions, so the suite's own fixtures (sandbox,
Temporal dev server, worker, DRS world) and helpers are what records, and each scenario asserts the run did what it
stands for before anything is saved. pytest does not collect it in `make test` (the name is not test_*.py).

A history that exists is never overwritten (its scenario is skipped): old histories stay, because they stand for
runs already in flight. Add a scenario for something new; do not re-record an old one to make it pass.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from plans.model import Mode, Plan
from tests.lifecycle_helpers import (
    INITIATOR,
    audit_of,
    control,
    finish,
    make_plan,
    resource,
    send,
    start_run,
    status_of,
    timer_summaries,
    wait_resource,
    wait_until,
)
from tests.conftest import HUB_ACCOUNT
from tests.histories.saving import not_recorded_yet, recorded_on, save
from tests.identity_helpers import token_for
from tests.test_drs_recovery import child_state, drs_plan, estate
from tests.test_lifecycle_aws import Estate
from tests.test_notifications import event_of, received, topic_with_queue
from contracts.lifecycle import INVALID_INPUT, PERMISSION_DENIED, WORKFLOW_TYPE, RunOptions, RunStatus, StepStatus
from workflows.governance import BOUND_APPROVALS_PATCH


async def test_gated_drill(worker, sandbox) -> None:  # type: ignore[no-untyped-def]
    """The web-app example as a drill (RDS drill copy, drill DNS record) through all four phases, with a
    control.wait layer and an approval gate before the traffic layer: the initiator's own approval is denied
    (four-eyes), a plan-manager's opens the gate."""
    not_recorded_yet("gated-drill")
    data = Estate().plan("hist-gated").model_dump(by_alias=True, mode="json")
    database, traffic = data["phases"]["ACTIVATE"]["layers"]
    traffic["approvalRequired"] = True
    data["phases"]["ACTIVATE"]["layers"] = [database, {"name": "soak", "resources": [wait_resource("soak", 1)]},
                                            traffic]
    handle = await start_run(worker.client, worker.task_queue, Plan.model_validate(data), mode=Mode.DRILL)
    state = await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL, timeout=60)
    assert state.pending_gate().id == "ACTIVATE/traffic"
    denied = await send(handle, "approve", control(actor=INITIATOR, reason="my own drill"))
    assert not denied.accepted and "four-eyes" in denied.message, denied.message
    approved = await send(handle, "approve", control(actor="manager@example.com", roles=("plan-manager",),
                                                     reason="drill copy is up"))
    assert approved.accepted
    assert (await finish(handle)).status is RunStatus.COMPLETED
    state = await status_of(handle)
    assert all(p.status is StepStatus.SUCCEEDED for p in state.phases)
    assert [(g.decision, g.actor) for g in state.gates] == [("approved", "manager@example.com")]
    assert [(a.action, a.accepted) for a in await audit_of(handle)] == [
        ("start-drill", True), ("approve", False), ("approve", True)]
    await save(worker.client, handle, "gated-drill", "drill of web-app: rds, control.wait, gate (four-eyes denial "
                                                     "then approval), route53; completed")


async def test_drs_waves(worker, world) -> None:  # type: ignore[no-untyped-def]
    """DRS recovery of three waves (db -> app in the hub account, then web in the app account), the web wave
    behind a pauseBefore gate that the run's approve opens; CLEANUP terminates the drill instances."""
    not_recorded_yet("drs-waves")
    app = estate(world, {"db": 2, "app": 2}, {"web": 2})
    plan = drs_plan("hist-drs", app, waves=[
        {"name": "db", "protectionGroups": ["db"]},
        {"name": "app", "protectionGroups": ["app"], "dependsOn": ["db"]},
        {"name": "web", "protectionGroups": ["web"], "dependsOn": ["app"], "pauseBefore": True},
    ], groups={"db": {"tags": {"Tier": "db"}}, "app": {"tags": {"Tier": "app"}},
               "web": {"tags": {"Tier": "web"}, "account": "app"}})
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    state = await wait_until(handle, lambda s: s.status is RunStatus.AWAITING_APPROVAL, timeout=60)
    gate = state.pending_gate()
    assert gate.id == "ACTIVATE/servers/servers/wave:web"
    assert (await send(handle, "approve", control(actor="manager@example.com", gate=gate.id,
                                                  reason="app tier answers"))).accepted
    assert (await finish(handle)).status is RunStatus.COMPLETED
    state = await status_of(handle)
    activate = resource(state, "ACTIVATE", "servers", "servers")
    assert activate.outputs["launched"] == 6
    assert activate.outputs["waves"] == {"db": "SUCCEEDED", "app": "SUCCEEDED", "web": "SUCCEEDED"}
    assert "terminated 6 drill instance" in resource(state, "CLEANUP", "servers", "servers").message
    waves = {w.name: w for w in (await child_state(worker, handle.id, "ACTIVATE")).waves}
    assert waves["db"].ended_at <= waves["app"].started_at and waves["app"].ended_at <= waves["web"].started_at
    await save(worker.client, handle, "drs-waves", "drill of 6 DRS servers in waves db -> app -> web (web behind "
                                                   "a pauseBefore gate, approved), in two accounts; completed")


async def test_drs_faults(worker, world) -> None:  # type: ignore[no-untyped-def]
    """DRS faults of issue 13 in one drill of three waves at once: web (optional, one server stuck) ends PARTIAL at
    its timeout; db's job loses the race for its server to another execution's and is refused (the holder named);
    app's job launches while DRS answers nothing for longer than the watch's retries, and its servers are LAUNCHED
    after the jobs are read again by their tags."""
    not_recorded_yet("drs-faults")
    app = estate(world, {"web": 2, "app": 2, "db": 1})
    world.set_durations(launch=160)  # about 4 s at the world's time scale: the app job launches during the outage
    world.set_faults(stuck_servers={f"web-001.{app}.example.com"},
                     raced_servers={f"db-000.{app}.example.com": {"dr:execution": "dr-hist-other-drill"}})
    plan = drs_plan("hist-faults", app, waves=[
        {"name": "web", "protectionGroups": ["web"], "maxFailedPercent": 50, "timeoutSeconds": 60},
        {"name": "app", "protectionGroups": ["app"]},
        {"name": "db", "protectionGroups": ["db"]},
    ], groups={"web": {"tags": {"Tier": "web"}, "impact": "optional"}, "app": {"tags": {"Tier": "app"}},
               "db": {"tags": {"Tier": "db"}}}, cleanup=False)
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    backend = world.backend(HUB_ACCOUNT, "us-west-2")
    for _ in range(300):
        if any(j.tags.get("dr:wave") == "app" for j in backend.jobs.values()):
            break
        await asyncio.sleep(0.1)
    world.set_faults(error_rate=1.0)
    child = worker.client.get_workflow_handle(f"{handle.id}/ACTIVATE/servers/servers")
    for _ in range(120):
        if any("could not be read" in t for t in await timer_summaries(child)):
            break
        await asyncio.sleep(0.5)
    world.set_faults(error_rate=0.0)
    with pytest.raises(AssertionError, match="of run dr-hist-other-drill"):
        await finish(handle)
    waves = {w.name: w for w in (await child_state(worker, handle.id, "ACTIVATE")).waves}
    assert {n: w.status.value for n, w in waves.items()} == {"web": "PARTIAL", "app": "SUCCEEDED", "db": "FAILED"}
    assert waves["web"].message.startswith("timed out: 1 optional server still launching")
    await save(worker.client, handle, "drs-faults", "drill of 5 DRS servers in three waves at once: a stuck optional "
                                                    "server (wave PARTIAL at its timeout), a start refused for a "
                                                    "server another execution's job took (holder named), a DRS "
                                                    "outage outlasting the watch's retries while a job launches "
                                                    "(LAUNCHED after reading the jobs again); failed")


async def test_failed_run(worker, sandbox) -> None:  # type: ignore[no-untyped-def]
    """A drill whose database layer names a replica that does not exist: the resource fails non-retryably, the
    run fails (DrRunFailed) and what did not run is SKIPPED."""
    not_recorded_yet("failed-run")
    missing = {"replicaIdentifier": "hist-no-such-replica", "primaryIdentifier": "hist-no-such-db"}
    plan = make_plan({
        "ACTIVATE": [{"name": "warm-up", "resources": [wait_resource("warm-up", 1)]},
                     {"name": "database", "resources": [{"name": "orders-db", "action": "rds.read_replica",
                                                         "parameters": missing}]},
                     {"name": "traffic", "resources": [wait_resource("switch", 1)]}],
        "CLEANUP": [{"name": "tidy", "resources": [wait_resource("tidy", 1)]}],
    }, name="hist-failed")
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert getattr(failure.value.cause, "type", None) == "DrRunFailed"
    state = await status_of(handle)
    assert state.status is RunStatus.FAILED
    db = resource(state, "ACTIVATE", "database", "orders-db")
    assert db.status is StepStatus.FAILED and "hist-no-such-replica" in (db.error or ""), db.error
    assert resource(state, "ACTIVATE", "traffic", "switch").status is StepStatus.SKIPPED
    assert resource(state, "CLEANUP", "tidy", "tidy").status is StepStatus.SKIPPED
    await save(worker.client, handle, "failed-run", "drill whose rds.read_replica names a missing replica: the "
                                                    "resource fails, the run fails with DrRunFailed")


async def test_paused_resumed_cancelled(worker) -> None:  # type: ignore[no-untyped-def]
    """A drill paused while its first layer runs, resumed, then cancelled while the second runs: running work
    finishes, the third layer and CLEANUP never start."""
    not_recorded_yet("paused-cancelled")
    plan = make_plan({
        "ACTIVATE": [{"name": "one", "resources": [wait_resource("first", 2)]},
                     {"name": "two", "resources": [wait_resource("second", 2)]},
                     {"name": "three", "resources": [wait_resource("never", 1)]}],
        "CLEANUP": [{"name": "tidy", "resources": [wait_resource("never-either", 1)]}],
    }, name="hist-paused")
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    await wait_until(handle, lambda s: resource(s, "ACTIVATE", "one", "first").status is StepStatus.RUNNING)
    assert (await send(handle, "pause", control(reason="checking the database"))).accepted
    await wait_until(handle, lambda s: s.status is RunStatus.PAUSED
                     and resource(s, "ACTIVATE", "one", "first").status is StepStatus.SUCCEEDED)
    assert (await send(handle, "resume", control(reason="database fine"))).accepted
    await wait_until(handle, lambda s: resource(s, "ACTIVATE", "two", "second").status is StepStatus.RUNNING)
    assert (await send(handle, "cancel", control(reason="drill window closed"))).accepted
    assert (await finish(handle)).status is RunStatus.CANCELLED
    state = await status_of(handle)
    assert resource(state, "ACTIVATE", "two", "second").status is StepStatus.SUCCEEDED
    assert resource(state, "ACTIVATE", "three", "never").status is StepStatus.SKIPPED
    assert resource(state, "CLEANUP", "tidy", "never-either").status is StepStatus.SKIPPED
    await save(worker.client, handle, "paused-cancelled", "drill paused, resumed, then cancelled mid-layer; "
                                                          "completed with status CANCELLED")


async def test_signalled_gate(worker) -> None:  # type: ignore[no-untyped-def]
    """A drill whose approval gate is opened by a signal, as `temporal workflow signal` and chat bots send it: the
    initiator's own approval by signal is denied (four-eyes), an operator's approval by update fails with
    PermissionDenied, the run is paused and resumed by signal at the gate, then a plan-manager's signal opens it."""
    not_recorded_yet("signalled-gate")
    plan = make_plan({
        "ACTIVATE": [{"name": "gated", "approvalRequired": True, "resources": [wait_resource("work", 1)]}],
        "CLEANUP": [{"name": "tidy", "resources": [wait_resource("tidy", 1)]}],
    }, name="hist-signalled")
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    await wait_until(handle, lambda s: s.pending_gate() is not None)
    await handle.signal("approve", control(actor=INITIATOR, reason="my own drill", run=handle.id))
    state = await wait_until(handle, lambda s: s.denied_attempts == 1)
    assert "four-eyes" in (state.last_denial or "") and "(signal)" in (state.last_denial or ""), state.last_denial
    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await handle.execute_update("approve", control(actor="ops@example.com", roles=("operator",)))
    assert isinstance(raised.value.cause, ApplicationError) and raised.value.cause.type == PERMISSION_DENIED
    await handle.signal("pause", control(reason="checking the change ticket"))
    await wait_until(handle, lambda s: s.paused)
    await handle.signal("resume", control(reason="ticket fine"))
    await wait_until(handle, lambda s: not s.paused)
    await handle.signal("approve", control(actor="manager@example.com", roles=("plan-manager",), reason="go",
                                           run=handle.id))
    assert (await finish(handle)).status is RunStatus.COMPLETED
    state = await status_of(handle)
    assert all(p.status is StepStatus.SUCCEEDED for p in state.phases)
    assert [(g.decision, g.actor) for g in state.gates] == [("approved", "manager@example.com")]
    assert [(a.action, a.accepted, a.via) for a in await audit_of(handle)][1:] == [
        ("approve", False, "signal"), ("approve", False, "update"), ("pause", True, "signal"),
        ("resume", True, "signal"), ("approve", True, "signal")]
    await save(worker.client, handle, "signalled-gate", "drill whose gate a plan-manager's signal opens, after a "
                                                        "four-eyes denial by signal, a denied update, a pause and a "
                                                        "resume by signal; completed")


async def test_drill_cleans_up_after_failure(worker, world) -> None:  # type: ignore[no-untyped-def]
    """A DRS drill whose critical db server fails to launch: ACTIVATE fails, then the run's CLEANUP terminates the
    instance that did launch (patch drill-cleans-up-after-failure; its DRS child waits for running LAUNCH jobs,
    patch drs-cleanup-waits-for-launches) before the run fails with DrRunFailed, saying what the cleanup did."""
    not_recorded_yet("drill-cleanup-after-failure")
    app = estate(world, {"db": 2, "app": 2})
    world.set_faults(launch_failures={f"db-001.{app}.example.com"})
    plan = drs_plan("hist-cleans-up", app, waves=[
        {"name": "db", "protectionGroups": ["db"]},
        {"name": "app", "protectionGroups": ["app"], "dependsOn": ["db"]},
    ], groups={"db": {"tags": {"Tier": "db"}}, "app": {"tags": {"Tier": "app"}}})
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert getattr(failure.value.cause, "type", None) == "DrRunFailed"
    state = await status_of(handle)
    assert state.status is RunStatus.FAILED and "; cleanup after failure: servers/servers: terminated 1 drill " \
        "instance(s) of this execution" in (state.error or ""), state.error
    assert resource(state, "CLEANUP", "servers", "servers").status is StepStatus.SUCCEEDED
    await save(worker.client, handle, "drill-cleanup-after-failure",
               "DRS drill failed in ACTIVATE (critical server), its CLEANUP run after the failure; failed")


async def test_bad_input(worker) -> None:  # type: ignore[no-untyped-def]
    """A run started with an input it cannot decode (mode "yolo"): its first workflow task fails it with a
    non-retryable InvalidInput naming the field, instead of retrying the task for ever."""
    not_recorded_yet("bad-input")
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("w")]}]}, name="hist-bad-input")
    # A dict, not a LifecycleInput: what `temporal workflow start --input-file` sends, the model never checked it.
    run_input = {"plan": plan.model_dump(mode="json", by_alias=True), "mode": "yolo", "initiator": "cli-user",
                 "token": token_for("cli-user", ["operator"])}
    handle = await worker.client.start_workflow(WORKFLOW_TYPE, run_input, task_queue=worker.task_queue,
                                                id=f"dr-hist-bad-input-{uuid.uuid4().hex[:10]}")
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and (cause.type, cause.non_retryable) == (INVALID_INPUT, True)
    assert "mode: Input should be 'drill'" in cause.message, cause.message
    await save(worker.client, handle, "bad-input", "run started with mode \"yolo\": fails at once with InvalidInput")


async def _tolerated_failures(worker: Any, world: Any, name: str) -> WorkflowHandle[Any, Any]:
    """A drill whose continue-on-error layer has a failing resource and whose DRS wave loses 1 of 4 optional
    servers (maxFailedPercent 25): everything that fails, fails within the plan's policy."""
    app = estate(world, {"web": 4})
    world.set_faults(launch_failures={f"web-002.{app}.example.com"})
    data = drs_plan(f"hist-{name}", app, waves=[{"name": "web", "protectionGroups": ["web"], "maxFailedPercent": 25}],
                    groups={"web": {"tags": {"Tier": "web"}, "impact": "optional"}},
                    cleanup=False).model_dump(by_alias=True, mode="json")
    missing_zone = {"name": "missing-zone", "action": "route53.record",
                    "parameters": {"zoneName": "no-such-zone.example.com",
                                   "recordName": "www.no-such-zone.example.com", "recoveryValue": "x.example.com"}}
    data["phases"]["ACTIVATE"]["layers"].insert(0, {"name": "tolerant", "continueOnError": True,
                                                    "resources": [wait_resource("w", 1), missing_zone]})
    return await start_run(worker.client, worker.task_queue, Plan.model_validate(data), mode=Mode.DRILL,
                           options=RunOptions(phases=["ACTIVATE"]))


async def test_tolerated_failures_completed(worker, world) -> None:  # type: ignore[no-untyped-def]
    """_tolerated_failures on code from before RunStatus.PARTIAL (recorded on 7e53c6e): the run ended COMPLETED and
    its DRS resource SUCCEEDED. Today's code must replay it as it was (the run-partial patch)."""
    not_recorded_yet("tolerated-failures-completed")
    handle = await _tolerated_failures(worker, world, "tolerated")
    assert (await finish(handle)).status is RunStatus.COMPLETED
    assert resource(await status_of(handle), "ACTIVATE", "servers", "servers").status is StepStatus.SUCCEEDED
    await save(worker.client, handle, "tolerated-failures-completed",
               "drill with a failed resource in a continue-on-error layer and 1/4 optional DRS servers failed "
               "(maxFailedPercent 25), before RunStatus.PARTIAL; completed with status COMPLETED")


async def test_partial_run(worker, world) -> None:  # type: ignore[no-untyped-def]
    """_tolerated_failures with the run-partial patch: the DRS resource ends PARTIAL, and so does the run."""
    not_recorded_yet("partial-run")
    handle = await _tolerated_failures(worker, world, "partial")
    assert (await finish(handle)).status.value == "PARTIAL"
    assert resource(await status_of(handle), "ACTIVATE", "servers", "servers").status.value == "PARTIAL"
    await save(worker.client, handle, "partial-run",
               "drill with a failed resource in a continue-on-error layer and 1/4 optional DRS servers failed "
               "(maxFailedPercent 25); completed with status PARTIAL")


async def test_bound_approvals(worker, sandbox) -> None:  # type: ignore[no-untyped-def]
    """A drill with two gates, its change managers told through the plan's SNS topic (patch bound-approvals): at the
    first gate an approval naming another run is denied, so is one for the plan as it was before its last edit (its
    hash); a plan-manager's signal, with a token bound to this run (dr_run) and the right plan hash, opens it; at the
    second gate the same token (its jti) is denied as used already, and a recovery-manager's approval opens it."""
    not_recorded_yet("bound-approvals")
    topic, sqs, queue = topic_with_queue()
    layers = {"ACTIVATE": [{"name": "database", "approvalRequired": True, "resources": [wait_resource("copy", 1)]},
                           {"name": "traffic", "approvalRequired": True, "resources": [wait_resource("switch", 1)]}],
              "CLEANUP": [{"name": "tidy", "resources": [wait_resource("tidy", 1)]}]}
    plan = make_plan(layers, name="hist-bound", notifications={"topicArn": topic})
    digest, manager = plan.digest(), ("manager@example.com", ("plan-manager",))
    layers["ACTIVATE"][0]["resources"] = [wait_resource("copy", 5)]  # what the approver reviewed before the edit
    reviewed = make_plan(layers, name="hist-bound", notifications={"topicArn": topic}).digest()
    handle = await start_run(worker.client, worker.task_queue, plan, mode=Mode.DRILL)
    await wait_until(handle, lambda s: s.pending_gate() is not None and bool(s.notifications)
                     and s.notifications[0].message_id is not None)
    [needed] = received(sqs, queue)
    assert event_of(needed) == "approval-needed" and f"--plan-hash {digest}" in needed["Message"]
    elsewhere = await send(handle, "approve", control(*manager, run="dr-hist-bound-drill-0123456789"))
    assert not elsewhere.accepted and "the request is for run dr-hist-bound-drill-0123456789" in elsewhere.message
    stale = await send(handle, "approve", control(*manager, plan_hash=reviewed))
    assert not stale.accepted and f"reviewed plan {reviewed}, but this run runs plan {digest}" in stale.message
    bound = control(*manager, token=token_for(*manager, dr_run=handle.id), run=handle.id, plan_hash=digest,
                    reason="drill copy plan reviewed")
    await handle.signal("approve", bound)
    await wait_until(handle, lambda s: s.pending_gate() is not None and s.pending_gate().id == "ACTIVATE/traffic")
    again = await send(handle, "approve", bound)
    assert not again.accepted and again.message == "denied: token already used for a decision in this run"
    rm = ("rm@example.com", ("recovery-manager",))
    assert (await send(handle, "approve", control(*rm, token=token_for(*rm, dr_run=handle.id), plan_hash=digest,
                                                  reason="copy answers"))).accepted
    assert (await finish(handle)).status is RunStatus.COMPLETED
    state = await status_of(handle)
    assert [(g.decision, g.actor) for g in state.gates] == [("approved", "manager@example.com"),
                                                           ("approved", "rm@example.com")]
    assert {a.plan_hash for g in state.gates for a in g.approvals} == {digest} and len(state.decision_tokens) == 2
    trail = await audit_of(handle)
    assert [(a.action, a.accepted, a.via) for a in trail] == [
        ("start-drill", True, ""), ("approve", False, "update"), ("approve", False, "update"),
        ("approve", True, "signal"), ("approve", False, "update"), ("approve", True, "update")]
    assert {a.plan_hash for a in trail} == {digest}
    history = await handle.fetch_history()
    markers = [json.loads(p.data)["id"] for e in history.events if e.HasField("marker_recorded_event_attributes")
               for p in e.marker_recorded_event_attributes.details["patch-data"].payloads]
    assert BOUND_APPROVALS_PATCH in markers
    await save(worker.client, handle, "bound-approvals",
               "drill with two gates (patch bound-approvals): approvals naming another run and an earlier plan "
               "hash denied, a plan-manager's signal with a run-bound token and the plan hash approves, the same "
               "token's second decision denied as used, a recovery-manager approves; completed")


if __name__ == "__main__":
    recorded_on()  # refuse before starting anything
    sys.exit(pytest.main([__file__, "-p", "no:cacheprovider", "-q", *sys.argv[1:]]))
