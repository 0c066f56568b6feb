"""`drctl demo`: the whole product on one machine, start to finish, with nothing left running afterwards.

Starts a Temporal dev server (SQLite in the state folder, Web UI), the sandbox seeded with the three-tier scenario
and a worker; runs a drill of plans/examples/three-tier.yaml through the four phases while printing its progress (per
phase, layer and resource, and per DRS wave and server); checks that the drill left production as it was and no drill
recovery instance of its own behind; stops everything it started, also on Ctrl-C or failure.
"""

from __future__ import annotations

import secrets

import asyncio
import os
import shlex
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from drctl.demo_services import (
    SANDBOX_CREDENTIALS,
    CodecServerForUi,
    PortInUse,
    RequestedPorts,
    start_sandbox,
    start_temporal,
)
from drctl.dev_idp import DevIdentityProvider
from drctl.errors import EXIT_USAGE
from drctl.keys_cmd import KEY_FILE_NAME, ensure_local_key_file, export_line
from drctl.processes import ManagedProcess, venv_tool, wait_for_line
from drctl.progress import ProgressPrinter, follow, summary, ui_link
from workers.encryption import KEYS_FILE_ENV

DEMO_PLAN = Path(__file__).resolve().parent.parent / "plans" / "examples" / "three-tier.yaml"
# The sandbox scenario holding the estate each example plan expects; any other plan gets --scenario or 'three-tier'.
SCENARIO_FOR_PLAN = {"three-tier": "three-tier", "web-app": "demo"}


def token_hint(idp: DevIdentityProvider, subject: str) -> str:
    """A shell line giving drctl a token of the demo's identity provider. Absolute paths, so that it works as
    printed from any directory: drctl may not be on PATH, and `make -C` runs the demo elsewhere than the shell."""
    drctl = shlex.quote(venv_tool("drctl"))
    directory = shlex.quote(str(idp.directory.resolve()))
    return f"export DRCTL_TOKEN=$({drctl} auth token {shlex.quote(subject)} --role operator --dir {directory})"


def codec_hint(address: str, workflow_id: str, codec_url: str) -> str:
    """The `temporal` CLI reading a run through the codec server, as the user whose token is in DRCTL_TOKEN (the
    codec server verifies it: any role that may view runs)."""
    return (f"{shlex.quote(venv_tool('temporal'))} workflow show --address {address} --workflow-id {workflow_id} "
            f"--codec-endpoint {codec_url} --codec-auth \"Bearer $DRCTL_TOKEN\"")


def run_demo(state_dir: Path, plan_file: Path, keep: bool, scenario: str | None = None,
             ports: RequestedPorts = RequestedPorts()) -> int:
    started = time.monotonic()
    scenario = scenario or SCENARIO_FOR_PLAN.get(plan_file.stem, "three-tier")
    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    children: list[ManagedProcess] = []
    # SIGTERM (e.g. from a CI runner) must clean up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        ports.check()
        # The identity provider and the payload keys first: the codec server the UI decodes through needs both.
        idp = DevIdentityProvider.ensure(state_dir / "auth")
        key_file = (idp.directory / KEY_FILE_NAME).resolve()  # seals the demo's payloads (tokens, plan) in history
        ensure_local_key_file(key_file)
        codec = CodecServerForUi(key_file, idp.trust_file.resolve(), logs / "codec-server.log", children,
                                 click.echo)
        _, temporal_port, ui_port = start_temporal(state_dir / "temporal.db", logs / "temporal.log", ports,
                                                   children, click.echo, codec=codec)
        _, sandbox_url = start_sandbox(scenario, logs / "sandbox.log", ports, children, click.echo)
        aws_env = {**SANDBOX_CREDENTIALS, "AWS_ENDPOINT_URL": sandbox_url}

        initiator = f"{os.environ.get('USER') or 'demo'}@demo.local"
        click.echo(f"• Development identity provider in {idp.directory}; a token for drctl:\n"
                   f"    {token_hint(idp, initiator)}")
        click.echo("• Worker on task queue dr-orchestrator: starting …")
        worker_started = time.monotonic()
        worker_env = {**aws_env, "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}", "TEMPORAL_NAMESPACE": "default",
                      "DR_AUTH_TRUST_FILE": str(idp.trust_file.resolve()), KEYS_FILE_ENV: str(key_file),
                      "DR_POLL_CAP_SECONDS": "1"}  # the sandbox finishes operations in seconds
        worker = ManagedProcess("worker", [venv_tool("drctl"), "worker"], logs / "worker.log", env=worker_env)
        children.append(worker)
        wait_for_line(worker, "worker.started", 60)
        click.echo(f"  ready in {time.monotonic() - worker_started:.1f} s")

        os.environ.update(aws_env)
        # Loading the workflow code and reading production's state (to compare after the drill) takes a few seconds.
        click.echo("• Drill: reading production's state, to compare after it …")
        ui_base = f"http://127.0.0.1:{ui_port}"
        code = asyncio.run(_drill(f"127.0.0.1:{temporal_port}", plan_file, ui_base, idp, initiator, key_file,
                                  codec.url))
        click.echo(f"\nDemo finished in {time.monotonic() - started:.1f} s (logs in {logs}).")
        if keep and code == 0:
            click.echo(f"Temporal UI stays at {ui_base} — press Ctrl-C to stop everything. drctl in another shell:\n"
                       f"    export TEMPORAL_ADDRESS=127.0.0.1:{temporal_port}\n    {export_line(key_file)}\n"
                       f"    {token_hint(idp, initiator)}\n"
                       f"  and a run's history, decoded through the codec server:\n"
                       f"    {codec_hint('$TEMPORAL_ADDRESS', 'WORKFLOW_ID', codec.url)}")
            while True:
                time.sleep(3600)
        return code
    except KeyboardInterrupt:
        click.echo("\nInterrupted: stopping everything the demo started.", err=True)
        return 130
    except PortInUse as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    except RuntimeError as exc:
        click.echo(f"demo failed: {exc}", err=True)
        return 1
    except Exception:  # a bug, not an operator error: keep the whole story, but still clean up below
        import traceback

        click.echo(f"demo failed unexpectedly:\n{traceback.format_exc()}", err=True)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for child in reversed(children):
            child.stop()
        if children:
            click.echo(f"Stopped {len(children)} processes: " + ", ".join(f"{c.name} (pid {c.pid})" for c in children))


async def _drill(address: str, plan_file: Path, ui_base: str, idp: DevIdentityProvider, initiator: str,
                 key_file: Path, codec_url: str) -> int:
    from temporalio.client import Client

    from workers.encryption import KeyRing, data_converter

    from activities.core.registry import catalogue
    from plans.loader import load_plan
    from plans.model import Mode
    from contracts.search_attributes import start_search_attributes
    from contracts.run_metadata import start_metadata
    from contracts.lifecycle import DEFAULT_TASK_QUEUE, WORKFLOW_TYPE, LifecycleInput, workflow_id_for

    plan = load_plan(plan_file, catalogue=catalogue())
    client = await Client.connect(address, data_converter=data_converter(KeyRing.load(key_file)))
    run_input = LifecycleInput(plan=plan, mode=Mode.DRILL, initiator=initiator,
                               token=idp.token(initiator, ["operator"], ttl_seconds=3600))
    workflow_id = workflow_id_for(plan.name, Mode.DRILL, datetime.now(UTC), secrets.token_hex(3))
    before = _production_snapshot(plan)
    handle = await client.start_workflow(
        WORKFLOW_TYPE, run_input, id=workflow_id, task_queue=DEFAULT_TASK_QUEUE,
        search_attributes=start_search_attributes(run_input), **start_metadata(run_input),
    )
    click.echo(f"\nDrill of plan '{plan.name}' ({plan_file.name}) started: {workflow_id}")
    click.echo(f"  Temporal UI: {ui_link(ui_base, 'default', workflow_id)}")
    click.echo(f"  Its history in the CLI, decoded (after the token line above):\n"
               f"    {codec_hint(address, workflow_id, codec_url)}\n")
    state = await follow(handle, ProgressPrinter(), client=client)
    click.echo("")
    for line in summary(state):
        click.echo(line)
    listed = _listed_in_ui(ui_base, plan.name, workflow_id)
    click.echo(f"\nTemporal UI lists the run ({ui_base}, filter: DrPlan = \"{plan.name}\"): "
               + (" ".join(f"{k}={v}" for k, v in listed.items()) if listed else "NOT FOUND"))
    after = _production_snapshot(plan)
    untouched = before == after
    click.echo(f"\nProduction after the drill: {'unchanged' if untouched else 'CHANGED'}")
    for key, value in after.items():
        click.echo(f"  {key}: {value}" + ("" if before.get(key) == value else f" (was {before.get(key)})"))
    launched, left = _drill_instances(plan, workflow_id)
    clean = not left
    click.echo(f"  drill recovery instances of this execution: {launched} launched, {len(left)} left after CLEANUP"
               + (f": {', '.join(left)}" if left else ""))
    if state.status.value == "COMPLETED" and untouched and clean and listed:
        click.echo("\nDrill completed; production untouched.")
        return 0
    return 1


def _listed_in_ui(ui_base: str, plan_name: str, workflow_id: str) -> dict[str, str]:
    """Ask the UI server what an operator's filter shows, through the same HTTP API the UI's pages call."""
    import base64
    import json
    import urllib.parse
    import urllib.request

    query = urllib.parse.quote(f'DrPlan="{plan_name}" AND WorkflowId="{workflow_id}"')
    url = f"{ui_base}/api/v1/namespaces/default/workflows?query={query}"
    # Visibility is eventually consistent: the closing upsert can take a moment to be indexed.
    for _ in range(20):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                executions = json.load(response).get("executions", [])
        except OSError:
            executions = []
        if executions:
            fields = executions[0].get("searchAttributes", {}).get("indexedFields", {})
            listed = {name: json.loads(base64.b64decode(fields[name]["data"]))
                      for name in ("DrPlan", "DrMode", "DrPhase", "DrStatus", "DrInitiator") if name in fields}
            if listed.get("DrStatus") not in (None, "RUNNING"):
                return listed
        time.sleep(0.5)
    return {}


def _production_snapshot(plan: Any) -> dict[str, Any]:
    """What a drill must not change, read from the plan's own resources: each live DNS record it would move and each
    read replica it would promote (still a replica of its primary, still available)."""
    from sandbox.scenario import session_in

    snapshot: dict[str, Any] = {}
    for phase in plan.phases.values():
        for layer in phase.layers:
            for resource in layer.resources:
                params = resource.parameters
                session = session_in(plan.accounts[plan.account_key_for(resource)].id)
                if resource.action == "route53.record" and params["recordName"] not in snapshot:
                    route53 = session.client("route53", region_name="us-east-1")
                    zone_id = route53.list_hosted_zones_by_name(DNSName=params["zoneName"])["HostedZones"][0]["Id"]
                    records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
                    live = next(r for r in records if r["Name"].rstrip(".") == params["recordName"].rstrip("."))
                    snapshot[params["recordName"]] = [v["Value"] for v in live.get("ResourceRecords", [])]
                elif resource.action == "rds.read_replica" and \
                        f"{params['replicaIdentifier']} source" not in snapshot:
                    replica = session.client("rds", region_name=plan.region_for(resource)).describe_db_instances(
                        DBInstanceIdentifier=params["replicaIdentifier"])["DBInstances"][0]
                    snapshot[f"{params['replicaIdentifier']} source"] = replica.get(
                        "ReadReplicaSourceDBInstanceIdentifier")
                    snapshot[f"{params['replicaIdentifier']} status"] = replica["DBInstanceStatus"]
    return snapshot


def _drill_instances(plan: Any, execution_id: str) -> tuple[int, list[str]]:
    """How many recovery instances this execution's DRS jobs launched, and which of them still exist: asked of DRS
    in every account and region of the plan's protection groups, through the jobs tagged with the execution."""
    from sandbox.scenario import session_in

    launched, left = 0, []
    targets = {(plan.accounts[plan.account_key_for(g)].id, plan.region_for(g)) for g in plan.protection_groups.values()}
    for account_id, region in sorted(targets):
        drs = session_in(account_id).client("drs", region_name=region)
        jobs = [j for page in drs.get_paginator("describe_jobs").paginate(filters={}) for j in page["items"]
                if j.get("tags", {}).get("dr:execution") == execution_id]
        ours = {j["jobID"] for j in jobs if j.get("type") == "LAUNCH"}
        launched += sum(len(j.get("participatingServers", [])) for j in jobs if j["jobID"] in ours)
        instances = [r for page in drs.get_paginator("describe_recovery_instances").paginate(filters={})
                     for r in page["items"]]
        left += [r["recoveryInstanceID"] for r in instances if r.get("jobID") in ours]
    return launched, left


@click.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".state/demo"),
              show_default=True, help="Where the dev server's SQLite file and the logs go.")
@click.option("--plan", "plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=DEMO_PLAN, show_default=True)
@click.option("--scenario", default=None,
              help="Sandbox scenario to seed (default: the one matching the plan; 'three-tier' for the default plan).")
@click.option("--keep", is_flag=True, help="After the drill, keep the dev server and UI up until Ctrl-C.")
@click.option("--temporal-port", type=click.IntRange(1, 65535), default=None,
              help="The dev server's gRPC port (default: 7233 if free, else any free port).")
@click.option("--ui-port", type=click.IntRange(1, 65535), default=None,
              help="The Temporal Web UI's port (default: 8233 if free, else any free port).")
@click.option("--sandbox-port", type=click.IntRange(1, 65535), default=None,
              help="The sandbox's port (default: any free port).")
def demo(state_dir: Path, plan_file: Path, scenario: str | None, keep: bool, temporal_port: int | None,
         ui_port: int | None, sandbox_port: int | None) -> None:
    """Run the end-to-end demo: dev server, sandbox, worker, a drill through all four phases.

    Ports given by option must be free (else an error); the others are chosen, and printed, so that a port taken
    by another program, even while the demo starts, never makes it fail."""
    raise SystemExit(run_demo(state_dir, plan_file, keep, scenario, RequestedPorts(temporal_port, ui_port,
                                                                                   sandbox_port)))
