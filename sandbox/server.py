"""The sandbox's single endpoint: moto's server app behind a dispatcher that routes by SigV4 signing service.

One URL covers every service, so `AWS_ENDPOINT_URL` is all a client needs. Services moto lacks (DRS first) are
routed to our own emulators by the credential scope of the request (`Credential=AKID/date/region/SERVICE/aws4_request`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from werkzeug.serving import BaseWSGIServer, make_server

from sandbox import moto_fixes
from sandbox.admin import PREFIX as ADMIN_PREFIX
from sandbox.admin import AdminApp
from sandbox.arc import urls as arc_urls
from sandbox.arc.models import reset_arc_world
from sandbox.arc.responses import ClusterApp, ControlApp
from sandbox.core.caller import signing_service
from sandbox.core.delays import Delays
from sandbox.drs import urls as drs_urls
from sandbox.drs.models import drs_world, reset_world
from sandbox.drs.responses import DrsApp
from sandbox.opensearch.responses import OpenSearchApp
from sandbox.opensearch.urls import is_domain_host

with moto_fixes.patching("sandbox/server"):
    # MotoRequestHandler (moto >= 5.2.5) keeps the headers with underscores that werkzeug's own handler drops.
    # Taken from where moto defines them: moto.server imports them for its own use, without re-exporting them.
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

# The sandbox is moto with these fixes. They are applied (and checked) on import, so a moto that changed under them
# stops whatever imports the sandbox (a test session, `drctl sandbox serve`) with one line, before any request.
moto_fixes.apply()

log = structlog.get_logger("sandbox")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SandboxApp:
    """Routes each request: the admin path, else the emulator registered for its signing service, else moto."""

    def __init__(self, emulators: dict[str, WsgiApp] | None = None, time_scale: float = 1.0,
                 seed: int | None = None, base_url: Callable[[], str] | None = None) -> None:
        moto_fixes.apply()
        self.moto = DomainDispatcherApplication(create_backend_app)
        reset_world(time_scale=time_scale, seed=seed)
        reset_arc_world()
        self.emulators: dict[str, WsgiApp] = {drs_urls.SERVICE: DrsApp(), arc_urls.CONTROL: ControlApp(),
                                              arc_urls.CLUSTER: ClusterApp(), **(emulators or {})}
        self.delays = Delays()
        self.admin = AdminApp(base_url or (lambda: "http://127.0.0.1"), self.delays)
        self.opensearch_domains = OpenSearchApp()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(ADMIN_PREFIX):
            return self.admin(environ, start_response)
        # A domain's own REST API is signed for `es` like the control plane: its endpoint in Host tells them apart.
        if is_domain_host(environ.get("HTTP_HOST", "")):
            return self.opensearch_domains(environ, start_response)
        # DRS time moves on whatever is asked: a client that started a job and polls only EC2 must still see the
        # recovery instances appear, as it would on AWS.
        drs_world().advance()
        service = signing_service(environ)
        target = self.emulators.get(service or "", self.moto)
        delay = self.delays.take(environ)
        if not delay:
            return target(environ, start_response)
        answer = list(target(environ, start_response))  # done now; werkzeug sends nothing until it is returned
        time.sleep(delay)
        return answer


class _QuietRequestHandler(MotoRequestHandler):
    """Per-request lines drown the demo's output; errors still reach structlog through moto's own logging."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SandboxServer:
    """The sandbox in a background thread of this process (tests), or in the foreground (`drctl sandbox serve`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, time_scale: float = 1.0,
                 seed: int | None = None) -> None:
        self.app = SandboxApp(time_scale=time_scale, seed=seed, base_url=lambda: self.url)
        self._server: BaseWSGIServer = make_server(
            host, port, self.app, threaded=True, request_handler=_QuietRequestHandler
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox", daemon=True)
        self._thread.start()
        log.info("sandbox.started", url=self.url)
        return self

    def serve_forever(self) -> None:
        log.info("sandbox.serving", url=self.url)
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        log.info("sandbox.stopped", url=self.url)
