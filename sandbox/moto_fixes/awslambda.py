"""Lambda Invoke without Docker (sandbox only): moto 5.2.5 runs a function's code in a Docker container, which this
machine does not have, so every invoke answers "error running docker".

For a zip-packaged Python function this runs its handler in a subprocess of the sandbox's own interpreter, from the
function's code unpacked in a temporary directory, with the event on stdin, the function's environment and its
timeout. The answer is shaped as Lambda's: status 200 and the handler's JSON result; an exception the handler raised
becomes FunctionError "Unhandled" with {"errorMessage", "errorType", "requestId", "stackTrace"}; a timeout becomes
FunctionError "Unhandled" with "Task timed out after N.00 seconds"; LogType Tail returns the last 4 KB of the log
(START / the function's output / END / REPORT), base64-encoded. Other runtimes keep moto's (Docker) behaviour.
Invoke aliases only (the alias fixes of another module live in their own file).
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from datetime import UTC, datetime
from typing import Any

from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.models import LambdaFunction

from sandbox.moto_fixes._guard import require

_MARK = "\x1edr-sandbox-result "
_RUNNER = r"""
import importlib, json, sys, time, traceback
task, handler, request_id, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
sys.path.insert(0, task)
deadline = time.time() + timeout

class Context:
    function_name = __import__("os").environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    function_version = __import__("os").environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    aws_request_id = request_id
    memory_limit_in_mb = __import__("os").environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    def get_remaining_time_in_millis(self):
        return max(int((deadline - time.time()) * 1000), 0)

event = json.loads(sys.stdin.read() or "{}")
try:
    module, name = handler.rsplit(".", 1)
    result = {"ok": getattr(importlib.import_module(module), name)(event, Context())}
except Exception as exc:
    result = {"error": {"errorMessage": str(exc), "errorType": type(exc).__name__, "requestId": request_id,
                        "stackTrace": traceback.format_tb(exc.__traceback__.tb_next)}}
sys.stdout.flush()
print("\x1edr-sandbox-result " + json.dumps(result, default=str))
"""


def _python_zip(function: Any) -> bool:
    return str(function.run_time or "").startswith("python") and bool(getattr(function, "code_bytes", b""))


def run_python_handler(function: Any, event: bytes) -> tuple[bytes, str | None, str]:
    """(payload, FunctionError or None, log text) of one invoke of `function` with `event`."""
    request_id = str(uuid.uuid4())
    timeout = float(function.timeout or 3)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "AWS_REGION": function.region, "AWS_DEFAULT_REGION": function.region,
           "AWS_LAMBDA_FUNCTION_NAME": function.function_name, "AWS_LAMBDA_FUNCTION_VERSION": function.version,
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size), "_HANDLER": function.handler,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    if os.environ.get("AWS_ENDPOINT_URL"):  # the function's own AWS calls go to the sandbox too
        env["AWS_ENDPOINT_URL"] = os.environ["AWS_ENDPOINT_URL"]
    env.update({str(k): str(v) for k, v in (function.environment_vars or {}).items()})
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sandbox-lambda-") as task:
        zipfile.ZipFile(io.BytesIO(function.code_bytes)).extractall(task)
        try:
            command = [sys.executable, "-u", "-c", _RUNNER, task, function.handler, request_id, str(timeout)]
            done = subprocess.run(command, input=event or b"{}", capture_output=True, timeout=timeout, env=env, cwd=task)
            output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            error = {"errorMessage": f"{stamp} {request_id} Task timed out after {timeout:.2f} seconds"}
            return json.dumps(error).encode(), "Unhandled", _log(request_id, function, output, started)
    printed, marked, last = output.rpartition(_MARK)
    if not marked:  # the runner died before answering (a crash of the interpreter, os._exit in the handler)
        error = {"errorMessage": f"RequestId: {request_id} Error: Runtime exited with error", "errorType":
                 "Runtime.ExitError"}
        return json.dumps(error).encode(), "Unhandled", _log(request_id, function, output, started)
    result_line, _, after = last.partition("\n")
    result = json.loads(result_line)
    log = _log(request_id, function, printed + after, started)
    if "error" in result:
        return json.dumps(result["error"]).encode(), "Unhandled", log
    return json.dumps(result["ok"]).encode(), None, log


def _log(request_id: str, function: Any, output: str, started: float) -> str:
    took = (time.monotonic() - started) * 1000
    return (f"START RequestId: {request_id} Version: {function.version}\n{output}"
            f"END RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: {took:.2f} ms\t"
            f"Billed Duration: {int(took) + 1} ms\tMemory Size: {function.memory_size} MB\n")


def apply() -> None:
    original = require(LambdaFunction, "invoke", "body", "request_headers", "response_headers")

    def invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
        invocation = request_headers.get("x-amz-invocation-type", "RequestResponse")
        if not _python_zip(self) or invocation == "DryRun":
            return original(self, body, request_headers, response_headers)
        event = body.encode() if isinstance(body, str) else (body or b"")
        try:
            json.loads(event or b"{}")
        except ValueError:
            raise LambdaClientError("InvalidRequestContentException",
                                    "Could not parse request body into json") from None
        payload, function_error, log = run_python_handler(self, event)
        response_headers["x-amz-executed-version"] = self.version
        if function_error:
            response_headers["x-amz-function-error"] = function_error
        if invocation == "RequestResponse":
            response_headers["x-amz-log-result"] = base64.b64encode(log.encode()[-4096:]).decode()
            return payload
        return b""  # Event: the answer is not returned (moto's handler replies 202)

    LambdaFunction.invoke = invoke  # type: ignore[method-assign]
