"""FleetLock holders in the update server's database: the store half of the FleetLock protocol.

The store functions keep the maximum under parallel requests: SQLite runs every write transaction
as ``BEGIN IMMEDIATE`` (one writer), PostgreSQL locks the group row (``SELECT ... FOR UPDATE``)
before counting holders. :func:`list_holders` is the read the REST API, the CLI and the dashboard
share.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from flotilla.updates.policies import format_window, parse_window
from flotilla.updates.reboots.fleetlock import LockDecision, LockGroup, may_lock
from flotilla.updates.server.schema import fleetlock_groups, fleetlock_holders, is_sqlite, reading


def _group_from_row(row: Any) -> LockGroup:
    return LockGroup(
        name=row.name,
        max_holders=int(row.max_holders),
        windows=tuple(parse_window(w) for w in row.windows or []),
        timezone=row.timezone,
        token_sha256=row.token_sha256,
    )


def find_group(engine: Engine, name: str) -> LockGroup | None:
    """The group as configured, or None when no fleet file (nor a client) created it."""
    with reading(engine) as conn:
        row = conn.execute(select(fleetlock_groups).where(fleetlock_groups.c.name == name)).first()
    return _group_from_row(row) if row is not None else None


def _locked_group(conn: Connection, name: str, sqlite: bool, create: bool) -> LockGroup | None:
    """The group's row, locked for this transaction; created with defaults when unknown and
    ``create`` (else None)."""
    q = select(fleetlock_groups).where(fleetlock_groups.c.name == name)
    if not sqlite:
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None and not create:
        return None
    if row is None:
        if sqlite:
            conn.execute(
                insert(fleetlock_groups).values(
                    name=name, max_holders=1, windows=[], timezone="UTC"
                )
            )
        else:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            conn.execute(
                pg_insert(fleetlock_groups)
                .values(name=name, max_holders=1, windows=[], timezone="UTC")
                .on_conflict_do_nothing()
            )
        row = conn.execute(q).first()
    assert row is not None
    return _group_from_row(row)


def acquire(
    engine: Engine, node_id: str, group: str, now: datetime, create: bool = True
) -> LockDecision:
    """``pre-reboot``: take (or keep) a slot; never more than the group's maximum.

    An unknown group is created with one slot when ``create``, else refused.
    """
    sqlite = is_sqlite(engine)
    with engine.begin() as conn:
        g = _locked_group(conn, group, sqlite, create)
        if g is None:
            return LockDecision(False, f"no FleetLock group {group}")
        holders = (
            conn.execute(
                select(fleetlock_holders.c.holder).where(fleetlock_holders.c.group_name == group)
            )
            .scalars()
            .all()
        )
        decision = may_lock(g, holders, node_id, now)
        if decision.ok and not decision.already_held:
            conn.execute(
                insert(fleetlock_holders).values(group_name=group, holder=node_id, acquired_at=now)
            )
        return decision


def release(engine: Engine, node_id: str, group: str) -> bool:
    """``steady-state``: give the slot back; False when it was not held (still a success)."""
    with engine.begin() as conn:
        n = conn.execute(
            delete(fleetlock_holders).where(
                fleetlock_holders.c.group_name == group, fleetlock_holders.c.holder == node_id
            )
        ).rowcount
    return bool(n)


def release_stale(
    engine: Engine,
    *,
    group: str | None = None,
    node_id: str | None = None,
    older_than: timedelta | None = None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The operator's unlock: drop holders by group, id and/or age; returns what was dropped."""
    conds = []
    if group is not None:
        conds.append(fleetlock_holders.c.group_name == group)
    if node_id is not None:
        conds.append(fleetlock_holders.c.holder == node_id)
    if older_than is not None:
        conds.append(fleetlock_holders.c.acquired_at < now - older_than)
    if not conds:
        raise ValueError("name a group, an id or an age: refusing to release every lock")
    with engine.begin() as conn:
        rows = [_holder_out(r) for r in conn.execute(select(fleetlock_holders).where(*conds))]
        conn.execute(delete(fleetlock_holders).where(*conds))
    return rows


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _holder_out(r: Any) -> dict[str, Any]:
    return {"group": r.group_name, "id": r.holder, "acquired_at": _iso(r.acquired_at)}


def list_holders(engine: Engine, group: str | None = None) -> list[dict[str, Any]]:
    """Current lock holders (``group``, ``id``, ``acquired_at``), oldest first."""
    q = select(fleetlock_holders).order_by(
        fleetlock_holders.c.acquired_at, fleetlock_holders.c.holder
    )
    if group is not None:
        q = q.where(fleetlock_holders.c.group_name == group)
    with reading(engine) as conn:
        return [_holder_out(r) for r in conn.execute(q)]


def list_groups(engine: Engine) -> list[dict[str, Any]]:
    """Every group with its limits and holders."""
    with reading(engine) as conn:
        groups = conn.execute(select(fleetlock_groups).order_by(fleetlock_groups.c.name)).all()
        counts: dict[str, int] = {
            str(k): int(v)
            for k, v in conn.execute(
                select(fleetlock_holders.c.group_name, func.count()).group_by(
                    fleetlock_holders.c.group_name
                )
            )
        }
    holders = list_holders(engine)
    return [
        {
            "name": g.name,
            "max_holders": g.max_holders,
            "windows": list(g.windows or []),
            "timezone": g.timezone,
            "holders": [h for h in holders if h["group"] == g.name],
            "held": int(counts.get(g.name, 0)),
        }
        for g in groups
    ]


def apply_groups(conn: Connection, groups: Sequence[LockGroup], changes: list[str]) -> None:
    """Create or update groups from a fleet file (inside the caller's transaction)."""
    for g in groups:
        values = {
            "max_holders": g.max_holders,
            "windows": [format_window(w) for w in g.windows],
            "timezone": g.timezone,
            "token_sha256": g.token_sha256,
        }
        row = conn.execute(
            select(fleetlock_groups).where(fleetlock_groups.c.name == g.name)
        ).first()
        if row is None:
            conn.execute(insert(fleetlock_groups).values(name=g.name, **values))
            changes.append(f"fleetlock group {g.name}: created (max {g.max_holders})")
        elif (row.max_holders, list(row.windows or []), row.timezone, row.token_sha256) != (
            values["max_holders"],
            values["windows"],
            values["timezone"],
            values["token_sha256"],
        ):
            conn.execute(
                update(fleetlock_groups).where(fleetlock_groups.c.name == g.name).values(**values)
            )
            changes.append(f"fleetlock group {g.name}: updated (max {g.max_holders})")
