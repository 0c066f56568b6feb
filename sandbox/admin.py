"""The sandbox's admin path, `/_sandbox/...` (JSON): scenarios, faults, replication changes, a view of the state.

Tests and demos steer the sandbox through here over HTTP, the same way whatever process hosts it.

    GET  /_sandbox/state                                   what is there: DRS counts, faults, time scale
    POST /_sandbox/reset        {"timeScale": 10, "seed": 7}      empty moto and the DRS world
    POST /_sandbox/scenario     {"name": "default"}  or {"scenario": {...}}   seed a scenario
    POST /_sandbox/faults       {"throttleRate": 0.3, "errorRate": 0, "launchFailures": [...], "stuckServers": [...],
                                 "deniedOperations": ["StartRecovery"], "racedServers": {"id|hostname": {tags}}}
    POST /_sandbox/replication  {"account": "...", "region": "...", "server": "id|hostname", "state": "STALLED",
                                 "lagSeconds": 600}
    POST /_sandbox/quotas       {"concurrentJobs": 20, "serversPerJob": 100, "serversInActiveJobs": 500}
    POST /_sandbox/durations    {"snapshot": 2, "conversion": 3, "launch": 3, "terminate": 2}
    POST /_sandbox/delays       {"operation": "StartAutomationExecution", "seconds": 30, "times": 1}
                                 answer the next `times` such requests `seconds` late (sandbox/core/delays.py)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from pydantic import ValidationError
from pydantic.alias_generators import to_snake

from sandbox.core.delays import Delays

log = structlog.get_logger("sandbox.admin")

PREFIX = "/_sandbox/"


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AdminApp:
    def __init__(self, base_url: Callable[[], str], delays: Delays | None = None) -> None:
        # The server's own URL, known only once it is bound: seeding talks to moto over HTTP like any client.
        self._base_url = base_url
        self.delays = delays or Delays()
        self.scenario: str | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        action = environ.get("PATH_INFO", "")[len(PREFIX):].strip("/")
        try:
            body = self._body(environ) if method == "POST" else {}
            handler = getattr(self, f"_{method.lower()}_{action}", None)
            if handler is None:
                raise AdminError(404, f"no admin action {method} {PREFIX}{action}; see sandbox/admin.py")
            result = handler(body)
            status, payload = 200, result
        except AdminError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            status, payload = 400, {"error": f"{type(exc).__name__}: {exc}"}
        data = json.dumps(payload, default=str).encode()
        start_response(f"{status} {'OK' if status == 200 else 'Error'}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    @staticmethod
    def _body(environ: dict[str, Any]) -> dict[str, Any]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise AdminError(400, f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise AdminError(400, "body must be a JSON object")
        return data

    # ---- actions -------------------------------------------------------------------------------------------------

    def _get_state(self, _: dict[str, Any]) -> dict[str, Any]:
        from sandbox.drs.models import drs_world

        return {"scenario": self.scenario, "drs": drs_world().state_summary(), "delays": self.delays.pending()}

    def _post_reset(self, body: dict[str, Any]) -> dict[str, Any]:
        from moto.moto_api._internal.models import moto_api_backend

        from sandbox.drs.models import reset_world

        moto_api_backend.reset()
        reset_world(time_scale=float(body.get("timeScale", 1.0)), seed=body.get("seed"))
        self.delays.clear()
        self.scenario = None
        log.info("sandbox.reset", time_scale=body.get("timeScale", 1.0), seed=body.get("seed"))
        return self._get_state({})

    def _post_scenario(self, body: dict[str, Any]) -> dict[str, Any]:
        from sandbox import scenario as scenarios

        if "scenario" in body:
            chosen = scenarios.Scenario.model_validate(body["scenario"])
        elif "name" in body:
            chosen = scenarios.load(str(body["name"]))
        else:
            raise AdminError(400, 'give {"name": ...} or {"scenario": {...}}')
        return {"seeded": self.seed(chosen)}

    def seed(self, chosen: Any) -> dict[str, object]:
        """Seed a scenario into this sandbox (also what `drctl sandbox serve --scenario` does at start)."""
        from sandbox import scenario as scenarios

        saved = os.environ.get("AWS_ENDPOINT_URL")
        os.environ["AWS_ENDPOINT_URL"] = self._base_url()
        try:
            made = scenarios.seed(chosen)
        finally:
            if saved is None:
                os.environ.pop("AWS_ENDPOINT_URL", None)
            else:
                os.environ["AWS_ENDPOINT_URL"] = saved
        self.scenario = chosen.name
        return made

    def _post_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        from sandbox.drs.models import drs_world

        fields = _snake(body)
        for key in ("launch_failures", "stuck_servers", "denied_operations"):
            if key in fields:
                fields[key] = set(fields[key])
        drs_world().set_faults(**fields)
        return self._get_state({})

    def _post_replication(self, body: dict[str, Any]) -> dict[str, Any]:
        from sandbox.drs.models import drs_world

        drs_world().set_replication(str(body["account"]), str(body["region"]), str(body["server"]),
                                    str(body["state"]), body.get("lagSeconds"))
        return self._get_state({})

    def _post_quotas(self, body: dict[str, Any]) -> dict[str, Any]:
        from sandbox.drs.models import drs_world

        drs_world().set_quotas(**_snake(body))
        return self._get_state({})

    def _post_delays(self, body: dict[str, Any]) -> dict[str, Any]:
        self.delays.add(str(body["operation"]), float(body["seconds"]), int(body.get("times", 1)))
        return self._get_state({})

    def _post_durations(self, body: dict[str, Any]) -> dict[str, Any]:
        from sandbox.drs.models import drs_world

        drs_world().set_durations(**_snake(body))
        return self._get_state({})


def _snake(body: dict[str, Any]) -> dict[str, Any]:
    return {to_snake(key): value for key, value in body.items()}
