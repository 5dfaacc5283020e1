"""Every system's root error reaches the user as ``error: <message>`` and its exit code.

The walk goes through ``flotilla.cli.main()`` (the console script), with a stand-in system whose
one command raises the error, so the mapping under test is the real one and only one.
"""

from __future__ import annotations

import importlib
import sys

import pytest
import typer

from flotilla import cli
from flotilla.core.errors import EXIT_USAGE, FlotillaError

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


@pytest.mark.parametrize(("system", "module", "name", "arg", "code"), ROOTS,
                         ids=[f"{r[0]}.{r[2]}" for r in ROOTS])
def test_main_maps_each_root_error_to_message_and_code(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        system: str, module: str, name: str, arg: object, code: int) -> None:
    assert system in cli.SYSTEMS
    _to_raise.append(_error(module, name, arg))
    monkeypatch.setitem(cli.SYSTEMS, "boom", (__name__, "raises a queued error"))
    monkeypatch.setattr(sys, "argv", ["flotilla", "boom", "fail"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "error: it broke\n"


def test_every_system_has_a_root_error_in_the_walk() -> None:
    assert {r[0] for r in ROOTS} == set(cli.SYSTEMS)


def test_other_exceptions_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug is a bug: only FlotillaError is turned into a message."""
    _to_raise.append(KeyError("bug"))
    monkeypatch.setitem(cli.SYSTEMS, "boom", (__name__, "raises a queued error"))
    monkeypatch.setattr(sys, "argv", ["flotilla", "boom", "fail"])
    with pytest.raises(KeyError):
        cli.main()


def test_an_instance_may_carry_its_own_code() -> None:
    assert FlotillaError("x").exit_code == 1
    assert FlotillaError("x", exit_code=4).exit_code == 4
