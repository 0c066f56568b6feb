"""`temporal workflow show --codec-endpoint ... --codec-auth "Bearer ..."` of a run whose payloads were sealed
(issue 14, "Must show"): a drill started by a client and run by a worker that both seal with the payload key ring, on
the real dev server, read through `drctl codec-server`. Without the codec endpoint the CLI shows sealed payloads only; with it,
the run's input (its token, the plan's account id) and its summaries, decoded; with a token that may not view runs,
the codec server refuses and the CLI shows nothing decoded."""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.core.aws import AwsClients
from contracts.lifecycle import WORKFLOW_TYPE, LifecycleInput, LifecycleResult
from contracts.run_metadata import start_metadata
from plans.model import Mode
from tests.cli_helpers import temporal
from tests.codec_helpers import codec_server, new_key_file
from tests.identity_helpers import session_idp, token_for
from tests.lifecycle_helpers import finish, make_plan, wait_resource
from workers.encryption import data_converter
from workers.main import ACTIVITY_THREADS, build_worker

INITIATOR = "sealed-initiator@example.com"
ACCOUNT = "210987654321"  # the plan's account id: in clear nowhere but the codec's answers


@dataclasses.dataclass
class SealedWorker:
    client: Client
    task_queue: str


@pytest.fixture
async def sealed(temporal_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[tuple[SealedWorker, Path]]:
    """A client and a worker of the session's dev server that seal every payload with a key file of this test."""
    ring = new_key_file(tmp_path / "keys.json")
    client = await Client.connect(temporal_env.client.service_client.config.target_host,
                                  namespace=temporal_env.client.namespace, data_converter=data_converter(ring))
    task_queue = f"codec-cli-{uuid.uuid4().hex[:8]}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(client, task_queue, AwsClients(), executor):
            yield SealedWorker(client, task_queue), tmp_path / "keys.json"


async def test_workflow_show_decodes_through_the_codec_server(sealed: tuple[SealedWorker, Path],
                                                             tmp_path: Path) -> None:
    worker, keys_file = sealed
    plan = make_plan({"ACTIVATE": [{"name": "switch", "resources": [wait_resource("pause", 1)]}]},
                     name="sealed-plan", accounts={"hub": {"id": ACCOUNT}})
    token = token_for(INITIATOR, ["operator"])
    run_input = LifecycleInput(plan=plan, mode=Mode.DRILL, initiator=INITIATOR, token=token)
    workflow_id = f"codec-cli-{uuid.uuid4().hex[:10]}"
    handle = await worker.client.start_workflow(WORKFLOW_TYPE, run_input, id=workflow_id,
                                                task_queue=worker.task_queue, result_type=LifecycleResult,
                                                **start_metadata(run_input))
    assert (await finish(handle)).status.value == "COMPLETED"

    # Without the codec endpoint: sealed payloads, nothing of the input, summaries or result readable.
    clear, sealed_count = await shown(worker, workflow_id)
    assert sealed_count > 10
    assert token not in clear and ACCOUNT not in clear and f"drill of sealed-plan by {INITIATOR}" not in clear
    code, text = await temporal(worker, "workflow", "show", "--workflow-id", workflow_id, codec=False)
    assert code == 0 and "ResultEncoding  binary/encrypted" in text and "drill of sealed-plan completed" not in text

    viewer = token_for("viewer@example.com", ["read-only"])
    refused_token = token_for("nobody@example.com", [])
    with codec_server(keys_file, session_idp().trust_file, tmp_path / "codec.log") as url:
        codec = ("--codec-endpoint", url, "--codec-auth", f"Bearer {viewer}")
        clear, sealed_count = await shown(worker, workflow_id, *codec)
        assert sealed_count == 0  # every payload opened
        # The start input (its token, the plan's account id), the static summary, the activities' summaries.
        assert token in clear and ACCOUNT in clear
        assert f"drill of sealed-plan by {INITIATOR}" in clear and "ACTIVATE / switch / pause" in clear
        code, text = await temporal(worker, "workflow", "show", "--workflow-id", workflow_id, *codec, codec=False)
        assert code == 0 and "ResultEncoding  json/plain" in text and "drill of sealed-plan completed" in text

        code, refused = await temporal(worker, "workflow", "show", "--workflow-id", workflow_id,
                                       "--codec-endpoint", url, "--codec-auth", f"Bearer {refused_token}",
                                       codec=False)
        assert code != 0 and "drill of sealed-plan completed" not in refused and token not in refused
    log = (tmp_path / "codec.log").read_text()
    assert "subject=viewer@example.com" in log and "nobody@example.com may not view runs" in log
    assert viewer not in log and refused_token not in log


async def shown(worker: SealedWorker, workflow_id: str, *codec: str) -> tuple[str, int]:
    """`temporal workflow show -o json`: every payload's data as text (protobuf JSON holds it in base64), joined,
    and how many payloads are still sealed."""
    # The codec endpoint, if any, is this test's own (the helper's default one holds the session's key, not this).
    code, out = await temporal(worker, "workflow", "show", "--workflow-id", workflow_id, "-o", "json", *codec,
                               codec=False)
    assert code == 0, out
    payloads = list(_payloads(json.loads(out)))
    sealed = sum(base64.b64decode(p["metadata"]["encoding"]) == b"binary/encrypted" for p in payloads)
    return "\n".join(base64.b64decode(p.get("data", "")).decode(errors="replace") for p in payloads), sealed


def _payloads(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            yield node
        else:
            for value in node.values():
                yield from _payloads(value)
    elif isinstance(node, list):
        for value in node:
            yield from _payloads(value)
