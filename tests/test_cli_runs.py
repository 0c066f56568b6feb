"""drctl as an operator uses it: real processes against the dev server and the sandbox."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from contracts.lifecycle import LifecycleResult, RunStatus
from drctl.errors import EXIT_FAILED
from drctl.processes import free_port
from drctl.temporal_access import guard
from tests import reaper
from tests.cli_helpers import DRCTL, cli_env, drctl


@pytest.fixture
def temporal_cli_env(worker, temporal_env) -> dict[str, str]:
    return cli_env(temporal_env)


PLAN = """\
name: {name}
accounts: {{hub: {{id: "123456789012"}}}}
regions: {{primary: us-east-1, recovery: us-west-2}}
phases:
  ACTIVATE:
    layers:
      - name: only
        resources:
          - {{name: pause-a-second, action: control.wait, parameters: {{seconds: 1}}}}
{extra}"""

FAILING = """\
  CLEANUP:
    layers:
      - name: dns
        resources:
          - name: missing-zone
            action: route53.record
            parameters: {zoneName: no-such-zone.example.com, recordName: www.no-such-zone.example.com,
                         recoveryValue: elsewhere.example.com}
"""


async def test_drill_start_wait_exits_zero_on_success(temporal_cli_env, tmp_path: Path):
    plan = tmp_path / "ok.yaml"
    plan.write_text(PLAN.format(name="cli-ok", extra=""))
    code, out, err = await drctl("drill", "start", str(plan), "--wait", env=temporal_cli_env)
    assert code == 0, err
    workflow_id = out.splitlines()[0]
    assert re.fullmatch(r"dr-cli-ok-drill-\d{8}T\d{6}-[0-9a-f]{6}", workflow_id)
    assert f"Run {workflow_id}: COMPLETED" in out
    assert "/namespaces/default/workflows/" + workflow_id in err  # the UI link


async def test_two_starts_in_the_same_second_both_run(temporal_cli_env, tmp_path: Path, worker, capsys):
    """Workflow ids carry the second of the start and a random part: two operators (or a script's loop) starting
    the same plan at once get two runs, not a clash."""
    plan = tmp_path / "twice.yaml"
    plan.write_text(PLAN.format(name="cli-twice", extra=""))
    started = await asyncio.gather(*(drctl("drill", "start", str(plan), env=temporal_cli_env) for _ in range(3)))
    assert [code for code, _, _ in started] == [0, 0, 0], [err for _, _, err in started]
    ids = [out.splitlines()[0] for _, out, _ in started]
    assert len(set(ids)) == 3
    for workflow_id in ids:
        result = await worker.client.get_workflow_handle(workflow_id, result_type=LifecycleResult).result()
        assert result.status is RunStatus.COMPLETED
    # An id given twice (a script choosing its own) is one line naming it, not a WorkflowAlreadyStartedError traceback.
    handle = worker.client.get_workflow_handle(ids[0])
    description = await handle.describe()
    with pytest.raises(SystemExit) as exited:
        await guard(worker.client.start_workflow(description.workflow_type, id=ids[0], task_queue=worker.task_queue,
                                                 id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                                                 id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE))
    assert exited.value.code == EXIT_FAILED
    assert capsys.readouterr().err == f"error: a run with workflow id {ids[0]!r} already exists\n"


async def test_drill_start_wait_exits_non_zero_on_failure(temporal_cli_env, tmp_path: Path, sandbox):
    plan = tmp_path / "bad.yaml"
    plan.write_text(PLAN.format(name="cli-fail", extra=FAILING))
    code, out, err = await drctl("drill", "start", str(plan), "--wait", env=temporal_cli_env)
    assert code == 1
    assert ": FAILED" in out and "missing-zone" in out and "no-such-zone" in out
    assert "Traceback" not in out + err


async def test_drill_start_rejects_an_invalid_plan_before_starting(temporal_cli_env, tmp_path: Path):
    plan = tmp_path / "invalid.yaml"
    plan.write_text(PLAN.format(name="cli-invalid", extra="").replace("control.wait", "control.sleep"))
    code, out, err = await drctl("drill", "start", str(plan), env=temporal_cli_env)
    assert code == 2
    assert f"{plan}:9:" in err and "control.sleep" in err and "Traceback" not in err


async def test_control_of_an_unknown_run_is_a_clear_error(temporal_cli_env):
    code, out, err = await drctl("drill", "pause", "dr-nothing-drill-20260101T000000", env=temporal_cli_env)
    assert code == 1
    assert err.startswith("error:") and "Traceback" not in err


async def test_worker_stops_gracefully_on_sigterm(temporal_cli_env, tmp_path: Path):
    import signal

    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            DRCTL, "worker", env={**os.environ, **temporal_cli_env, "TEMPORAL_TASK_QUEUE": "sigterm-test"},
            stdout=out, stderr=out)
        try:
            # Up to a minute: a loaded machine running the whole suite can take 20 s to import and start a worker.
            for _ in range(600):
                if "worker.started" in log.read_text():
                    break
                await asyncio.sleep(0.1)
            assert "worker.started" in log.read_text()
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = log.read_text()
    assert code == 0, text
    assert "worker.stopping" in text and "worker.stopped" in text


def test_demo_interrupted_mid_drill_still_stops_everything(tmp_path: Path):
    import signal
    import subprocess
    import time

    # Another example plan, and the sandbox's port by option: the demo that runs to the end (tests/test_demo_ports.py)
    # is `make demo`'s command, so these two options of it are seen here, where the sandbox has started.
    sandbox_port = free_port()
    log = tmp_path / "demo.out"
    with log.open("w") as out:
        demo = subprocess.Popen([DRCTL, "demo", "--state-dir", str(tmp_path / "state"), "--plan",
                                 "plans/examples/web-app.yaml", "--sandbox-port", str(sandbox_port)], stdout=out,
                                stderr=subprocess.STDOUT, env={k: v for k, v in os.environ.items()
                                                               if not k.startswith("AWS_")})
        reaper.watch(demo.pid)  # stopped (and it stops what it started) even if this session is killed outright
        try:
            deadline = time.monotonic() + 120
            while "• Worker" not in log.read_text() and time.monotonic() < deadline and demo.poll() is None:
                time.sleep(0.1)
            demo.send_signal(signal.SIGINT)  # what Ctrl-C delivers
            code = demo.wait(timeout=60)
        finally:
            if demo.poll() is None:
                demo.kill()
    text = log.read_text()
    assert code == 130, text
    assert "Interrupted: stopping everything the demo started." in text
    assert "• Sandbox (local AWS), scenario 'demo': starting" in text  # the scenario of the plan given
    assert f"  sandbox on 127.0.0.1:{sandbox_port}, ready in " in text
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", text)]
    assert pids, text
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
