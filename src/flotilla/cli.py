"""The one ``flotilla`` command; each system contributes its own sub-command group.

Systems are imported only when their group is used: importing every system (FastAPI,
SQLAlchemy, Kubernetes models, ...) cost 0.7 s before each command printed anything.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import typer

from flotilla import __version__
from flotilla.core.cli import DEBUG_ENV, ErrorMappingGroup

# name -> (module holding a Typer app called `app`, one-line help shown by `flotilla --help`)
SYSTEMS: dict[str, tuple[str, str]] = {
    "updates": ("flotilla.updates.cli", "Fleet OS updates: Omaha server, policies, agents."),
    "localpv": ("flotilla.localpv.cli", "Dynamic local persistent volumes: controller, agent."),
    "charts": ("flotilla.charts.cli", "Helm chart repositories on GitHub Pages."),
    "dev": ("flotilla.dev.cli", "An inner dev loop that runs Tiltfiles."),
    "fn": ("flotilla.fn.cli", "Functions with health, metrics and tracing built in."),
    "operators": ("flotilla.operators.cli", "What installing an operator grants; its lifecycle."),
    "testenv": ("flotilla.testenv.cli", "A real Kubernetes control plane on loopback."),
}


class LazySystemsGroup(ErrorMappingGroup):
    """A group whose system sub-groups are built from their modules on first use.

    Being an :class:`ErrorMappingGroup`, it turns any system's ``FlotillaError`` into a one-line
    message and that error's exit code, for ``main()`` and for anything invoking ``app``.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*super().list_commands(ctx), *SYSTEMS})

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in SYSTEMS:
            return super().get_command(ctx, cmd_name)
        module, summary = SYSTEMS[cmd_name]
        sub_app = importlib.import_module(module).app
        command = typer.main.get_command(sub_app)
        command.name = cmd_name
        command.short_help = summary
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """List the systems from :data:`SYSTEMS`, so ``flotilla --help`` imports none of them."""
        rows = [(name, SYSTEMS[name][1]) for name in sorted(SYSTEMS)]
        rows += [
            (name, self.commands[name].get_short_help_str())
            for name in sorted(set(self.commands) - set(SYSTEMS))
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="flotilla",
    cls=LazySystemsGroup,
    rich_markup_mode=None,  # plain help: see flotilla.core.cli.system_app
    help="An open platform kit for people who run their own Kubernetes fleets.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"flotilla {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of an unexpected error (docs/cli.md)."
    ),
) -> None:
    """Flotilla: fleet OS updates, local volumes, chart repositories, dev loop, functions."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


def main() -> None:
    """Entry point of the console script; errors are mapped by :class:`ErrorMappingGroup`."""
    app()
