"""The fleet simulator against a real server: a rollout runs to the end; a bad one times out."""

from __future__ import annotations

import asyncio
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
    apply_doc(sqlite_url, fleet({"name": "stable", "track": "stable", "channel": "stable",
                                 "policy": {"max_updates_per_period": 100,
                                            "period_interval": "3s"}}))
    s = serve(sqlite_url)
    result = CliRunner().invoke(app, [
        "simulate", "--server", f"{s.url}/v1/update/", "--instances", "200", "--version", OLD,
        "--time-scale", "1200", "--until-done", "--timeout", "90", "--token", READER,
        "--reboot-delay", "30s", "--download", "10s"])
    assert result.exit_code == 0, result.output
    engine = make_engine(sqlite_url, pool_size=1)
    done = catalog.list_instances(engine, status="Complete", limit=1000)
    engine.dispose()
    assert len(done) == 200 and {r["version"] for r in done} == {NEW}


def test_failures_trip_the_brake_and_time_out(
    serve: Callable[..., Server], sqlite_url: str
) -> None:
    apply_doc(sqlite_url, fleet({"name": "stable", "track": "stable", "channel": "stable",
                                 "policy": {"max_failures": 3}}))
    s = serve(sqlite_url)
    settings = SimSettings(server=f"{s.url}/v1/update/", instances=100, version=OLD,
                           time_scale=1000, failure_rate=1.0, download=5, reboot_delay=5,
                           schedule=Schedule(interval=600, fuzz=60, initial_delay=0))
    ok = asyncio.run(simulate(settings, target=NEW, timeout=8))
    assert not ok
    engine = make_engine(sqlite_url, pool_size=1)
    group = catalog.get_group(engine, FLATCAR_APP_ID, "stable")
    engine.dispose()
    assert group["halted_version"] == NEW
    bad = CliRunner().invoke(app, ["simulate", "--server", f"{s.url}/v1/update/",
                                   "--until-done", "--instances", "5"])
    assert bad.exit_code != 0
