"""`-o table|json|yaml`, as kubectl and the `temporal` CLI spell it: tables for people, documents for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def output_option(*formats: str) -> Any:
    return click.option("-o", "--output", "output", type=click.Choice(formats), default=formats[0],
                        show_default=True, help="table for people; " + " or ".join(formats[1:]) + " for scripts.")


def echo_document(document: Any, output: str) -> None:
    """A JSON-ready document (dicts, lists, strings, numbers) as JSON or YAML on stdout."""
    if output == "yaml":
        from ruamel.yaml import YAML

        yaml = YAML(typ="safe", pure=True)
        yaml.default_flow_style = False
        yaml.dump(document, sys.stdout)
    else:
        click.echo(json.dumps(document, indent=2))


def console() -> Any:
    """Rich's console on stdout: a terminal's width on a terminal; in a pipe or a file, lines as long as they need
    (as kubectl prints them), rather than Rich's default of cutting tables to 80 columns."""
    from rich.console import Console

    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=1000)
