"""The run page's texts, from states built by hand (no server): a DRS child's wave progress, a gate's deadline, a
PARTIAL run's outcome."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.drs_recovery import DrsRecoveryState, ServerRecord, ServerStatus, WaveRecord, WaveStatus
from contracts.lifecycle import Approval, Gate, HookState, LifecycleInput, RunStatus, StepStatus
from plans.model import Mode, Phase
from tests.lifecycle_helpers import make_plan, wait_resource
from workflows.run_details import drs_details, gate_line, lifecycle_details
from workflows.state import close, new_state, result_of

NOW = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)


def _server(sid: str, wave: str, status: ServerStatus) -> ServerRecord:
    return ServerRecord(id=sid, group="g", wave=wave, impact="critical", target_key="1/us-west-2", status=status)


def test_drs_details_show_each_waves_progress_the_running_ones_first() -> None:
    servers = {**{f"db{i}": _server(f"db{i}", "db", ServerStatus.LAUNCHED) for i in range(2)},
               **{f"web{i}": _server(f"web{i}", "web", s) for i, s in enumerate(
                   [ServerStatus.LAUNCHED, ServerStatus.LAUNCHING, ServerStatus.FAILED])}}
    state = DrsRecoveryState(
        workflow_id="w", resource="servers", phase=Phase.ACTIVATE, mode=Mode.DRILL, started_at=NOW,
        waves=[WaveRecord(name="db", depends_on=[], status=WaveStatus.SUCCEEDED, servers=["db0", "db1"]),
               WaveRecord(name="web", depends_on=["db"], status=WaveStatus.RUNNING,
                          servers=["web0", "web1", "web2"])],
        servers=servers)
    assert drs_details(state).splitlines() == [
        "**DRS ACTIVATE** of servers (drill): RUNNING",
        "- web: RUNNING, 1/3 launched, 1 failed",
        "- db: SUCCEEDED, 2/2 launched",
    ]


def test_a_gate_line_says_who_may_approve_who_has_and_when_it_times_out() -> None:
    gate = Gate(id="ACTIVATE/servers", requested_at=NOW, required=2, roles=["recovery-manager"],
                approvals=[Approval(actor="alice@example.com", roles=["recovery-manager"], at=NOW)],
                timeout_at=datetime(2026, 12, 5, 21, 30, tzinfo=UTC), on_timeout="abort")
    assert gate_line(gate) == (
        "Waiting for approval of `ACTIVATE/servers`: 2 approval(s) from recovery-manager; 1 of 2 "
        "(alice@example.com) so far; times out at 2026-12-05 21:30 UTC (abort). "
        "Approve with the `approve` update or signal (`drctl drill approve`).")


def test_a_partial_run_says_so_first_and_a_drs_state_names_its_failed_optional_servers() -> None:
    servers = {f"web{i}": _server(f"web{i}", "web", s) for i, s in enumerate(
        [ServerStatus.LAUNCHED, ServerStatus.FAILED, ServerStatus.TIMED_OUT, ServerStatus.FAILED, ServerStatus.FAILED])}
    servers["web1"].hostname, servers["web1"].detail = "web-1.example.com", "LAUNCH_FAILED: no capacity"
    child = DrsRecoveryState(
        workflow_id="w", resource="servers", phase=Phase.ACTIVATE, mode=Mode.DRILL, started_at=NOW,
        waves=[WaveRecord(name="db", depends_on=[], status=WaveStatus.PARTIAL, post_hooks=[HookState(
                   name="smoke", when="post", kind="lambda", target="smoke:1", account="1", region="us-west-2",
                   on_failure="continue", timeout_seconds=60, status=StepStatus.FAILED, error="FunctionError")]),
               WaveRecord(name="web", depends_on=["db"], status=WaveStatus.PARTIAL, servers=list(servers))],
        servers=servers)
    assert child.within_policy() == ["wave db: post-hook smoke failed: FunctionError",
                                     "wave web: 4 optional servers failed (web-1.example.com: LAUNCH_FAILED: no "
                                     "capacity, web2: TIMED_OUT, web3: FAILED, ...)"]

    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("a")]}]}, name="web")
    state = new_state(LifecycleInput(plan=plan, mode=Mode.DRILL, initiator="alice"), "dr-x", NOW)
    close(state, RunStatus.PARTIAL, "drill of web partial: ACTIVATE/l/a: boom", NOW)
    first, outcome = lifecycle_details(state, result_of(state).message).split("\n\n")
    assert first == ("**drill of web** by alice: **PARTIAL** (some steps failed within the plan's policy), "
                     "phases done: none")
    assert outcome == "drill of web partial: ACTIVATE/l/a: boom"
