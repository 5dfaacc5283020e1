"""Every system's root error reaches the user as ``Error: <message>`` and its exit code.

The walk goes through ``flotilla.cli.main()`` (the console script), with a stand-in system whose
one command raises the error, so the mapping under test is the real one and only one.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest
import typer

from flotilla import cli
from flotilla.core.cli import DEBUG_ENV
from flotilla.core.errors import EXIT_USAGE, FlotillaError, cli_message

# (system, module, class, how to build one with the message "it broke", expected exit code)
ROOTS: list[tuple[str, str, str, object, int]] = [
    ("charts", "flotilla.charts.errors", "ChartError", "it broke", 1),
    ("dev", "flotilla.dev.tiltfile.errors", "TiltfileError", "it broke", 1),
    ("fn", "flotilla.fn.model", "FnError", "it broke", 1),
    ("localpv", "flotilla.localpv.policies", "LocalPVError", "it broke", 1),
    ("localpv", "flotilla.localpv.policies", "InvalidInput", "it broke", EXIT_USAGE),
    ("operators", "flotilla.operators.models", "OperatorsError", "it broke", EXIT_USAGE),
    ("testenv", "flotilla.testenv.errors", "TestEnvError", "it broke", 1),
    ("updates", "flotilla.updates.server.catalog", "CatalogError", "it broke", 1),
    ("updates", "flotilla.updates.server.catalog", "NotFoundError", "it broke", 1),
    ("updates", "flotilla.updates.server.fleetspec", "FleetFileError", ["it broke"], 1),
]

app = typer.Typer()
_to_raise: list[BaseException] = []


@app.command()
def fail() -> None:
    """Raise whatever the test queued."""
    raise _to_raise.pop()


@app.command()
def other() -> None:
    """A second command, so ``fail`` stays a sub-command."""


def _error(module: str, name: str, arg: object) -> FlotillaError:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, FlotillaError), f"{module}.{name} does not derive from FlotillaError"
    error = cls(arg)
    assert isinstance(error, FlotillaError)
    return error


@pytest.mark.parametrize(
    ("system", "module", "name", "arg", "code"), ROOTS, ids=[f"{r[0]}.{r[2]}" for r in ROOTS]
)
def test_main_maps_each_root_error_to_message_and_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    system: str,
    module: str,
    name: str,
    arg: object,
    code: int,
) -> None:
    assert system in cli.SYSTEMS
    _to_raise.append(_error(module, name, arg))
    monkeypatch.setitem(cli.SYSTEMS, "boom", (__name__, "raises a queued error"))
    monkeypatch.setattr(sys, "argv", ["flotilla", "boom", "fail"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "Error: it broke\n"


def test_every_system_has_a_root_error_in_the_walk() -> None:
    assert {r[0] for r in ROOTS} == set(cli.SYSTEMS)


def test_other_exceptions_are_one_line_without_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug still reads as one line and exit 1 (docs/cli.md); its class name is the clue."""
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    _to_raise.append(KeyError("bug"))
    monkeypatch.setitem(cli.SYSTEMS, "boom", (__name__, "raises a queued error"))
    monkeypatch.setattr(sys, "argv", ["flotilla", "boom", "fail"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    assert capsys.readouterr().err == "Error: KeyError: 'bug'\n"


def test_debug_keeps_the_traceback_of_other_exceptions(monkeypatch: pytest.MonkeyPatch) -> None:
    """``flotilla --debug`` lets a bug through with its traceback, for a bug report."""
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    _to_raise.append(KeyError("bug"))
    monkeypatch.setitem(cli.SYSTEMS, "boom", (__name__, "raises a queued error"))
    monkeypatch.setattr(sys, "argv", ["flotilla", "--debug", "boom", "fail"])
    try:
        with pytest.raises(KeyError):
            cli.main()
    finally:
        os.environ.pop(DEBUG_ENV, None)


def test_os_errors_name_the_file_without_errno() -> None:
    error = FileNotFoundError(2, "No such file or directory", "/no/such")
    assert cli_message(error) == "Error: /no/such: No such file or directory"


def test_an_instance_may_carry_its_own_code() -> None:
    assert FlotillaError("x").exit_code == 1
    assert FlotillaError("x", exit_code=4).exit_code == 4
