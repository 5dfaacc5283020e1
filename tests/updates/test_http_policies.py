"""Every policy rule and hostile input, over real HTTP; time-bound rules on the store directly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.policies import in_office_hours
from flotilla.updates.server.omaha import parse_request
from flotilla.updates.server.schema import instances, make_engine
from flotilla.updates.server.store import Store
from tests.updates.conftest import NEW, OLD, Server, apply_doc, fleet, ue_request
from tests.updates.test_http_lifecycle import updatecheck
from tests.updates.test_omaha_and_lifecycle import HOSTILE

APP = f"/api/v1/apps/{FLATCAR_APP_ID}"


def group(policy: dict[str, Any], name: str = "stable") -> dict[str, Any]:
    return {"name": name, "track": name, "channel": "stable", "policy": policy}


def status(s: Server, machine: str, version: str = OLD) -> str:
    return str(updatecheck(s.omaha(ue_request(machine, version)).content).get("status"))


def count_rows(db: str) -> int:
    engine = make_engine(db, pool_size=1)
    with engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(instances)).scalar_one())
    engine.dispose()
    return n


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_is_400_and_stores_nothing(
    sqlite_url: str, serve: Callable[..., Server], name: str
) -> None:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    r = s.omaha(HOSTILE[name])
    assert r.status_code == 400, r.text
    assert "bad request" in r.text
    assert count_rows(sqlite_url) == 0


@pytest.mark.parametrize(
    "name", ["long machine id", "long version", "long track", "nul character", "bad version"]
)
def test_hostile_values_on_both_backends(
    db_url: str, serve: Callable[..., Server], name: str
) -> None:
    apply_doc(db_url, fleet())
    r = serve(db_url).omaha(HOSTILE[name])
    assert r.status_code == 400, r.text
    assert count_rows(db_url) == 0


def test_unknown_app_or_track_is_an_omaha_error_and_stores_nothing(
    sqlite_url: str, serve: Callable[..., Server]
) -> None:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    for body in (
        ue_request("a" * 32, track="nope"),
        ue_request("a" * 32, appid="{00000000-0000-0000-0000-000000000000}"),
    ):
        r = s.omaha(body)
        assert r.status_code == 200  # as Nebraska: an Omaha error status, not an HTTP error
        assert b'<updatecheck status="error-internal"' in r.content
    assert count_rows(sqlite_url) == 0
    # A chunked body with no Content-Length is still capped.
    big = (b"<request>" + b" " * 70_000 + b"</request>" for _ in range(1))
    r = s.client.post("/v1/update/", content=big, headers={"Content-Type": "text/xml"})
    assert r.status_code == 400


def test_updates_disabled(sqlite_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(sqlite_url, fleet(group({"updates_enabled": False})))
    assert status(serve(sqlite_url), "a" * 32) == "noupdate"


def test_office_hours_outside(sqlite_url: str, serve: Callable[..., Server]) -> None:
    now = datetime.now(UTC)
    tz = next(
        f"Etc/GMT{o:+d}" for o in range(-12, 13) if not in_office_hours(now, f"Etc/GMT{o:+d}")
    )
    apply_doc(sqlite_url, fleet(group({"office_hours": True, "timezone": tz})))
    assert status(serve(sqlite_url), "a" * 32) == "noupdate"


def test_maintenance_windows(sqlite_url: str, serve: Callable[..., Server]) -> None:
    now = datetime.now(UTC)
    day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    closed = [f"{day[(now.weekday() + 3) % 7]} 00:00-23:59"]
    opened = [closed[0], f"{day[now.weekday()]} 00:00-24:00"]
    if now.hour == 23 and now.minute >= 58:
        pytest.skip("too close to midnight to pick a window")
    apply_doc(
        sqlite_url,
        fleet(
            group({"maintenance_windows": closed, "timezone": "UTC"}),
            group({"maintenance_windows": opened, "timezone": "UTC"}, "open"),
        ),
    )
    s = serve(sqlite_url)
    assert status(s, "a" * 32) == "noupdate"
    r = s.omaha(ue_request("b" * 32, track="open"))
    assert updatecheck(r.content).get("status") == "ok"


def test_rollout_percent_and_raising_it(sqlite_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(sqlite_url, fleet(group({"rollout_percent": 30})))
    s = serve(sqlite_url)
    machines = [f"{i:032x}" for i in range(60)]
    first = {m for m in machines if status(s, m) == "ok"}
    assert 5 < len(first) < 35
    r = s.client.put(f"{APP}/groups/stable/policy", json={"rollout_percent": 60}, headers=s.admin())
    assert r.status_code == 200, r.text
    # Machines already granted keep their grant; more machines come in; nobody drops out.
    second = {m for m in machines if status(s, m) == "ok"}
    assert first < second
    assert 20 < len(second) < 55


def test_max_updates_per_period(sqlite_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(sqlite_url, fleet(group({"max_updates_per_period": 2, "period_interval": "1h"})))
    s = serve(sqlite_url)
    results = [status(s, f"{i:032x}") for i in range(5)]
    assert results.count("ok") == 2
    got = s.client.get(f"{APP}/instances", params={"status": "OnHold"}, headers=s.reader()).json()
    assert len(got) == 3


def test_concurrent_limit_frees_up_when_updates_finish(
    sqlite_url: str, serve: Callable[..., Server]
) -> None:
    # A period so short it never binds: only the concurrency limit does.
    apply_doc(sqlite_url, fleet(group({"max_updates_per_period": 1, "period_interval": "1s"})))
    s = serve(sqlite_url)
    a, b = "a" * 32, "b" * 32
    assert status(s, a) == "ok"
    import time

    time.sleep(1.1)
    assert status(s, b) == "noupdate"  # a is still in progress
    s.omaha(ue_request(a, ping=False, check=False, event=(3, 0), errorcode=9))
    assert status(s, b) == "ok"


def test_safe_mode_one_at_a_time_and_halt_on_failure(
    sqlite_url: str, serve: Callable[..., Server]
) -> None:
    apply_doc(sqlite_url, fleet(group({"safe_mode": True, "max_updates_per_period": 10})))
    s = serve(sqlite_url)
    a, b = "a" * 32, "b" * 32
    assert status(s, a) == "ok"
    assert status(s, b) == "noupdate"  # the first one must finish first
    s.omaha(ue_request(a, ping=False, check=False, event=(3, 0), errorcode=20))
    assert status(s, b) == "noupdate"  # failed: safe mode halts the rollout
    g = s.client.get(f"{APP}/groups/stable", headers=s.reader()).json()
    assert g["halted_version"] == NEW
    feed = s.client.get("/api/v1/activity", headers=s.reader()).json()
    assert any(x["kind"] == "RolloutFailed" for x in feed)
    r = s.client.post(f"{APP}/groups/stable/resume", headers=s.admin())
    assert r.status_code == 200 and r.json()["halted_version"] is None
    assert status(s, b) == "ok"


def test_failure_brake_threshold(sqlite_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(sqlite_url, fleet(group({"max_failures": 1})))
    s = serve(sqlite_url)
    ms = [f"{i:032x}" for i in range(4)]
    for m in ms[:2]:
        assert status(s, m) == "ok"
    s.omaha(ue_request(ms[0], ping=False, check=False, event=(3, 0), errorcode=1))
    assert status(s, ms[2]) == "ok"  # one failure is tolerated
    # The same machine failing again on the same version is still one failed machine.
    assert status(s, ms[0]) == "ok"
    s.omaha(ue_request(ms[0], ping=False, check=False, event=(3, 0), errorcode=1))
    assert status(s, ms[3]) == "ok"
    s.omaha(ue_request(ms[1], ping=False, check=False, event=(3, 0), errorcode=1))
    assert status(s, "e" * 32) == "noupdate"  # two machines exceed max_failures=1: halted
    # A new release is a new rollout: the brake applies per target version.


def test_pinning(sqlite_url: str, serve: Callable[..., Server]) -> None:
    from tests.updates.conftest import MID

    apply_doc(sqlite_url, fleet(group({"pinned_version": MID})))
    s = serve(sqlite_url)
    uc = updatecheck(s.omaha(ue_request("a" * 32)).content)
    assert uc.find("manifest").get("version") == MID  # type: ignore[union-attr]
    assert status(s, "b" * 32, MID) == "noupdate"


# --- time-bound rules, with the clock injected (real SQL, no HTTP) --------------------------------


def checkin(store: Store, machine: str, now: datetime, **kw: Any) -> str:
    (answer,) = store.checkin(parse_request(ue_request(machine, **kw)), "127.0.0.1", now)
    return "ok" if answer.package is not None else "noupdate"


def test_period_and_timeout_with_clock(db_url: str) -> None:
    apply_doc(
        db_url,
        fleet(
            group(
                {
                    "max_updates_per_period": 1,
                    "period_interval": "1h",
                    "update_timeout": "2h",
                    "safe_mode": True,
                }
            )
        ),
    )
    engine = make_engine(db_url, pool_size=2)
    store = Store(engine)
    t0 = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert checkin(store, "a" * 32, t0) == "ok"
    assert checkin(store, "b" * 32, t0 + timedelta(minutes=30)) == "noupdate"  # period
    assert checkin(store, "b" * 32, t0 + timedelta(minutes=90)) == "noupdate"  # concurrent
    # After the update timeout, safe mode trips the timeout brake: the rollout halts.
    assert checkin(store, "b" * 32, t0 + timedelta(hours=3)) == "noupdate"
    with engine.connect() as conn:
        from flotilla.updates.server.schema import groups

        assert conn.execute(select(groups.c.halted_version)).scalar_one() == NEW
    engine.dispose()


def test_installed_waiting_for_reboot_never_trips_the_timeout_brake(sqlite_url: str) -> None:
    apply_doc(sqlite_url, fleet(group({"safe_mode": True, "update_timeout": "1h"})))
    engine = make_engine(sqlite_url, pool_size=2)
    store = Store(engine)
    t0 = datetime(2026, 11, 25, 12, tzinfo=UTC)
    a = "a" * 32
    assert checkin(store, a, t0) == "ok"
    for ev in ((13, 1), (14, 1), (3, 1)):
        store.checkin(parse_request(ue_request(a, ping=False, check=False, event=ev)), "", t0)
    # Hours later the node still waits for its reboot window: the rollout is not halted.
    assert checkin(store, "b" * 32, t0 + timedelta(hours=5)) == "noupdate"  # one at a time
    with engine.connect() as conn:
        from flotilla.updates.server.schema import groups

        assert conn.execute(select(groups.c.halted_version)).scalar_one() is None
    engine.dispose()


def test_prune(db_url: str) -> None:
    apply_doc(db_url, fleet())
    engine = make_engine(db_url, pool_size=2)
    store = Store(engine)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    checkin(store, "a" * 32, t0)
    checkin(store, "b" * 32, t0 + timedelta(days=40))
    assert store.prune(timedelta(days=30), now=t0 + timedelta(days=41)) == 1
    assert count_rows(db_url) == 1
    engine.dispose()


def test_server_prunes_on_its_own(sqlite_url: str, serve: Callable[..., Server]) -> None:
    import time

    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url, retention=timedelta(seconds=1), prune_interval=timedelta(seconds=0.2))
    s.omaha(ue_request("a" * 32))
    assert count_rows(sqlite_url) == 1
    deadline = time.monotonic() + 10
    while count_rows(sqlite_url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert count_rows(sqlite_url) == 0
