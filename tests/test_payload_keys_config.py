"""The payload key configuration as operators meet it: drctl and `drctl worker` refuse to start without a key file
(unless encryption is turned off explicitly) or with a bad one, in one line naming the file and the entry; and a
KMS-wrapped key, made by `drctl keys rotate --kms` with a KMS key of the sandbox (moto over HTTP, real boto3)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import uuid
from pathlib import Path

import boto3
from temporalio.client import Client

from activities.core.aws import AwsClients
from contracts.lifecycle import RunStatus
from tests.cli_helpers import DRCTL, cli_env, drctl, worker_env
from tests.identity_helpers import session_keys_file
from tests.lifecycle_helpers import finish, make_plan, start_run, wait_resource
from tests.payload_history import key_ids, raw_history
from workers.encryption import KeyRing, data_converter
from workers.main import ACTIVITY_THREADS, build_worker


def refusal(code: int, out: str, err: str) -> str:
    """drctl's error: exit 1, one line, no traceback."""
    assert code == 1, (out, err)
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    return err


async def worker_refusal(env: dict[str, str]) -> str:
    """`drctl worker`'s one logged error line when it cannot start (it exits 1 before serving anything)."""
    process = await asyncio.create_subprocess_exec(DRCTL, "worker", env={**os.environ, **env},
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode()
    assert process.returncode == 1 and "Traceback" not in text, text
    [line] = [line for line in text.splitlines() if "worker.failed" in line]
    return line


async def test_without_a_key_file_drctl_and_the_worker_refuse_unless_encryption_is_off(worker, temporal_env):
    env = {**cli_env(temporal_env), "DR_PAYLOAD_KEYS_FILE": ""}
    err = refusal(*await drctl("drill", "list", env=env))
    assert "no payload key file: set DR_PAYLOAD_KEYS_FILE (create one with `drctl keys rotate --file PATH`" in err
    assert "DR_PAYLOAD_ENCRYPTION=off" in err
    assert "no payload key file" in await worker_refusal({**worker_env(temporal_env, "nowhere"), **env})
    code, out, err = await drctl("drill", "list", env={**env, "DR_PAYLOAD_ENCRYPTION": "off"})
    assert code == 0, err
    assert "payloads.unencrypted" in err and "stored in Temporal's history in clear" in err
    err = refusal(*await drctl("drill", "list", env={**env, "DR_PAYLOAD_ENCRYPTION": "maybe"}))
    assert "DR_PAYLOAD_ENCRYPTION must be 'on' or 'off', not 'maybe'" in err


async def test_a_bad_key_file_is_named_with_its_entry(worker, temporal_env, tmp_path: Path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"writeKey": "k1", "keys": [{"id": "k1", "material": "not base64!"}]}))
    env = {**cli_env(temporal_env), "DR_PAYLOAD_KEYS_FILE": str(keys)}
    expected = f"{keys}: keys[0]: \"material\" is not base64"
    assert expected in refusal(*await drctl("drill", "list", env=env))
    assert expected in await worker_refusal({**worker_env(temporal_env, "nowhere"), **env})


async def test_auth_init_writes_a_private_key_file_and_keys_show_lists_it_without_material(tmp_path: Path):
    code, out, err = await drctl("auth", "init", "--dir", str(tmp_path / "auth"), env={})
    assert code == 0, err
    keys = tmp_path / "auth" / "payload-keys.json"
    assert f"export DR_PAYLOAD_KEYS_FILE={keys.resolve()}" in out
    assert keys.stat().st_mode & 0o777 == 0o600
    first = json.loads(keys.read_text())
    # --force replaces the signing key, never the payload keys: what they sealed must stay readable.
    code, out, err = await drctl("auth", "init", "--dir", str(tmp_path / "auth"), "--force", env={})
    assert code == 0 and "(kept)" in out and json.loads(keys.read_text()) == first, err
    code, out, err = await drctl("keys", "show", "--file", str(keys), env={})
    assert code == 0, err
    assert f"  {first['writeKey']}  local  (writing)" in out
    assert first["keys"][0]["material"] not in out


async def test_a_kms_wrapped_key_runs_a_drill_and_a_wrong_kms_key_is_named(worker, sandbox, temporal_env,
                                                                            tmp_path: Path):
    kms = boto3.client("kms", region_name="us-east-1")
    kms_key = kms.create_key(Description="dr payloads")["KeyMetadata"]["KeyId"]
    keys = tmp_path / "keys.json"
    code, out, err = await drctl("keys", "rotate", "--file", str(keys), "--kms", kms_key, "--region", "us-east-1",
                                 env={})
    assert code == 0, err
    document = json.loads(keys.read_text())
    [entry] = document["keys"]
    assert entry["id"] == document["writeKey"] and "material" not in entry  # only the wrapped form is kept
    assert entry["kms"]["keyId"] == kms_key and entry["kms"]["region"] == "us-east-1"
    code, out, err = await drctl("keys", "show", "--file", str(keys), env={})
    assert f"  {entry['id']}  kms {kms_key}  (writing)" in out, err

    # A worker with that ring (unwrapped through KMS over HTTP) runs a drill to completion, sealing with the key.
    ring = KeyRing.load(keys)
    client = Client(worker.client.service_client, namespace=worker.client.namespace,
                    data_converter=data_converter(ring))
    queue = f"kms-{uuid.uuid4().hex[:8]}"
    plan = make_plan({"ACTIVATE": [{"name": "l", "resources": [wait_resource("w")]}]}, name="kms-sealed")
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(client, queue, AwsClients(), executor):
            handle = await start_run(client, queue, plan)
            assert (await finish(handle)).status is RunStatus.COMPLETED
    history = await raw_history(worker.client, handle.id)
    assert entry["id"] in key_ids(history.events[0])

    # The entry pointed at another KMS key: drctl and the worker name the file, the entry and the KMS key.
    other = kms.create_key(Description="not ours")["KeyMetadata"]["KeyId"]
    entry["kms"]["keyId"] = other
    keys.write_text(json.dumps(document))
    env = {**cli_env(temporal_env), "DR_PAYLOAD_KEYS_FILE": str(keys)}
    err = refusal(*await drctl("drill", "list", env=env))
    assert f"{keys}: keys[0]: KMS cannot unwrap key '{entry['id']}' with {other}: " in err, err
    assert "AccessDenied" in err
    line = await worker_refusal({**worker_env(temporal_env, "nowhere"), **env})
    assert f"{keys}: keys[0]: KMS cannot unwrap key '{entry['id']}' with {other}" in line, line


async def test_a_run_sealed_with_a_key_drctl_lacks_is_a_one_line_error_naming_the_key(worker, temporal_env,
                                                                                      tmp_path: Path):
    handle = await start_run(worker.client, worker.task_queue, make_plan(
        {"ACTIVATE": [{"name": "l", "resources": [wait_resource("w")]}]}, name="other-ring"))
    assert (await finish(handle)).status is RunStatus.COMPLETED
    keys = tmp_path / "other-keys.json"
    code, _, err = await drctl("keys", "rotate", "--file", str(keys), env={})
    assert code == 0, err
    session_key = KeyRing.load(session_keys_file()).write_key
    err = refusal(*await drctl("drill", "status", handle.id, env={**cli_env(temporal_env),
                                                                   "DR_PAYLOAD_KEYS_FILE": str(keys)}))
    assert f"cannot open the run's payloads: payload sealed with key '{session_key}', which is not in this key ring" \
        in err, err
