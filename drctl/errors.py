"""User errors end with a clear message and an exit code, never a traceback."""

from __future__ import annotations

from typing import NoReturn

import click

EXIT_USAGE = 2
EXIT_FAILED = 1
# `drill start --wait` and `drill watch`: the run ended PARTIAL (completed, with failures the plan tolerates). Not 0,
# so a script cannot take it for COMPLETED; not 1, so it can tell it from a failed run.
EXIT_PARTIAL = 3


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
