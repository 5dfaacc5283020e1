"""Every command group and command answers --help; the root answers --version."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from flotilla import __version__
from flotilla.cli import app

runner = CliRunner()


def _command_paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(group, "commands", {}).items():
        paths += _command_paths(sub, (*prefix, name))
    return paths


PATHS = _command_paths(typer.main.get_command(app))


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"flotilla {__version__}"


def test_every_system_group_is_registered() -> None:
    groups = {p[0] for p in PATHS if len(p) == 1}
    assert "testenv" in groups


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "flotilla")
def test_help_at_every_level(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
