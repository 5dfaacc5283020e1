"""FleetLock: the reboot semaphore protocol of Zincati (Fedora CoreOS) and Flatcar, on our DB.

``POST /v1/pre-reboot`` takes a slot in the client's group (recursive: a holder asking again
keeps its slot); ``POST /v1/steady-state`` gives it back (idempotent). Each group has
``max_holders`` slots and optional weekly reboot windows; groups not configured get one slot
and no window, like locksmith's default semaphore.

The decision (:func:`may_lock`) and the request parsing are pure. The store functions keep the
maximum under parallel requests: SQLite runs every write transaction as ``BEGIN IMMEDIATE`` (one
writer), PostgreSQL locks the group row (``SELECT ... FOR UPDATE``) before counting holders.
:func:`list_holders` is the read the REST API, the CLI and the dashboard share.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from flotilla.updates.models import Window
from flotilla.updates.policies import format_window, in_any_window, parse_window
from flotilla.updates.schema import fleetlock_groups, fleetlock_holders, is_sqlite, reading

PROTOCOL_HEADER = "fleet-lock-protocol"
DEFAULT_GROUP = "default"
_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_MAX_ID = 256
MAX_BODY = 16 * 1024


class FleetLockError(ValueError):
    """A request the protocol does not allow (HTTP 400); ``kind`` goes into the JSON answer."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class LockGroup:
    """A FleetLock group: how many may reboot at once, and when."""

    name: str
    max_holders: int = 1
    windows: tuple[Window, ...] = ()
    timezone: str = "UTC"


@dataclass(frozen=True)
class LockDecision:
    """Whether the client gets (or keeps) a slot, and why not."""

    ok: bool
    reason: str = ""
    already_held: bool = False


# --- pure ----------------------------------------------------------------------------------------


def parse_client_params(body: bytes) -> tuple[str, str]:
    """``(id, group)`` from ``{"client_params": {"id": ..., "group": ...}}``; group defaults."""
    if len(body) > MAX_BODY:
        raise FleetLockError("bad_request", f"body larger than {MAX_BODY} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FleetLockError("bad_request", "body is not JSON") from None
    params = doc.get("client_params") if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise FleetLockError("bad_request", "client_params is missing")
    node_id, group = params.get("id"), params.get("group", DEFAULT_GROUP)
    if not isinstance(node_id, str) or not node_id.strip():
        raise FleetLockError("bad_request", "client_params.id is missing")
    if len(node_id) > _MAX_ID or not node_id.isprintable():
        raise FleetLockError("bad_request", "client_params.id is too long or not printable")
    if not isinstance(group, str) or not _GROUP_RE.match(group):
        raise FleetLockError("bad_request", "client_params.group is not a valid group name")
    return node_id, group


def may_lock(group: LockGroup, holders: Iterable[str], node_id: str, now: datetime) -> LockDecision:
    """Recursive lock: a holder keeps its slot; others need a free slot inside a window."""
    holders = set(holders)
    if node_id in holders:
        return LockDecision(True, already_held=True)
    if not in_any_window(now, group.windows, group.timezone):
        return LockDecision(False, f"group {group.name} is outside its reboot windows")
    if len(holders) >= group.max_holders:
        return LockDecision(
            False, f"group {group.name} has all {group.max_holders} slot(s) taken"
        )
    return LockDecision(True)


# --- store ---------------------------------------------------------------------------------------


def _group_from_row(row: Any) -> LockGroup:
    return LockGroup(
        name=row.name,
        max_holders=int(row.max_holders),
        windows=tuple(parse_window(w) for w in row.windows or []),
        timezone=row.timezone,
    )


def _locked_group(conn: Connection, name: str, sqlite: bool) -> LockGroup:
    """The group's row, locked for this transaction; created with defaults when unknown."""
    q = select(fleetlock_groups).where(fleetlock_groups.c.name == name)
    if not sqlite:
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        if sqlite:
            conn.execute(insert(fleetlock_groups).values(
                name=name, max_holders=1, windows=[], timezone="UTC"))
        else:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            conn.execute(pg_insert(fleetlock_groups).values(
                name=name, max_holders=1, windows=[], timezone="UTC").on_conflict_do_nothing())
        row = conn.execute(q).first()
    assert row is not None
    return _group_from_row(row)


def acquire(engine: Engine, node_id: str, group: str, now: datetime) -> LockDecision:
    """``pre-reboot``: take (or keep) a slot; never more than the group's maximum."""
    sqlite = is_sqlite(engine)
    with engine.begin() as conn:
        g = _locked_group(conn, group, sqlite)
        holders = conn.execute(
            select(fleetlock_holders.c.holder).where(fleetlock_holders.c.group_name == group)
        ).scalars().all()
        decision = may_lock(g, holders, node_id, now)
        if decision.ok and not decision.already_held:
            conn.execute(insert(fleetlock_holders).values(
                group_name=group, holder=node_id, acquired_at=now))
        return decision


def release(engine: Engine, node_id: str, group: str) -> bool:
    """``steady-state``: give the slot back; False when it was not held (still a success)."""
    with engine.begin() as conn:
        n = conn.execute(delete(fleetlock_holders).where(
            fleetlock_holders.c.group_name == group, fleetlock_holders.c.holder == node_id
        )).rowcount
    return bool(n)


def release_stale(
    engine: Engine, *, group: str | None = None, node_id: str | None = None,
    older_than: timedelta | None = None, now: datetime,
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
    q = select(fleetlock_holders).order_by(fleetlock_holders.c.acquired_at,
                                           fleetlock_holders.c.holder)
    if group is not None:
        q = q.where(fleetlock_holders.c.group_name == group)
    with reading(engine) as conn:
        return [_holder_out(r) for r in conn.execute(q)]


def list_groups(engine: Engine) -> list[dict[str, Any]]:
    """Every group with its limits and holders."""
    with reading(engine) as conn:
        groups = conn.execute(select(fleetlock_groups).order_by(fleetlock_groups.c.name)).all()
        counts: dict[str, int] = {
            str(k): int(v) for k, v in conn.execute(
                select(fleetlock_holders.c.group_name, func.count())
                .group_by(fleetlock_holders.c.group_name))}
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
        values = {"max_holders": g.max_holders,
                  "windows": [format_window(w) for w in g.windows], "timezone": g.timezone}
        row = conn.execute(
            select(fleetlock_groups).where(fleetlock_groups.c.name == g.name)).first()
        if row is None:
            conn.execute(insert(fleetlock_groups).values(name=g.name, **values))
            changes.append(f"fleetlock group {g.name}: created (max {g.max_holders})")
        elif (row.max_holders, list(row.windows or []), row.timezone) != (
            values["max_holders"], values["windows"], values["timezone"]
        ):
            conn.execute(update(fleetlock_groups).where(fleetlock_groups.c.name == g.name)
                         .values(**values))
            changes.append(f"fleetlock group {g.name}: updated (max {g.max_holders})")
