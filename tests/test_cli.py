"""Every command group and command answers --help; the root answers --version."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from flotilla import __version__
from flotilla.cli import SYSTEMS, app

runner = CliRunner()


def _command_paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Walk the tree the way click does, so lazily loaded groups are included."""
    paths = [prefix]
    if hasattr(group, "list_commands"):
        ctx = typer.Context(group)
        for name in group.list_commands(ctx):
            paths += _command_paths(group.get_command(ctx, name), (*prefix, name))
    return paths


PATHS = _command_paths(typer.main.get_command(app))


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"flotilla {__version__}"


def test_every_system_group_is_registered_and_has_commands() -> None:
    groups = {p[0] for p in PATHS if len(p) == 1}
    assert groups == set(SYSTEMS)
    for system in SYSTEMS:
        assert any(len(p) == 2 and p[0] == system for p in PATHS), f"{system} has no commands"


def test_a_command_imports_only_its_own_system() -> None:
    code = (
        "import json, sys; from flotilla.cli import app\n"
        "try:\n    app(['charts', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted({m.split('.')[1] for m in sys.modules"
        " if m.startswith('flotilla.')})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "charts" in loaded
    assert not loaded & {"updates", "localpv", "dev", "fn", "operators", "testenv"}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "flotilla")
def test_help_at_every_level(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
