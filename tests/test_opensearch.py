"""opensearch.domain on the sandbox: snapshot restore and follower promotion, per mode, against the domain emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.core.aws import AwsClients
from activities.opensearch.module import OpenSearchDomain
from plans.model import Mode, Phase
from sandbox.opensearch.models import TIMING
from tests.aws_helpers import drive, make_ctx, unique, with_phase
from tests.estates import opensearch as estate
from tests.estates.opensearch import Domain, seed

module = OpenSearchDomain()
_aws = AwsClients()  # one credential cache for the file: an AssumeRole per test would be most of its time
PHASES = (Phase.INSTANTIATE, Phase.ACTIVATE, Phase.CLEANUP, Phase.REPLICATE)


def _restore(recovery: Domain, **extra: object) -> dict[str, object]:
    return {"domainName": recovery.name, "method": "snapshotRestore", "repository": "dr-snapshots", **extra}


def _follow(recovery: Domain, **extra: object) -> dict[str, object]:
    return {"domainName": recovery.name, "method": "replication", "indices": ["events"], **extra}


def _run(params: dict[str, object], mode: Mode, phase: Phase, ctx=None):  # type: ignore[no-untyped-def]
    if ctx is None:
        ctx, parsed = make_ctx(module, params, mode=mode, phase=phase, aws=_aws)
    else:
        ctx, parsed = with_phase(ctx, phase), module.Parameters.model_validate(params)
    return ctx, drive(module, ctx, parsed, max_polls=2000)


def _fails(params: dict[str, object], mode: Mode, phase: Phase) -> ApplicationError:
    ctx, parsed = make_ctx(module, params, mode=mode, phase=phase, aws=_aws)
    with pytest.raises(ApplicationError) as failure:
        drive(module, ctx, parsed, max_polls=2000)
    assert failure.value.non_retryable
    return failure.value


@pytest.fixture
def replication_lag() -> Iterator[None]:
    saved = TIMING.replication_lag_seconds
    yield
    TIMING.replication_lag_seconds = saved


def test_drill_restores_renamed_copies_and_cleanup_deletes_exactly_them(sandbox):
    _, recovery, _ = seed(unique("drill"))
    recovery.index_docs("dr-drill-0000000a-orders", 1)  # another execution's copy: not ours to delete
    params = _restore(recovery, snapshot="snap-1")
    ctx, steps = _run(params, Mode.DRILL, Phase.INSTANTIATE)
    assert steps[-1].outputs["indices"] == ["customers", "orders"]
    assert module.status(ctx, module.Parameters.model_validate(params))["snapshot"]["name"] == "snap-1"

    ctx, steps = _run(params, Mode.DRILL, Phase.ACTIVATE, ctx)
    assert len(steps) > 1  # the restored copies were red for a while, and the module waited for green
    prefix = f"dr-drill-{ctx.drill_suffix()}-"
    indices = recovery.indices()
    assert {prefix + "orders", prefix + "customers"} <= set(indices)
    assert indices[prefix + "orders"]["docs.count"] == "5" and indices[prefix + "orders"]["health"] == "green"
    assert "orders" not in indices and "customers" not in indices  # production names untouched
    uuid = indices[prefix + "orders"]["uuid"]
    _run(params, Mode.DRILL, Phase.ACTIVATE, ctx)  # a retry finds its restore done and restores nothing again
    assert recovery.indices()[prefix + "orders"]["uuid"] == uuid

    _, steps = _run(params, Mode.DRILL, Phase.CLEANUP, ctx)
    assert sorted(steps[-1].outputs["deleted"]) == [prefix + "customers", prefix + "orders"]
    left = recovery.indices()
    assert not [n for n in left if n.startswith(prefix)] and "dr-drill-0000000a-orders" in left
    _, steps = _run(params, Mode.DRILL, Phase.CLEANUP, ctx)  # again: nothing left, nothing else deleted
    assert steps[-1].outputs["deleted"] == [] and "dr-drill-0000000a-orders" in recovery.indices()


def test_real_restore_refuses_an_index_it_did_not_create_unless_allowed_to_replace_it(sandbox):
    primary, recovery, _ = seed(unique("real"))
    recovery.index_docs("orders", 1)  # written in the recovery region by someone else
    primary.index_docs("orders", 2)
    primary.ok("PUT", "_snapshot/dr-snapshots/snap-2?wait_for_completion=true", {"indices": "orders,customers"})
    params = _restore(recovery, indices=["orders", "customers"])  # no snapshot: the newest one, snap-2

    failure = _fails(params, Mode.PLANNED, Phase.INSTANTIATE)
    assert failure.type == "IndexExists" and "orders" in failure.message and "replaceExisting" in failure.message
    assert _fails(params, Mode.PLANNED, Phase.ACTIVATE).type == "IndexExists"
    assert recovery.indices()["orders"]["docs.count"] == "1"

    params = {**params, "replaceExisting": True}
    ctx, steps = _run(params, Mode.PLANNED, Phase.INSTANTIATE)
    assert steps[-1].outputs["snapshot"] == "snap-2" and steps[-1].outputs["willReplace"] == ["orders"]
    ctx, steps = _run(params, Mode.PLANNED, Phase.ACTIVATE, ctx)
    indices = recovery.indices()
    assert indices["orders"]["docs.count"] == "7" and indices["orders"]["health"] == "green"
    assert indices["customers"]["docs.count"] == "3" and steps[-1].outputs["snapshot"] == "snap-2"
    uuid = indices["orders"]["uuid"]
    _run(params, Mode.PLANNED, Phase.ACTIVATE, ctx)  # retried: the indices are this restore's, kept as they are
    assert recovery.indices()["orders"]["uuid"] == uuid
    for phase in (Phase.CLEANUP, Phase.REPLICATE):
        _run(params, Mode.PLANNED, phase, ctx)
        assert recovery.indices()["orders"]["uuid"] == uuid


@pytest.mark.parametrize("mode", [Mode.PLANNED, Mode.DISASTER, Mode.DRILL])
def test_planned_restore_snapshots_the_primary_first_disaster_and_drill_do_not(sandbox, mode):
    primary, recovery, _ = seed(unique(f"fresh-{mode.value}"))
    primary.index_docs("orders", 4)  # written after snap-1
    params = _restore(recovery, snapshot="snap-1", indices=["orders"], primaryDomainName=primary.name)
    ctx, steps = _run(params, mode, Phase.INSTANTIATE)
    assert ("snapshotFirst" in steps[-1].outputs) is (mode is Mode.PLANNED)
    ctx, steps = _run(params, mode, Phase.ACTIVATE, ctx)
    fresh = f"dr-failover-{ctx.drill_suffix()}"
    snapshots = [s["snapshot"] for s in primary.ok("GET", "_snapshot/dr-snapshots/_all")["snapshots"]]
    restored = f"dr-drill-{ctx.drill_suffix()}-orders" if mode is Mode.DRILL else "orders"
    docs = recovery.indices()[restored]["docs.count"]
    if mode is Mode.PLANNED:
        assert steps[-1].outputs["snapshot"] == fresh and docs == "9" and fresh in snapshots
        assert "snapshotting the primary" in steps[0].message
        _, again = _run(params, mode, Phase.ACTIVATE, ctx)  # retried: the same snapshot, no second one
        assert again[-1].done and len(again) == 1
        assert len(primary.ok("GET", "_snapshot/dr-snapshots/_all")["snapshots"]) == len(snapshots)
    else:
        assert steps[-1].outputs["snapshot"] == "snap-1" and docs == "5" and fresh not in snapshots


def test_drill_checks_followers_without_stopping_replication(sandbox, replication_lag):
    primary, recovery, _ = seed(unique("fdrill"))
    ctx, steps = _run(_follow(recovery), Mode.DRILL, Phase.ACTIVATE)
    report = steps[-1].outputs["followers"]["events"]
    assert report["status"] == "SYNCING" and report["leader"] == "primary:events"
    live = module.status(ctx, module.Parameters.model_validate(_follow(recovery)))
    assert live["followers"]["events"]["status"] == "SYNCING" and live["processing"] is False
    assert recovery.replication("events")["status"] == "SYNCING"
    _run(_follow(recovery), Mode.DRILL, Phase.CLEANUP, ctx)
    assert recovery.replication("events")["status"] == "SYNCING"
    assert recovery.call("POST", "events/_doc", {})[0] == 403

    TIMING.replication_lag_seconds = 60.0
    primary.index_docs("events", 3)
    failure = _fails(_follow(recovery, maxLagOperations=1), Mode.DRILL, Phase.ACTIVATE)
    assert failure.type == "ReplicationLagging" and "events" in failure.message
    assert recovery.replication("events")["status"] == "SYNCING"


def test_planned_promotion_waits_until_the_follower_caught_up_then_stops(sandbox, replication_lag):
    primary, recovery, _ = seed(unique("planned"))
    TIMING.replication_lag_seconds = 3.0
    primary.index_docs("events", 3)
    ctx, steps = _run(_follow(recovery), Mode.PLANNED, Phase.ACTIVATE)
    assert not steps[0].done and "catch up" in steps[0].message
    assert recovery.replication("events")["status"] == "REPLICATION NOT IN PROGRESS"
    assert recovery.ok("GET", "events/_count")["count"] == primary.ok("GET", "events/_count")["count"] == 7
    assert recovery.call("POST", "events/_doc", {})[0] == 201
    _, steps = _run(_follow(recovery), Mode.PLANNED, Phase.ACTIVATE, ctx)  # retried: already promoted
    assert steps[-1].done and len(steps) == 1


def test_disaster_promotion_stops_at_once_accepting_the_lag(sandbox, replication_lag):
    primary, recovery, _ = seed(unique("disaster"))
    TIMING.replication_lag_seconds = 60.0
    primary.index_docs("events", 3)
    _, steps = _run(_follow(recovery), Mode.DISASTER, Phase.ACTIVATE)
    assert len(steps) == 1 and steps[0].done
    assert recovery.ok("GET", "events/_count")["count"] < primary.ok("GET", "events/_count")["count"]
    assert recovery.call("POST", "events/_doc", {})[0] == 201


def test_a_paused_follower_blocks_a_planned_promotion_but_not_a_disaster_one(sandbox):
    primary, recovery, _ = seed(unique("paused"))
    primary.ok("DELETE", "events")  # the leader is gone: the follower pauses
    assert recovery.replication("events")["status"] == "PAUSED"
    assert _fails(_follow(recovery), Mode.PLANNED, Phase.ACTIVATE).type == "ReplicationPaused"
    assert _fails(_follow(recovery), Mode.DRILL, Phase.INSTANTIATE).type == "ReplicationNotRunning"
    _run(_follow(recovery), Mode.DISASTER, Phase.ACTIVATE)
    assert recovery.replication("events")["status"] == "REPLICATION NOT IN PROGRESS"


def test_missing_things_are_clear_permanent_errors(sandbox):
    _, recovery, _ = seed(unique("missing"))
    failure = _fails({"domainName": "no-such-domain", "method": "replication", "indices": ["x"]}, Mode.DRILL,
                     Phase.INSTANTIATE)
    assert failure.type == "ResourceNotFoundException" and "no-such-domain" in failure.message
    failure = _fails(_restore(recovery, repository="nope"), Mode.DRILL, Phase.INSTANTIATE)
    assert failure.type == "RepositoryNotFound" and "nope" in failure.message
    failure = _fails(_restore(recovery, snapshot="snap-9"), Mode.DRILL, Phase.ACTIVATE)
    assert failure.type == "SnapshotNotFound" and "snap-9" in failure.message
    failure = _fails(_restore(recovery, indices=["invoices"]), Mode.DRILL, Phase.INSTANTIATE)
    assert failure.type == "IndexNotInSnapshot" and "invoices" in failure.message
    failure = _fails(_follow(recovery, indices=["ghost"]), Mode.PLANNED, Phase.INSTANTIATE)
    assert failure.type == "IndexNotFound" and "ghost" in failure.message


def test_parameters_need_what_their_method_needs():
    with pytest.raises(ValidationError, match="repository"):
        module.Parameters.model_validate({"domainName": "abc", "method": "snapshotRestore"})
    with pytest.raises(ValidationError, match="indices"):
        module.Parameters.model_validate({"domainName": "abc", "method": "replication"})
    with pytest.raises(ValidationError):
        module.Parameters.model_validate({"domainName": "abc", "method": "replication", "indices": ["a"],
                                          "unknown": 1})


def test_a_processing_domain_is_waited_for(sandbox):
    from moto.opensearch.models import opensearch_backends

    from tests.conftest import APP_ACCOUNT

    _, recovery, _ = seed(unique("busy"))
    domain = opensearch_backends[APP_ACCOUNT][recovery.region].domains[recovery.name]
    domain.processing = True
    try:
        ctx, parsed = make_ctx(module, _follow(recovery), mode=Mode.DRILL, phase=Phase.INSTANTIATE, aws=_aws)
        first = module.start(ctx, parsed)
        assert not first.done and "processing" in first.message
    finally:
        domain.processing = False
    assert module.poll(ctx, parsed, first.handle).done


def test_the_domain_api_answers_only_signed_requests_of_the_owning_account(sandbox):
    import os

    import requests

    _, recovery, _ = seed(unique("auth"))
    url = os.environ["AWS_ENDPOINT_URL"]
    unsigned = requests.get(f"{url}/_cat/indices", headers={"Host": recovery.endpoint}, timeout=10)
    assert unsigned.status_code == 403
    other = Domain.__new__(Domain)
    import boto3

    other.session, other.endpoint, other.region = boto3.Session(), recovery.endpoint, recovery.region
    assert other.call("GET", "_cat/indices")[0] == 403  # the hub account's credentials: not the domain's owner
    assert recovery.call("GET", "_cat/indices")[0] == 200


@pytest.mark.parametrize("mode", [Mode.DRILL, Mode.PLANNED])
def test_estate_resources_through_every_phase(sandbox, mode):
    built = estate.build(unique(f"estate-{mode.value}"))
    ctxs = {}
    for phase in PHASES:
        for resource in built.resources:
            name = resource["name"]
            if name not in ctxs:
                ctxs[name], parsed = make_ctx(module, resource["parameters"], mode=mode, phase=phase,
                                                     aws=_aws)
            else:
                parsed = module.Parameters.model_validate(resource["parameters"])
            drive(module, with_phase(ctxs[name], phase), parsed, max_polls=2000)
        built.check(phase, mode)


async def test_a_drill_plan_runs_through_the_workflow(worker):
    """The module as the runtime drives it: parameters validated from the plan, start and wait activities."""
    from tests.conftest import APP_ACCOUNT
    from tests.lifecycle_helpers import finish, make_plan, start_run
    from contracts.lifecycle import RunStatus

    built = estate.build(unique("wf"))
    resources = [{**r, "account": "app"} for r in built.resources]
    layers = {phase.value: [{"name": "search", "approvalRequired": False, "resources": resources}]
              for phase in PHASES}
    accounts = {"hub": {"id": "123456789012"}, "app": {"id": APP_ACCOUNT, "roleName": "dr-orchestrator"}}
    plan = make_plan(layers, name=unique("os-drill"), accounts=accounts)
    result = await finish(await start_run(worker.client, worker.task_queue, plan, Mode.DRILL))
    assert result.status is RunStatus.COMPLETED and not result.failed_resources, result
    built.check(Phase.REPLICATE, Mode.DRILL)
