"""The one CLI convention of every system (docs/cli.md), in one place.

The root ``flotilla`` command and each system's Typer app use :class:`ErrorMappingGroup`, so a
system's error, and any other exception, becomes ``Error: <one line>`` on stderr and an exit code
here, whether the command runs as ``flotilla charts ...``, as ``python -m flotilla.charts ...`` or
through a test runner invoking the system's app. Commands raise; they do not print and exit.

The shared options live here too, so each system spells them the same way: ``-o/--output``
(:func:`output_option`, :func:`emit`), Go durations (:func:`duration`), ``--kubeconfig``
(:data:`KUBECONFIG_OPTION`, resolved by :func:`flotilla.core.kube.client_for`) and
``-n/--namespace`` (:func:`namespace_option`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import typer
from typer._click import exceptions as _click_exceptions  # typer 0.29 vendors click
from typer.core import TyperGroup

try:  # typer's private pass-through coercion (typer 0.29, pinned in constraints.txt)
    from typer import _coercion

    _PASS_THROUGH: Any = _coercion.PassThroughRuntimeParam
except (ImportError, AttributeError):  # another typer: flags keep its coercion, only slower
    _PASS_THROUGH = None

from flotilla.core.errors import EXIT_FAILURE, FlotillaError, cli_message

DEBUG_ENV = "FLOTILLA_DEBUG"
"""Set by ``flotilla --debug`` (anything but empty or 0): unexpected errors keep their traceback."""


def debugging() -> bool:
    """Whether ``--debug`` (or ``$FLOTILLA_DEBUG``) asked for tracebacks."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class ErrorMappingGroup(TyperGroup):
    """A Typer group that turns any :class:`FlotillaError` into its message and exit code."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _plain_bool_flags(self.get_params(ctx))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except FlotillaError as exc:
            typer.secho(cli_message(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, _click_exceptions.ClickException, KeyboardInterrupt):
            raise  # click prints usage errors (exit 2) itself; Exit carries the command's code
        except Exception as exc:  # a bug or an unmapped library error: one line, not 400
            if debugging():
                raise
            typer.secho(cli_message(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(EXIT_FAILURE) from None


def _plain_bool_flags(params: list[Any]) -> None:
    """Give a group's bool flags (``--help``, ``--version``, completion) typer's plain coercion.

    typer 0.29 coerces a parameter that was not given through a pydantic ``TypeAdapter``, and
    building the first one imports pydantic: 0.1-0.25 s before any command ran, for flags whose
    value is ``None``, ``True`` or ``False`` and need no coercion at all. Typer's own
    pass-through handles those the same way, so the answer is unchanged.
    """
    if _PASS_THROUGH is None:
        return
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if (
            descriptor is not None
            and descriptor.annotation is bool
            and getattr(param, "_runtime_param", "absent") is None
        ):
            param._runtime_param = _PASS_THROUGH(
                annotation=bool, parameter_info=descriptor.parameter_info
            )


def system_app(help: str, **settings: Any) -> typer.Typer:
    """The Typer app of one system: errors mapped by :class:`ErrorMappingGroup`, plain help.

    Plain (click's) help instead of rich's panels: rendering help with rich imports rich and
    markdown-it, about a quarter of a second, which every ``--help`` paid before its first line.
    """
    return typer.Typer(
        cls=ErrorMappingGroup, help=help, rich_markup_mode=None, no_args_is_help=True, **settings
    )


# ---- -o/--output ---------------------------------------------------------------------------

OUTPUT_FORMATS = ("table", "json", "yaml")
MANIFEST_FORMATS = ("yaml", "json")
NO_RESOURCES = "No resources found"


def output_option(*formats: str, default: str | None = None, help: str = "") -> Any:
    """``-o/--output`` with these formats (default: table, json, yaml); a typo is a usage error."""
    choices = formats or OUTPUT_FORMATS
    chosen = default or choices[0]

    def parse(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return typer.Option(
        chosen,
        "-o",
        "--output",
        parser=parse,
        metavar="|".join(choices),
        help=help or f"Output format: {', '.join(choices)}.",
    )


def emit(data: Any, output: str, table: Callable[[], None] | None = None) -> None:
    """Print ``data`` as JSON or YAML, or call ``table`` to print it for people.

    An empty list prints ``[]`` in JSON and YAML (scripts parse it) and ``No resources found``
    on stderr in a table, as kubectl does, so an empty answer never looks like a blank success.
    """
    if output == "json":
        typer.echo(json.dumps(data, indent=2, default=str))
    elif output == "yaml":
        import yaml

        typer.echo(yaml.safe_dump(_plain(data), sort_keys=False), nl=False)
    elif isinstance(data, Sequence) and not isinstance(data, str) and not data:
        typer.echo(NO_RESOURCES, err=True)
    elif table is not None:
        table()


def emit_documents(documents: list[Any], output: str) -> None:
    """Manifests: a YAML stream (``---`` between objects), or a JSON list of them."""
    if output == "json":
        typer.echo(json.dumps(documents, indent=2, default=str))
        return
    import yaml

    typer.echo(yaml.safe_dump_all(documents, sort_keys=False), nl=False)


def _plain(data: Any) -> Any:
    """What ``yaml.safe_dump`` accepts: JSON's types (dates and paths become text)."""
    return json.loads(json.dumps(data, default=str))


# ---- durations, namespace, kubeconfig ---------------------------------------------------------


def duration(value: str | float) -> float:
    """A Go duration flag (``90s``, ``10m``, ``1h30m``; a bare number is seconds) in seconds."""
    from flotilla.core.units import parse_duration

    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def duration_option(default: str, *names: str, help: str = "", **settings: Any) -> Any:
    """A duration flag (:func:`duration`); its default is written as a Go duration too."""
    return typer.Option(default, *names, parser=duration, metavar="DURATION", help=help, **settings)


def namespace_option(default: str | None = None, help: str = "Namespace.") -> Any:
    """``-n/--namespace``: ``-n`` means namespace in every command that has it."""
    return typer.Option(default, "-n", "--namespace", help=help)


KUBECONFIG_HELP = "Kubeconfig file [default: $KUBECONFIG, then ~/.kube/config, then in-cluster]."


KUBECONFIG_OPTION: Any = typer.Option(None, "--kubeconfig", help=KUBECONFIG_HELP)
"""``--kubeconfig``; the rest of the order is :func:`flotilla.core.kube.client_for`'s."""
