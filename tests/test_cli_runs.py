"""drctl as an operator uses it: real processes against the dev server and the sandbox."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

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
    assert re.fullmatch(r"dr-cli-ok-drill-\d{8}T\d{6}", workflow_id)
    assert f"Run {workflow_id}: COMPLETED" in out
    assert "/namespaces/default/workflows/" + workflow_id in err  # the UI link


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


def test_demo_completes_and_leaves_nothing_running(tmp_path: Path):
    """`make demo` runs exactly this command."""
    import subprocess

    done = subprocess.run([DRCTL, "demo", "--state-dir", str(tmp_path / "state")], capture_output=True,
                          text=True, timeout=240, env={k: v for k, v in os.environ.items()
                                                       if not k.startswith("AWS_")})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for phase in ("INSTANTIATE", "ACTIVATE", "CLEANUP", "REPLICATE"):
        assert re.search(rf"^  {phase}\s+SUCCEEDED", done.stdout, re.MULTILINE), phase
    assert "Drill completed; production untouched." in done.stdout
    assert "Temporal UI: http://127.0.0.1:" in done.stdout
    assert "scenario 'three-tier'" in done.stdout
    # Live progress of the DRS recovery, per wave and per server, then a summary line per wave.
    assert re.search(r"^\s+▶ wave (db|app|reporting|web): RUNNING — \d+/\d+ launched$", done.stdout, re.MULTILINE)
    for wave, servers in (("db", 4), ("app", 6), ("reporting", 2), ("web", 8)):
        assert re.search(rf"^\s+✔ wave {wave}: SUCCEEDED — {servers}/{servers} launched$", done.stdout,
                         re.MULTILINE), wave
        assert re.search(rf"^\s+wave {wave}\s+SUCCEEDED\s+{servers}/{servers} launched", done.stdout, re.MULTILINE)
    assert re.search(r"✔ orders-db-01\.corp\.example\.com LAUNCHED → i-[0-9a-f]+$", done.stdout, re.MULTILINE)
    # db before app and reporting, app before web: the order the waves ended in the output.
    ended = [m.group(1) for m in re.finditer(r"✔ wave (\w+): SUCCEEDED — \d+/\d+ launched", done.stdout)]
    assert ended.index("db") < min(ended.index("app"), ended.index("reporting"))
    assert ended.index("app") < ended.index("web")
    # Production as it was, and none of this execution's drill instances left (asked of DRS in both accounts).
    assert "Production after the drill: unchanged" in done.stdout
    assert "www.orders.example.com: ['web.us-east-1.orders.example.com']" in done.stdout
    assert "orders-rds-replica status: available" in done.stdout
    assert "drill recovery instances of this execution: 20 launched, 0 left after CLEANUP" in done.stdout
    # The UI server itself lists the run with every search attribute (asked through the UI's own HTTP API).
    listed = re.search(r"Temporal UI lists the run .*: (DrPlan=.*)$", done.stdout, re.MULTILINE)
    assert listed, done.stdout[-2000:]
    for expected in ("DrPlan=three-tier", "DrMode=drill", "DrPhase=REPLICATE", "DrStatus=COMPLETED",
                     "DrInitiator="):
        assert expected in listed.group(1)
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", done.stdout)]
    assert len(pids) == 3
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (tmp_path / "state" / "temporal.db").exists()


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

    log = tmp_path / "demo.out"
    with log.open("w") as out:
        demo = subprocess.Popen([DRCTL, "demo", "--state-dir", str(tmp_path / "state")], stdout=out,
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
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", text)]
    assert pids, text
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
