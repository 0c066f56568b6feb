"""`drctl codec-server`: the remote codec the Temporal Web UI (`--ui-codec-endpoint`, or the UI's codec settings)
and the `temporal` CLI (`--codec-endpoint URL --codec-auth "Bearer $DRCTL_TOKEN"`) call to read sealed payloads."""

from __future__ import annotations

import signal
from pathlib import Path

import click
import structlog

from drctl.errors import EXIT_FAILED, fail

READY = "codec server ready at "  # the demo and the tests wait for this line
DEFAULT_PORT = 8235  # beside the dev server's UI (8233)

log = structlog.get_logger("dr.codec")


@click.command("codec-server")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs TLS in front (a proxy or load balancer).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on; 0 for any free port (printed).")
@click.option("--ui-origin", "ui_origins", multiple=True, metavar="URL",
              help="Origin of a Temporal Web UI allowed to call from a browser (CORS), e.g. "
                   "https://temporal.example.com (repeatable).")
@click.option("--allow-unauthenticated-origin", "open_origins", multiple=True, metavar="URL",
              help="A local dev UI without login (it cannot send a token): its requests are served without one. "
                   "Only with a loopback --host (repeatable).")
@click.option("--keys-file", type=click.Path(dir_okay=False, path_type=Path), envvar="DR_PAYLOAD_KEYS_FILE",
              required=True, help="The payload key file the workers use [env: DR_PAYLOAD_KEYS_FILE].")
@click.option("--trust-file", type=click.Path(dir_okay=False, path_type=Path), envvar="DR_AUTH_TRUST_FILE",
              required=True, help="The identity trust file the workers use [env: DR_AUTH_TRUST_FILE].")
def codec_server(host: str, port: int, ui_origins: tuple[str, ...], open_origins: tuple[str, ...], keys_file: Path,
                 trust_file: Path) -> None:
    """Serve Temporal's remote codec protocol (POST /encode, /decode) to users who may view runs.

    Every request needs `Authorization: Bearer <token>` of the identity provider the workers trust, with a role that
    may view runs (read-only, auditor, operator and above). In production the UI sits behind SSO with "pass access
    token" set, so it forwards its user's token."""
    from temporalio.exceptions import ApplicationError

    from activities.identity import read_trust
    from drctl.codec_server import CodecHTTPServer, CodecPolicy
    from workers.encryption import EncryptionCodec, KeyRing, KeyRingError

    try:
        ring = KeyRing.load(keys_file)
    except KeyRingError as exc:
        fail(f"--keys-file: {exc}", EXIT_FAILED)
    try:
        trust = read_trust(str(trust_file))
    except ApplicationError as exc:  # read_trust's way to say the configuration is unusable
        fail(f"--trust-file: {exc.message}", EXIT_FAILED)
    try:
        policy = CodecPolicy.build(trust, ui_origins, open_origins)
        server = CodecHTTPServer(host, port, EncryptionCodec(ring), policy)
    except ValueError as exc:  # an origin that is not one, or unauthenticated access off loopback
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_FAILED)
    # SIGTERM (the demo stopping it, a service manager) ends it as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    log.info("codec.started", url=server.url, keys=sorted(ring.keys), write_key=ring.write_key,
             ui_origins=sorted(policy.ui_origins), unauthenticated_origins=sorted(policy.unauthenticated_origins),
             issuer=trust.issuer)
    click.echo(f"{READY}{server.url}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        log.info("codec.stopped")
