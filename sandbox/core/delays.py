"""Slow answers on demand: the next N requests of an operation are answered late, after the operation took effect.

This is how a test holds an activity in the middle of one AWS call (to kill its worker there, or to outlast a
heartbeat timeout): the call's effect happens at once, as on AWS, and only its answer waits, so a client that
gives up and asks again meets what the first request did. Set through `POST /_sandbox/delays`.

The operation is read from the request the way its protocol names it: the `X-Amz-Target` header (JSON protocols:
SSM, ...) or the `Action` parameter (query protocols: EC2, RDS, ...). REST-protocol requests are never delayed.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from sandbox.core.wsgi import read_body


@dataclass
class Delay:
    operation: str
    seconds: float
    times: int


class Delays:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Delay] = []

    def add(self, operation: str, seconds: float, times: int = 1) -> None:
        if not operation or seconds <= 0 or times < 1:
            raise ValueError("a delay needs an operation, seconds > 0 and times >= 1")
        with self._lock:
            self._pending.append(Delay(operation, float(seconds), int(times)))

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [vars(d).copy() for d in self._pending]

    def take(self, environ: dict[str, Any]) -> float:
        """Seconds to hold this request's answer (0: none); counts the request against its delay."""
        with self._lock:
            if not self._pending:
                return 0.0
            operation = operation_of(environ)
            for delay in self._pending:
                if delay.operation == operation:
                    delay.times -= 1
                    if delay.times == 0:
                        self._pending.remove(delay)
                    return delay.seconds
        return 0.0


def operation_of(environ: dict[str, Any]) -> str | None:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return str(target).rsplit(".", 1)[-1]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return query["Action"][0]
    if environ.get("REQUEST_METHOD") == "POST" and "form-urlencoded" in environ.get("CONTENT_TYPE", ""):
        body = read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)  # put back what was read, for the app that answers
        form = parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    return None
