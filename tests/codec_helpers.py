"""`drctl codec-server` as a real process for tests, and the HTTP calls the Temporal UI and CLI make to it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from drctl.codec_cmd import READY
from tests import reaper
from tests.cli_helpers import DRCTL
from workers.encryption import KeyRing, local_entry, write_key_file


def new_key_file(path: Path, key_id: str = "k1") -> KeyRing:
    write_key_file(path, [local_entry(key_id)], key_id)
    return KeyRing.load(path)


@contextmanager
def codec_server(keys_file: Path, trust_file: Path, log: Path, *options: str) -> Iterator[str]:
    """The server on a free loopback port until the block ends (SIGTERM, by PID); yields its URL."""
    out = log.open("ab")
    process = subprocess.Popen([DRCTL, "codec-server", "--port", "0", "--keys-file", str(keys_file),
                                "--trust-file", str(trust_file), *options], stdout=out, stderr=out,
                               start_new_session=True)
    reaper.watch(process.pid)
    try:
        deadline = time.monotonic() + 30
        while READY not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield log.read_text().split(READY, 1)[1].split()[0]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        out.close()


def call(url: str, method: str = "POST", body: Any = None, raw: bytes | None = None,
         **headers: str) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON answer or None) of one request; header names with '_' for '-' (X_Namespace)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={k.replace("_", "-"): v for k, v in headers.items()})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, answer_headers, text = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, text = error.code, dict(error.headers), error.read()
    return status, answer_headers, json.loads(text) if text else None
