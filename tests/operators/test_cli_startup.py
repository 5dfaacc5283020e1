"""`flotilla operators ... --help` starts fast: it imports none of the modules a command runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = [
    "yaml",
    "lightkube",
    "flotilla.operators.audit",
    "flotilla.operators.catalog",
    "flotilla.operators.loading",
    "flotilla.operators.report",
    "flotilla.operators.lifecycle",
    "rich.markdown",
]


@pytest.mark.parametrize("command", ["audit", "install", "status"])
def test_help_loads_no_command_code(command: str) -> None:
    code = (
        "import json, sys; from flotilla.cli import app\n"
        f"try:\n    app(['operators', {command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(set(sys.modules) & set({HEAVY!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage" in out.stdout
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
