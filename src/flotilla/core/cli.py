"""The command-line side of :class:`~flotilla.core.errors.FlotillaError`: one group class.

The root ``flotilla`` command and each system's Typer app use :class:`ErrorMappingGroup`, so a
system's error becomes ``error: <message>`` on stderr and its ``exit_code`` in this one place,
whether the command runs as ``flotilla charts ...``, as ``python -m flotilla.charts ...`` or
through a test runner invoking the system's app. Commands raise; they do not print and exit.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer's private pass-through coercion (typer 0.29, pinned in constraints.txt)
    from typer import _coercion

    _PASS_THROUGH: Any = _coercion.PassThroughRuntimeParam
except (ImportError, AttributeError):  # another typer: flags keep its coercion, only slower
    _PASS_THROUGH = None

from flotilla.core.errors import FlotillaError, cli_message


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
        if (descriptor is not None and descriptor.annotation is bool
                and getattr(param, "_runtime_param", "absent") is None):
            param._runtime_param = _PASS_THROUGH(
                annotation=bool, parameter_info=descriptor.parameter_info)


def system_app(help: str, **settings: Any) -> typer.Typer:
    """The Typer app of one system: errors mapped by :class:`ErrorMappingGroup`, plain help.

    Plain (click's) help instead of rich's panels: rendering help with rich imports rich and
    markdown-it, about a quarter of a second, which every ``--help`` paid before its first line.
    """
    return typer.Typer(cls=ErrorMappingGroup, help=help, rich_markup_mode=None,
                       no_args_is_help=True, **settings)
