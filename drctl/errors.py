"""User errors end with a clear message and an exit code, never a traceback."""

from __future__ import annotations

from typing import NoReturn

import click

EXIT_USAGE = 2
EXIT_FAILED = 1


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
