"""`flotilla charts ... --help` starts fast: it imports none of the modules a command runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = [
    "yaml",
    "flotilla.charts.chartfile",
    "flotilla.charts.packaging",
    "flotilla.charts.publishing",
    "flotilla.charts.indexing",
    "flotilla.charts.provenance",
    "rich.markdown",
]


@pytest.mark.parametrize("command", ["lint", "package", "index", "publish"])
def test_help_loads_no_command_code(command: str) -> None:
    code = (
        "import json, sys; from flotilla.cli import app\n"
        f"try:\n    app(['charts', {command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(set(sys.modules) & set({HEAVY!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage" in out.stdout
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
