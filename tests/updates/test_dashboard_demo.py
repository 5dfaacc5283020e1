"""`make demo` without a terminal: shows the whole update system, then exits 0 by itself."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]


def test_demo_runs_to_the_end_without_a_terminal() -> None:
    proc = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for text in (
        "== 1. apply the fleet file",
        "created group",
        "== 3. 200 machines of the canary group",
        "== 4. 38 machines in four groups",
        "== 5. flotilla updates instances",
        "MACHINE",
        "== 6. flotilla updates activity",
        "RolloutStarted",
        "RolloutFinished",  # the canary group went all the way
        "RolloutFailed",  # the experimental group's brake tripped
        "admin token",
        "no terminal: stopping now",
    ):
        assert text in out, text
    instances = out.split("== 5.")[1].split("== 6.")[0]
    assert instances.count("Complete") >= 10
    assert "OnHold" in instances  # production's rate limit holds machines back
    assert "Error" in instances
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", out)
    assert m is not None
    # The server is gone: nothing listens on its port any more.
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", int(m.group(1)))) != 0
