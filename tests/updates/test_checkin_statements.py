"""What a writing check-in costs in statements, and that the shortcuts behind it stay correct.

A rollout check-in of a machine never seen before is the second most common request of a fleet
(after the steady one): it reads, inserts the machine (PostgreSQL: with its group's brake state in
the same statement), updates it with the grant and records the status history, in one
transaction. The brake state read with the row is read again when an event of the same request
moved it, and cached packages are dropped when an admin change goes through this process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from flotilla.updates.server import checkin_sql, grantguard
from flotilla.updates.server.omaha import parse_request
from flotilla.updates.server.schema import groups, make_engine
from flotilla.updates.server.schema import packages as packages_t
from flotilla.updates.server.store import Store
from tests.updates.conftest import NEW, OLD, apply_doc, fleet, ue_request

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
IP = "192.0.2.10"  # not loopback, but the new-machine limit is off in these stores
LATER = timedelta(minutes=45)  # update_engine's check interval


class Recorder:
    def __init__(self) -> None:
        self.sql: list[str] = []
        self.commits = 0

    def clear(self) -> None:
        self.sql.clear()
        self.commits = 0


@pytest.fixture
def store(db_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[Store, Recorder]]:
    policy = getattr(request, "param", {})
    apply_doc(
        db_url,
        fleet({"name": "stable", "track": "stable", "channel": "stable", "policy": policy}),
    )
    engine = make_engine(db_url, pool_size=2, max_overflow=0)
    rec = Recorder()

    def on_sql(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        rec.sql.append(statement)

    def on_commit(conn: Any) -> None:
        rec.commits += 1

    event.listen(engine, "before_cursor_execute", on_sql)
    event.listen(engine, "commit", on_commit)
    yield Store(engine, new_machines=grantguard.NewMachineLimit(grants=0)), rec
    engine.dispose()


def checkin(s: Store, body: bytes, now: datetime = T0) -> str:
    """The update check's answer: "ok" (granted), "noupdate", or an error status."""
    answers = s.checkin(parse_request(body), IP, now)
    a = answers[0]
    if a.update_error:
        return a.update_error
    return "ok" if a.package is not None else "noupdate"


def _statements(rec: Recorder) -> list[str]:
    """The SQL run, first word(s) only, BEGIN of SQLite's write transactions left out."""
    out = []
    for s in rec.sql:
        if s.strip().upper().startswith("BEGIN"):
            continue
        out.append(re.sub(r"\s+", " ", s.strip())[:40])
    return out


def test_a_new_machine_is_granted_in_four_statements_on_postgresql(
    store: tuple[Store, Recorder], db_url: str
) -> None:
    s, rec = store
    assert checkin(s, ue_request("a" * 32, OLD, event=(3, 2), previous="")) == "ok"  # starts it
    rec.clear()
    assert checkin(s, ue_request("b" * 32, OLD, event=(3, 2), previous="")) == "ok"
    run = _statements(rec)
    assert rec.commits == 1, run  # one transaction
    writes = [x for x in run if x.split()[0] in ("INSERT", "UPDATE", "WITH")]
    # The machine's row, its grant, its history: nothing else is written.
    assert len(writes) == 3, run
    pg = db_url.startswith("postgresql")
    # read + insert (with the brake state on PostgreSQL) + update + history; the package comes
    # from the cache (the first machine's grant looked it up).
    assert len(run) == (4 if pg else 5), run
    assert not any("FROM packages" in x for x in rec.sql), run


@pytest.mark.parametrize("store", [{"max_failures": 0}], indirect=True)
def test_a_failure_that_halts_the_rollout_stops_a_grant_in_the_same_request(
    store: tuple[Store, Recorder],
) -> None:
    s, _ = store
    m = "c" * 32
    assert checkin(s, ue_request(m, OLD, event=(3, 2), previous="")) == "ok"  # granted NEW
    # Its next request reports the failure and asks again: the brake trips on this very
    # failure, so the update check must see the halt (not the state read with the row).
    body = ue_request(m, OLD, event=(3, 0), errorcode=7)
    assert checkin(s, body, T0 + timedelta(minutes=1)) == "noupdate"
    with s.engine.connect() as conn:
        assert conn.execute(select(groups.c.halted_version)).scalar() == NEW
    # And a machine never seen before gets nothing either.
    assert checkin(s, ue_request("d" * 32, OLD), T0 + timedelta(minutes=2)) == "noupdate"


def test_a_changed_package_is_served_after_invalidate(store: tuple[Store, Recorder]) -> None:
    s, _ = store
    s.config_ttl = 3600.0  # the cache alone would hold the old package for an hour
    answers = s.checkin(parse_request(ue_request("e" * 32, OLD)), IP, T0)
    assert answers[0].package is not None
    assert answers[0].package.size != 7
    with s.engine.begin() as conn:
        conn.execute(update(packages_t).values(size=7))
    s.invalidate()  # what every admin change made through this process does
    answers = s.checkin(parse_request(ue_request("f" * 32, OLD)), IP, T0)
    assert answers[0].package is not None
    assert answers[0].package.size == 7


# --- the steady read through the driver (PostgreSQL, nothing listening to the engine) -----------


@pytest.fixture
def bare(pg_url: str) -> Iterator[Store]:
    """A PostgreSQL store nothing instruments: steady reads go through psycopg directly."""
    apply_doc(pg_url, fleet())
    engine = make_engine(pg_url, pool_size=2, max_overflow=0)
    s = Store(engine, new_machines=grantguard.NewMachineLimit(grants=0))
    assert not s._instrumented()
    yield s
    engine.dispose()


def _xmins(s: Store) -> dict[str, str]:
    """Each instance row's xmin: it changes with any UPDATE of the row."""
    with s.engine.connect() as conn:
        q = text("SELECT machine_id, xmin::text FROM instances")
        return {m: x for m, x in conn.execute(q)}


def test_driver_reads_give_what_sqlalchemy_reads(bare: Store) -> None:
    machines = [f"{i:032x}" for i in range(1, 6)]
    for m in machines:
        checkin(bare, ue_request(m, NEW, event=(3, 2), previous=""))
    apps = [parse_request(ue_request(m, NEW)).apps[0] for m in [*machines, "f" * 32]]
    driver = bare._driver_reads(apps)
    with bare.engine.connect() as conn:
        via_sa = [bare._select_instance(conn, app, lock=False) for app in apps]
    assert driver[-1] is None and via_sa[-1] is None  # an unknown machine
    assert [dict(r) for r in via_sa[:-1]] == driver[:-1]


def test_steady_checkins_through_the_driver_write_nothing(bare: Store) -> None:
    machines = [f"{i:032x}" for i in range(1, 11)]
    for m in machines:
        checkin(bare, ue_request(m, NEW, event=(3, 2), previous=""))
    before = _xmins(bare)
    with bare.engine.connect() as conn:
        history = conn.execute(text("SELECT count(*) FROM instance_history")).scalar_one()
    for m in machines:
        body = ue_request(m, NEW, event=(3, 2), previous="")
        assert checkin(bare, body, T0 + LATER) == "noupdate"
    assert _xmins(bare) == before  # no row was updated
    with bare.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM instance_history")).scalar_one() == history
    assert bare.flush_seen() == len(machines)  # the touches wait for the batched flush


def test_a_driver_error_is_a_sqlalchemy_error_and_the_connection_is_reusable(
    bare: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = "a" * 32
    checkin(bare, ue_request(m, NEW, event=(3, 2), previous=""))
    monkeypatch.setattr(checkin_sql, "INSTANCE_PG_DRIVER", "SELECT no_such_column FROM instances")
    with pytest.raises(SQLAlchemyError):  # the endpoint's 503, as for any database error
        checkin(bare, ue_request(m, NEW), T0 + LATER)
    monkeypatch.undo()
    # The pooled connection went back in transaction mode: a later write is still atomic.
    assert checkin(bare, ue_request(m, OLD), T0 + LATER) == "ok"
    with bare.engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM instances")).scalar_one() == OLD
