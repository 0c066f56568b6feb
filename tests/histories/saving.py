"""How tests/histories/record.py saves a run: its history (payloads opened), its child workflows' histories, and
their entries in index.json naming the commit, the release and the workflow code they stand for. Refuses to record
when the workflow code in the tree is not a commit's."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from tests.identity_helpers import session_keys_file
from tests.payload_history import payloads_in
from workers.encryption import EncryptionCodec, KeyRing

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
INDEX = HERE / "index.json"
# What a workflow does is decided by these (everything workflows/ imports of ours).
WORKFLOW_CODE = ("workflows", "plans", "contracts/activities.py", "contracts/drs.py")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def release() -> str:
    """The project's version (pyproject.toml): the release a history is recorded on, as people name it."""
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def recorded_on() -> dict[str, str]:
    """The commit recorded on, its release, and the last commit that changed workflow code: the code a history
    stands for. Refused when the workflow code in the tree is not a commit's."""
    dirty = _git("status", "--porcelain", "--", *WORKFLOW_CODE)
    if dirty:
        pytest.exit(f"workflow code differs from HEAD, a recording would stand for no commit:\n{dirty}", returncode=2)
    return {"recordedOn": _git("rev-parse", "HEAD"), "release": release(),
            "workflowCodeOf": _git("log", "-1", "--format=%H", "--", *WORKFLOW_CODE)}


def not_recorded_yet(name: str) -> None:
    if (HERE / f"{name}.json").exists():
        pytest.skip(f"{name}.json is recorded already; old histories stay (see tests/histories/README.md)")


async def save(client: Client, handle: WorkflowHandle[Any, Any], name: str, scenario: str) -> None:
    """Write the run's history, then each child workflow's, and list them in index.json with their workflow ids
    (a history does not hold its own id, and the replayer needs it: child ids are derived from it)."""
    history = await handle.fetch_history()
    # Committed in clear: the session's payload key dies with the session, and CI replays with keys of its own (the
    # codec reads payloads in clear as they are). Opening them changes no command, so the replay is the same.
    codec = EncryptionCodec(KeyRing.load(session_keys_file()))
    for event in history.events:
        for payload in payloads_in(event):
            payload.CopyFrom(codec.open(payload))
    (HERE / f"{name}.json").write_text(history.to_json())
    index = json.loads(INDEX.read_text()) if INDEX.exists() else {}
    started = history.events[0].workflow_execution_started_event_attributes
    index[f"{name}.json"] = {"workflowId": history.workflow_id, "workflowType": started.workflow_type.name,
                             "events": len(history.events), **recorded_on(),
                             # str hashes, so the order of iterating a set of str, depend on it: see README.
                             "pythonHashSeed": os.environ.get("PYTHONHASHSEED", "random"), "scenario": scenario}
    INDEX.write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    for event in history.events:
        if event.HasField("child_workflow_execution_started_event_attributes"):
            child = event.child_workflow_execution_started_event_attributes.workflow_execution
            suffix = child.workflow_id.removeprefix(f"{history.workflow_id}/").replace("/", ".")
            await save(client, client.get_workflow_handle(child.workflow_id, run_id=child.run_id),
                       f"{name}.{suffix}", f"the child workflow {suffix} of {name}")
