"""The steady check-in in update_engine's exact shape writes nothing; last-seen is batched.

update_engine adds ``<event eventtype="3" eventresult="2" previousversion="...">`` to every
update check (``omaha_request_action.cc: GetAppBody``): ``previousversion=""`` once the
post-reboot check has gone out, ``"0.0.0.0"`` on a machine that never updated. Such a check-in
must run no INSERT/UPDATE/DELETE and no COMMIT; the last-seen time reaches the row with the next
flush, in one statement for the whole batch.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.server.omaha import parse_request
from flotilla.updates.server.schema import instances, make_engine
from flotilla.updates.server.store import Store, utc
from tests.updates.conftest import NEW, OLD, Server, apply_doc, fleet, ue_request

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


@dataclass
class Statements:
    """Every statement and commit an engine runs while recording."""

    sql: list[str] = field(default_factory=list)
    commits: int = 0

    @property
    def writes(self) -> list[str]:
        return [s for s in self.sql if _WRITE.match(s)]

    def clear(self) -> None:
        self.sql.clear()
        self.commits = 0


@pytest.fixture
def store(db_url: str) -> Iterator[tuple[Store, Statements]]:
    apply_doc(db_url, fleet(channel=NEW))
    engine = make_engine(db_url, pool_size=2, max_overflow=0)
    seen = Statements()

    def on_sql(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.sql.append(statement)

    def on_commit(conn: Any) -> None:
        seen.commits += 1

    event.listen(engine, "before_cursor_execute", on_sql)
    event.listen(engine, "commit", on_commit)
    yield Store(engine), seen
    engine.dispose()


def checkin(store: Store, body: bytes, now: datetime) -> None:
    store.checkin(parse_request(body), "127.0.0.1", now)


def last_seen(engine: Engine, machine: str) -> datetime | None:
    with engine.connect() as conn:
        q = select(instances.c.last_seen).where(instances.c.machine_id == machine)
        return utc(conn.execute(q).scalar_one())


def status(engine: Engine, machine: str) -> str:
    with engine.connect() as conn:
        q = select(instances.c.status).where(instances.c.machine_id == machine)
        return str(conn.execute(q).scalar_one())


def steady(machine: str, previous: str = "") -> bytes:
    """update_engine's scheduled check on the channel's version."""
    return ue_request(machine, NEW, event=(3, 2), previous=previous)


@pytest.mark.parametrize("previous", ["", "0.0.0.0"])
def test_steady_checkin_writes_nothing(store: tuple[Store, Statements], previous: str) -> None:
    s, seen = store
    machines = [f"{i:032x}" for i in range(1, 21)]
    for m in machines:
        checkin(s, steady(m, previous), T0)  # first contact registers: writes
    assert s.flush_seen() == 0  # registrations wrote their own last-seen
    for i in range(1, 6):  # five rounds, 45 minutes apart, as update_engine checks
        seen.clear()
        for m in machines:
            checkin(s, steady(m, previous), T0 + timedelta(minutes=45 * i))
        assert seen.writes == [], "a steady check-in wrote"
        assert seen.commits == 0
        assert len(seen.sql) > 0  # the recorder sees the reads (the test can fail)
        assert s.flush_seen() == len(machines)  # what the server does every second


def test_last_seen_advances_after_one_flush_statement(store: tuple[Store, Statements]) -> None:
    s, seen = store
    machines = [f"{i:032x}" for i in range(1, 51)]
    for m in machines:
        checkin(s, steady(m), T0)
    later = T0 + timedelta(minutes=44)
    for m in machines:
        checkin(s, steady(m), later)
    assert last_seen(s.engine, machines[0]) == T0  # not yet flushed
    seen.clear()
    assert s.flush_seen() == len(machines)
    assert len(seen.writes) == 1, seen.writes  # one statement for the whole batch
    assert seen.commits == 1
    assert all(last_seen(s.engine, m) == later for m in machines)
    assert s.flush_seen() == 0  # nothing left


def test_a_flush_never_moves_last_seen_backwards(store: tuple[Store, Statements]) -> None:
    s, _ = store
    m = "c" * 32
    checkin(s, steady(m), T0)
    checkin(s, steady(m), T0 + timedelta(minutes=10))  # quiet: batched
    checkin(s, ue_request(m, OLD), T0 + timedelta(minutes=20))  # new version: writes at once
    s.flush_seen()
    assert last_seen(s.engine, m) == T0 + timedelta(minutes=20)


def test_state_changing_events_still_write(store: tuple[Store, Statements]) -> None:
    s, seen = store
    m = "d" * 32
    checkin(s, ue_request(m, OLD, event=(3, 2), previous=""), T0)  # granted NEW
    assert status(s.engine, m) == "UpdateGranted"
    for ev, want in (((13, 1), "Downloading"), ((14, 1), "Downloaded"), ((800, 1), "Installed")):
        seen.clear()
        checkin(s, ue_request(m, OLD, ping=False, check=False, event=ev), T0)
        assert status(s.engine, m) == want
        assert seen.writes and seen.commits == 1  # one transaction
    seen.clear()
    checkin(s, ue_request(m, NEW, ping=False, check=False, event=(3, 1)), T0)  # duplicate: no-op
    # After the reboot: the 3/2 carrying the old version completes the update.
    checkin(s, ue_request(m, NEW, event=(3, 2), previous=OLD), T0 + timedelta(minutes=5))
    assert status(s.engine, m) == "Complete"
    seen.clear()
    checkin(s, steady(m), T0 + timedelta(minutes=50))
    assert seen.writes == []


def test_failure_event_writes_even_when_already_failed(store: tuple[Store, Statements]) -> None:
    s, seen = store
    m = "e" * 32
    checkin(s, ue_request(m, OLD), T0)
    checkin(s, ue_request(m, OLD, ping=False, check=False, event=(3, 0), errorcode=9), T0)
    seen.clear()
    checkin(s, ue_request(m, OLD, ping=False, check=False, event=(3, 0), errorcode=9), T0)
    assert seen.writes  # the failure is recorded (activity), never swallowed


def test_a_machine_back_after_the_check_interval_writes(store: tuple[Store, Statements]) -> None:
    s, seen = store
    m = "f" * 32
    checkin(s, steady(m), T0)
    seen.clear()
    back = T0 + s.quiet_within + timedelta(minutes=1)
    checkin(s, steady(m), back)
    assert seen.writes and last_seen(s.engine, m) == back


def test_the_server_flushes_last_seen_within_seconds(
    db_url: str, serve: Callable[..., Server]
) -> None:
    apply_doc(db_url, fleet(channel=NEW))
    srv = serve(db_url)
    m = "a1" * 16
    r = srv.omaha(steady(m))
    assert r.status_code == 200
    engine = make_engine(db_url, pool_size=1)
    try:
        first = last_seen(engine, m)
        assert first is not None
        time.sleep(0.05)
        r = srv.omaha(steady(m))
        # update_engine expects an <event status="ok"/> per event, quiet or not.
        assert b'<event status="ok"' in r.content and b'status="noupdate"' in r.content
        deadline = time.monotonic() + 5
        while (last_seen(engine, m) or first) <= first:
            assert time.monotonic() < deadline, "last-seen never flushed"
            time.sleep(0.1)
    finally:
        engine.dispose()
    assert FLATCAR_APP_ID  # the fleet is Flatcar's app
