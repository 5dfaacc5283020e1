"""The check-in path's reads: the group serving an (app, track), and the steady read of
instance rows straight through psycopg. Split from :mod:`store` to keep modules small."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from flotilla.updates.models import Channel
from flotilla.updates.server import checkin_sql
from flotilla.updates.server.fleetspec import policy_from_dict
from flotilla.updates.server.omaha import AppRequest, AppResponse
from flotilla.updates.server.rollouts import GroupCtx

logger = logging.getLogger("flotilla.updates.server.store")  # where operators look for it


def driver_instance_rows(engine: Engine, apps: list[AppRequest]) -> list[Any]:
    """The instance rows of ``apps``, read with psycopg on a pooled connection in autocommit.

    The steady check-in's one statement, without SQLAlchemy's statement and result machinery
    (which costs three times the CPU of the read itself); prepared once per connection.
    Driver errors come out as SQLAlchemy's, as from any other statement.
    """
    if not apps:
        return []
    try:
        raw = engine.raw_connection()
    except psycopg.Error as e:
        raise DBAPIError.instance(None, None, e, psycopg.Error) from e
    try:
        dbc = raw.driver_connection
        assert dbc is not None
        dbc.autocommit = True
        try:
            cur = dbc.cursor(row_factory=dict_row)
            out = []
            for app in apps:
                params = (app.machine_id, app.app_id)
                cur.execute(checkin_sql.INSTANCE_PG_DRIVER, params, prepare=True)
                out.append(cur.fetchone())
            return out
        finally:
            if not dbc.closed:
                dbc.autocommit = False
    except psycopg.Error as e:
        if engine.dialect.is_disconnect(e, dbc, None):  # type: ignore[arg-type]
            raw.invalidate(e)
        raise DBAPIError.instance(checkin_sql.INSTANCE_PG_DRIVER, None, e, psycopg.Error) from e
    finally:
        raw.close()


def resolve_group(conn: Connection, app: AppRequest) -> GroupCtx | None:
    """The group serving (app, track), or None when the server knows neither."""
    rows = (
        conn.execute(checkin_sql.RESOLVE, {"app_id": app.app_id, "track": app.track})
        .mappings()
        .all()
    )
    if not rows:
        return None
    # A track name wins over a group id that happens to be spelled the same.
    r = next((x for x in rows if x["track"] == app.track), rows[0])
    channel = None
    if r["ch_name"] is not None:
        channel = Channel(
            app_id=r["app_id"],
            name=r["ch_name"],
            version=r["ch_version"],
            blocked_versions=tuple(r["blocked_versions"] or ()),
            floors=tuple(r["floors"] or ()),
        )
    return GroupCtx(
        id=r["id"],
        app_id=r["app_id"],
        name=r["name"],
        policy=policy_from_dict(r["policy"]),
        channel=channel,
        halted_version=r["halted_version"],
        rollout_version=r["rollout_version"],
    )


def note_unknown(logged: set[tuple[str, str]], app: AppRequest) -> None:
    """Log an unknown (appid, track) once per process, so a misconfigured fleet shows up
    in the server log without one line per check-in (the set is bounded)."""
    key = (app.app_id, app.track)
    if key in logged or len(logged) >= 1024:
        return
    logged.add(key)
    logger.warning(
        "unknown application %s or track %r (machine %s): answered %s",
        app.app_id,
        app.track[:64],
        app.machine_id,
        AppResponse.unknown(app.raw_app_id).status,
    )
