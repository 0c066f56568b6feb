"""drctl: the operator's command line."""

from __future__ import annotations

import os
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version

import click

from drctl.logging_setup import configure_logging


def _version() -> str:
    try:
        return version("dr-orchestrator")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="drctl", message="%(prog)s version %(version)s")
@click.option("--log-level", default="info", show_default=True, envvar="DRCTL_LOG_LEVEL",
              type=click.Choice(["debug", "info", "warning", "error"]), help="Log level of drctl's own logs.")
@click.option("--log-json", is_flag=True, envvar="DRCTL_LOG_JSON", help="Logs as JSON lines (for log shippers).")
def cli(log_level: str, log_json: bool) -> None:
    """Disaster-recovery orchestrator for AWS, on Temporal."""
    configure_logging(log_level, json=log_json)


def _register_commands() -> None:
    from drctl.audit_cmd import audit
    from drctl.auth_cmd import auth
    from drctl.cleanup_cmd import cleanup
    from drctl.codec_cmd import codec_server
    from drctl.demo import demo
    from drctl.keys_cmd import keys
    from drctl.list_cmd import list_runs
    from drctl.plan_cmd import plan
    from drctl.sandbox_cmd import sandbox
    from drctl.run_cmd import drill, worker

    cli.add_command(audit)
    cli.add_command(auth)
    cli.add_command(keys)
    cli.add_command(plan)
    cli.add_command(sandbox)
    cli.add_command(worker)
    drill.add_command(list_runs)
    drill.add_command(cleanup)
    cli.add_command(drill)
    cli.add_command(demo)
    cli.add_command(codec_server)


_register_commands()


def main() -> None:
    """Every command leaves through os._exit: a process that used the Temporal client or ran a Worker can crash
    at interpreter exit (sdk-python#300, seen here as "PyGILState_Release"), turning a success into a SIGABRT."""
    code: int = 0
    try:
        cli.main(prog_name="drctl")
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
            code = 1
        else:
            code = exc.code or 0
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
