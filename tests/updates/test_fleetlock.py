"""FleetLock: the protocol, the semaphore under parallel clients on both backends, the fleet
file section, the REST reads and the operator's release command."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from typer.testing import CliRunner

from flotilla.updates.cli import app
from flotilla.updates.policies import parse_window
from flotilla.updates.reboots.fleetlock import (
    FleetLockError,
    LockGroup,
    may_lock,
    parse_client_params,
)
from flotilla.updates.server import fleetlock_store
from flotilla.updates.server.fleetspec import FleetFileError, parse_fleet
from flotilla.updates.server.schema import make_engine

from .conftest import Server, apply_doc, fleet

HDR = {"fleet-lock-protocol": "true"}
NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # Thursday


def _body(node: str, group: str = "default") -> dict[str, object]:
    return {"client_params": {"id": node, "group": group}}


# --- pure ---------------------------------------------------------------------------------------


def test_client_params() -> None:
    assert parse_client_params(b'{"client_params": {"id": "m1", "group": "workers"}}') == (
        "m1",
        "workers",
    )
    assert parse_client_params(b'{"client_params": {"id": "m1"}}') == ("m1", "default")


@pytest.mark.parametrize(
    "body",
    [
        b"nope",
        b"[]",
        b"{}",
        b'{"client_params": {"group": "x"}}',
        b'{"client_params": {"id": ""}}',
        b'{"client_params": {"id": 5}}',
        b'{"client_params": {"id": "m", "group": "../etc"}}',
        json.dumps(_body("x" * 300)).encode(),
        b'{"client_params": {"id": "a\\nb"}}',
        b" " * 20000,
    ],
)
def test_bad_client_params(body: bytes) -> None:
    with pytest.raises(FleetLockError):
        parse_client_params(body)


def test_recursive_semaphore_with_windows() -> None:
    g = LockGroup("w", max_holders=2)
    assert may_lock(g, [], "a", NOW).ok
    assert may_lock(g, ["a"], "a", NOW).already_held
    assert may_lock(g, ["a"], "b", NOW).ok
    full = may_lock(g, ["a", "b"], "c", NOW)
    assert not full.ok and "2 slot" in full.reason
    assert may_lock(g, ["a", "b"], "a", NOW).ok  # a holder keeps its slot when full
    closed = LockGroup("w", 2, (parse_window("Sat 02:00-06:00"),))
    assert not may_lock(closed, [], "a", NOW).ok
    assert may_lock(closed, ["a"], "a", NOW).ok  # and outside the window


# --- fleet file ---------------------------------------------------------------------------------


def test_fleet_file_section() -> None:
    spec = parse_fleet(
        "fleetlock:\n  groups:\n    - name: workers\n      max_holders: 3\n"
        "      windows: ['Sat 02:00-06:00']\n      timezone: Europe/Berlin\n"
    )
    assert spec.fleetlock == (
        LockGroup("workers", 3, (parse_window("Sat 02:00-06:00"),), "Europe/Berlin"),
    )
    with pytest.raises(FleetFileError) as e:
        parse_fleet(
            "fleetlock:\n  groups:\n    - name: w\n      max_holders: 0\n"
            "      windows: [someday]\n      timezone: Mars/Base\n      extra: 1\n"
            "    - {name: w}\n"
        )
    text = "\n".join(e.value.problems)
    for needle in (
        "max_holders: must be an integer >= 1",
        "windows[0]",
        "unknown timezone",
        "extra: unknown field",
        "line 4",
    ):
        assert needle in text, text


# --- HTTP on both backends ------------------------------------------------------------------------


def test_protocol_over_http(serve: Callable[..., Server], db_url: str) -> None:
    doc = fleet()
    doc["fleetlock"] = {"groups": [{"name": "workers", "max_holders": 1}]}
    changes = apply_doc(db_url, doc)
    assert "fleetlock group workers: created (max 1)" in changes
    assert not any("fleetlock" in c for c in apply_doc(db_url, doc))
    s = serve(db_url, fleetlock_create_groups=True)
    c = s.client
    missing = c.post("/v1/pre-reboot", json=_body("a", "workers"))
    assert missing.status_code == 400 and missing.json()["kind"] == "missing_header"
    assert c.post("/v1/pre-reboot", content=b"{", headers=HDR).status_code == 400
    assert c.post("/v1/pre-reboot", json=_body("a", "workers"), headers=HDR).status_code == 200
    assert c.post("/v1/pre-reboot", json=_body("a", "workers"), headers=HDR).status_code == 200
    busy = c.post("/v1/pre-reboot", json=_body("b", "workers"), headers=HDR)
    assert busy.status_code == 409 and busy.json()["kind"] == "failed_lock"
    # Another group is independent; an unknown group gets one slot (when creating is allowed).
    assert c.post("/v1/pre-reboot", json=_body("b", "other"), headers=HDR).status_code == 200
    assert c.post("/v1/pre-reboot", json=_body("c", "other"), headers=HDR).status_code == 409
    held = c.get("/api/v1/fleetlock/holders", headers=s.reader()).json()
    assert {(h["group"], h["id"]) for h in held} == {("workers", "a"), ("other", "b")}
    assert c.get("/api/v1/fleetlock/holders").status_code == 401
    groups = {g["name"]: g for g in c.get("/api/v1/fleetlock/groups", headers=s.reader()).json()}
    assert groups["workers"]["held"] == 1 and groups["other"]["max_holders"] == 1
    assert c.post("/v1/steady-state", json=_body("a", "workers"), headers=HDR).status_code == 200
    assert c.post("/v1/steady-state", json=_body("a", "workers"), headers=HDR).status_code == 200
    assert c.post("/v1/pre-reboot", json=_body("b", "workers"), headers=HDR).status_code == 200
    path = "/api/v1/fleetlock/groups/other/holders/b"
    assert c.delete(path, headers=s.reader()).status_code == 403
    assert c.delete(path, headers=s.admin()).status_code == 200
    assert c.delete(path, headers=s.admin()).status_code == 404
    assert c.post("/v1/pre-reboot", json=_body("c", "other"), headers=HDR).status_code == 200


def test_never_more_than_max_under_parallel_clients(
    serve: Callable[..., Server], db_url: str
) -> None:
    """60 clients at once against two server processes' worth of engines on one database."""
    doc = fleet()
    doc["fleetlock"] = {"groups": [{"name": "workers", "max_holders": 3}]}
    apply_doc(db_url, doc)
    servers = [serve(db_url), serve(db_url)]

    def ask(i: int) -> int:
        with httpx.Client(base_url=servers[i % 2].url, timeout=60) as c:
            return c.post(
                "/v1/pre-reboot", json=_body(f"node-{i}", "workers"), headers=HDR
            ).status_code

    with ThreadPoolExecutor(30) as pool:
        codes = list(pool.map(ask, range(60)))
    assert codes.count(200) == 3, codes
    assert codes.count(409) == 57
    engine = make_engine(db_url, pool_size=1)
    assert len(fleetlock_store.list_holders(engine, "workers")) == 3
    engine.dispose()


def test_windows_from_the_fleet_file(serve: Callable[..., Server], sqlite_url: str) -> None:
    now = datetime.now(UTC)
    other_day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][(now.weekday() + 3) % 7]
    doc = fleet()
    doc["fleetlock"] = {
        "groups": [{"name": "w", "max_holders": 5, "windows": [f"{other_day} 00:00-01:00"]}]
    }
    apply_doc(sqlite_url, doc)
    s = serve(sqlite_url)
    r = s.client.post("/v1/pre-reboot", json=_body("a", "w"), headers=HDR)
    assert r.status_code == 409 and "window" in r.json()["value"]


def test_cli_lists_and_releases_stale_locks(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, pool_size=1)
    apply_doc(sqlite_url, {"fleetlock": {"groups": [{"name": "w", "max_holders": 2}]}})
    old = datetime.now(UTC) - timedelta(hours=5)
    assert fleetlock_store.acquire(engine, "stale", "w", old).ok
    assert fleetlock_store.acquire(engine, "fresh", "w", datetime.now(UTC)).ok
    engine.dispose()
    runner = CliRunner()
    out = runner.invoke(app, ["fleetlock", "holders", "--db", sqlite_url, "-o", "json"])
    assert out.exit_code == 0, out.output
    assert [h["id"] for h in json.loads(out.output)] == ["stale", "fresh"]
    table = runner.invoke(app, ["fleetlock", "groups", "--db", sqlite_url])
    assert "w" in table.output and "2" in table.output
    refused = runner.invoke(app, ["fleetlock", "release", "--db", sqlite_url])
    assert refused.exit_code != 0
    rel = runner.invoke(app, ["fleetlock", "release", "--db", sqlite_url, "--older-than", "1h"])
    assert rel.exit_code == 0 and "released w/stale" in rel.output and "1 lock(s)" in rel.output
    left = runner.invoke(app, ["fleetlock", "holders", "--db", sqlite_url, "-o", "json"])
    assert [h["id"] for h in json.loads(left.output)] == ["fresh"]
    feed = runner.invoke(app, ["activity", "--db", sqlite_url, "-o", "json"])
    released = [a["message"] for a in json.loads(feed.output) if a["kind"] == "RebootLockReleased"]
    who = f"{getpass.getuser()} (flotilla updates fleetlock release)"
    assert released == [f"reboot lock of stale in w released by {who}"]
