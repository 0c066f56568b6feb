"""drctl's read side and its command line as real processes: `drill list` over the visibility API, `--version`,
control commands that refuse options that mean nothing to them, and one-line errors."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from importlib.metadata import version

import pytest
from temporalio.client import WorkflowFailureError

from tests.cli_helpers import cli_env, drctl, listed
from tests.lifecycle_helpers import INITIATOR, finish, make_plan, start_run, wait_resource
from contracts.lifecycle import RunStatus

MISSING_ZONE = {"name": "missing-zone", "action": "route53.record",
                "parameters": {"zoneName": "no-such-zone.example.com", "recordName": "www.no-such-zone.example.com",
                               "recoveryValue": "elsewhere.example.com"}}


@pytest.fixture
def env(worker, temporal_env) -> dict[str, str]:
    return cli_env(temporal_env)


async def test_list_filters_runs_by_search_attributes_as_table_and_json(worker, env):
    plan_name = f"cli-list-{uuid.uuid4().hex[:8]}"
    # Started through the SDK, as a user's script would: drctl finds them all the same.
    ok = await start_run(worker.client, worker.task_queue,
                         make_plan({"ACTIVATE": [{"name": "only", "resources": [wait_resource("a")]}]}, plan_name))
    assert (await finish(ok)).status is RunStatus.COMPLETED
    failed = await start_run(worker.client, worker.task_queue,
                             make_plan({"ACTIVATE": [{"name": "dns", "resources": [MISSING_ZONE]}]}, plan_name))
    with pytest.raises(WorkflowFailureError):
        await failed.result()

    rows = await listed(env, "--plan", plan_name, expect=2)
    assert [r["workflow_id"] for r in rows] == [failed.id, ok.id]  # the most recently closed first
    newest, oldest = rows
    assert set(newest) == {"workflow_id", "run_id", "plan", "mode", "phase", "status", "initiator", "started_at",
                           "ended_at", "duration_seconds", "execution_status"}
    assert (oldest["plan"], oldest["mode"], oldest["phase"], oldest["status"], oldest["initiator"],
            oldest["execution_status"]) == (plan_name, "drill", "REPLICATE", "COMPLETED", INITIATOR, "COMPLETED")
    assert (newest["phase"], newest["status"], newest["execution_status"]) == ("ACTIVATE", "FAILED", "FAILED")
    assert oldest["run_id"] == ok.result_run_id
    started, ended = (datetime.fromisoformat(oldest[k]) for k in ("started_at", "ended_at"))
    assert started < ended and oldest["duration_seconds"] == pytest.approx((ended - started).total_seconds(), abs=0.1)
    assert oldest["duration_seconds"] >= 1  # its one resource waits a second

    assert [r["workflow_id"] for r in await listed(env, "--plan", plan_name, "--status", "FAILED", expect=1)] \
        == [failed.id]
    assert [r["workflow_id"] for r in await listed(env, "--plan", plan_name, "--limit", "1", expect=1)] \
        == [failed.id]
    assert await listed(env, "--plan", plan_name, "--mode", "failback", expect=0) == []

    code, out, err = await drctl("drill", "list", "--plan", plan_name, "--mode", "drill", env=env)
    assert code == 0, err
    header, *lines = [line for line in out.splitlines() if line.strip()]
    assert header.split() == ["WORKFLOW", "ID", "PLAN", "MODE", "PHASE", "STATUS", "INITIATOR", "STARTED",
                              "DURATION"]
    assert [line.split()[:5] for line in lines] == [[failed.id, plan_name, "drill", "ACTIVATE", "FAILED"],
                                                    [ok.id, plan_name, "drill", "REPLICATE", "COMPLETED"]]


async def test_list_refuses_what_cannot_be_a_filter(env):
    code, out, err = await drctl("drill", "list", "--plan", "x' OR DrPlan != 'y", env=env)
    assert code == 2 and "is not a plan name" in err and not out
    code, _, err = await drctl("drill", "list", "--status", "DONE", env=env)
    assert code == 2 and "'DONE' is not one of" in err


async def test_version_is_the_installed_package_version():
    code, out, err = await drctl("--version", env={})
    assert code == 0, err
    assert out == f"drctl version {version('dr-orchestrator')}\n"


async def test_each_control_command_takes_only_the_options_that_mean_something_to_it():
    refused = [("pause", "--force"), ("resume", "--gate", "ACTIVATE"), ("approve", "--step", "ACTIVATE/db"),
               ("cancel", "--gate", "ACTIVATE"), ("skip", "--step", "ACTIVATE/db", "--force"),
               ("switch-ungraceful", "--reason", "region down", "--step", "ACTIVATE/db"),
               ("pause", "--plan-hash", "sha256:" + "0123456789abcdef" * 4)]
    answers = await asyncio.gather(*(drctl("drill", command, "dr-any-drill-20260101T000000", *options,
                                           env={"DRCTL_TOKEN": "x"}) for command, *options in refused))
    for (command, *options), (code, out, err) in zip(refused, answers):
        assert code == 2 and "No such option" in err and not out, (command, err)
    code, _, err = await drctl("drill", "skip", "dr-any-drill-20260101T000000", env={"DRCTL_TOKEN": "x"})
    assert code == 2 and "Missing option '--step'" in err


async def test_an_unknown_run_or_an_unreachable_server_is_a_one_line_error(env):
    unknown = "dr-nothing-drill-20260101T000000"
    commands = [("drill", "status", unknown), ("drill", "status", unknown, "-o", "json"),
                ("drill", "watch", unknown), ("drill", "approve", unknown), ("audit", unknown)]
    answers = await asyncio.gather(*(drctl(*command, env=env) for command in commands))
    for command, (code, out, err) in zip(commands, answers):
        assert (code, out) == (1, ""), command
        assert err.startswith(f"error: no workflow '{unknown}'") and err.count("\n") == 1, (command, err)
    code, out, err = await drctl("drill", "list", env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert (code, out) == (1, "")
    assert err.startswith("error: cannot reach Temporal at 127.0.0.1:1") and err.count("\n") == 1, err
