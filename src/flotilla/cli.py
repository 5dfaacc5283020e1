"""The one ``flotilla`` command; each system contributes its own sub-command group."""

from __future__ import annotations

import typer

from flotilla import __version__
from flotilla.testenv.cli import app as testenv_app

app = typer.Typer(
    name="flotilla",
    help="An open platform kit for people who run their own Kubernetes fleets.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(testenv_app, name="testenv")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"flotilla {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Flotilla: fleet OS updates, local volumes, chart repositories, dev loop, functions."""


def main() -> None:
    """Entry point of the console script."""
    app()
