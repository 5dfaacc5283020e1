"""The fleet simulator against a real server: a rollout runs to the end; a bad one times out."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from flotilla.updates.cli import app
from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.node.agent import Schedule
from flotilla.updates.node.simulator import SimSettings, simulate
from flotilla.updates.server import catalog
from flotilla.updates.server.schema import make_engine

from .conftest import NEW, OLD, READER, Server, apply_doc, fleet

pytestmark = pytest.mark.slow


def test_until_done_through_the_cli(serve: Callable[..., Server], sqlite_url: str) -> None:
    apply_doc(
        sqlite_url,
        fleet(
            {
                "name": "stable",
                "track": "stable",
                "channel": "stable",
                "policy": {"max_updates_per_period": 100, "period_interval": "3s"},
            }
        ),
    )
    s = serve(sqlite_url)
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--server",
            f"{s.url}/v1/update/",
            "--instances",
            "200",
            "--version",
            OLD,
            "--time-scale",
            "1200",
            "--until-done",
            "--timeout",
            "90",
            "--token",
            READER,
            "--reboot-delay",
            "30s",
            "--download",
            "10s",
        ],
    )
    assert result.exit_code == 0, result.output
    engine = make_engine(sqlite_url, pool_size=1)
    done = catalog.list_instances(engine, status="Complete", limit=1000)
    engine.dispose()
    assert len(done) == 200 and {r["version"] for r in done} == {NEW}


def test_failures_trip_the_brake_and_time_out(
    serve: Callable[..., Server], sqlite_url: str
) -> None:
    apply_doc(
        sqlite_url,
        fleet(
            {
                "name": "stable",
                "track": "stable",
                "channel": "stable",
                "policy": {"max_failures": 3},
            }
        ),
    )
    s = serve(sqlite_url)
    settings = SimSettings(
        server=f"{s.url}/v1/update/",
        instances=100,
        version=OLD,
        time_scale=1000,
        failure_rate=1.0,
        download=5,
        reboot_delay=5,
        schedule=Schedule(interval=600, fuzz=60, initial_delay=0),
    )
    ok = asyncio.run(simulate(settings, target=NEW, timeout=8))
    assert not ok
    engine = make_engine(sqlite_url, pool_size=1)
    group = catalog.get_group(engine, FLATCAR_APP_ID, "stable")
    engine.dispose()
    assert group["halted_version"] == NEW
    bad = CliRunner().invoke(
        app, ["simulate", "--server", f"{s.url}/v1/update/", "--until-done", "--instances", "5"]
    )
    assert bad.exit_code != 0


def test_off_a_terminal_it_prints_a_line_every_interval(
    serve: Callable[..., Server], sqlite_url: str
) -> None:
    """Piped into a log (no terminal), a run says what it does while it runs (issue 25, item 5).

    The real command in its own process, its stderr a pipe; the interval comes down from 5 s
    to 250 ms through ``$FLOTILLA_PROGRESS_INTERVAL``.
    """
    apply_doc(sqlite_url, fleet({"name": "stable", "track": "stable", "channel": "stable"}))
    s = serve(sqlite_url)
    argv = ["updates", "simulate", "--server", f"{s.url}/v1/update/", "--instances", "20"]
    argv += ["--version", OLD, "--time-scale", "600", "--timeout", "3s"]
    env = {**os.environ, "FLOTILLA_PROGRESS_INTERVAL": "250ms", "FLOTILLA_DEBUG": ""}
    run = subprocess.run(
        [sys.executable, "-m", "flotilla", *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert "\x1b" not in run.stderr and "\r" not in run.stderr, "redrawn as on a terminal"
    lines = run.stderr.splitlines()
    assert lines[0] == "simulating 20 machines: started [0s]", lines
    done = r"simulating 20 machines: done \[\d+s\] .* \| .* \| \d+ check-ins \(\d+/s\), .*"
    assert re.fullmatch(done, lines[-1]), lines[-1]
    ticks = lines[1:-1]
    assert len(ticks) >= 2, lines  # about 12 in 3 s; 2 even on a busy machine
    assert all(re.fullmatch(r"simulating 20 machines \[\d+s\]( .*)?", t) for t in ticks), ticks
    assert any(f"{OLD}: " in t and "check-ins" in t for t in ticks), ticks
