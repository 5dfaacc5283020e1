"""Reads behind the dashboard: aggregates computed by the database, lists paged by the database.

Nothing here loads every instance row: counts are ``GROUP BY`` over indexed columns (migration
0002), the rollout chart reads per-group status samples that :func:`sample` records every
``--sample-interval`` seconds, and instance lists are one page of ``LIMIT``/``OFFSET`` plus one
``COUNT``. At 100,000 instances each page stays in tens of ms
(``bench/dashboard_pages.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
)

from flotilla.updates import error_codes
from flotilla.updates.models import ActivityKind, InstanceStatus
from flotilla.updates.policies import in_any_window, parse_window
from flotilla.updates.server import catalog, rollout_status
from flotilla.updates.server.rollouts import utc
from flotilla.updates.server.schema import (
    activity,
    applications,
    channels,
    group_status_samples,
    groups,
    instance_history,
    instances,
    packages,
    reading,
)

PER_PAGE = 50
"""Instances per page of the instances list."""

STAGES = (
    InstanceStatus.UPDATE_GRANTED.value,
    InstanceStatus.DOWNLOADING.value,
    InstanceStatus.DOWNLOADED.value,
    InstanceStatus.INSTALLED.value,
    InstanceStatus.COMPLETE.value,
    InstanceStatus.ERROR.value,
    InstanceStatus.ON_HOLD.value,
)
"""Rollout stages in chart order: how many instances of the group are in each, over time."""

POINTS = 60
"""Most points a rollout chart shows."""
SAMPLE_KEEP = timedelta(days=7)
"""How long per-group status samples are kept."""
DEFAULT_WINDOW = timedelta(hours=2)
"""What the chart shows when no rollout start is known."""

SORTS: dict[str, Any] = {
    "machine_id": instances.c.machine_id,
    "alias": instances.c.alias,
    "version": instances.c.version,
    "status": instances.c.status,
    "last_seen": instances.c.last_seen,
}
"""Columns the instances list may be sorted by (anything else is refused)."""

STATUSES = tuple(s.value for s in InstanceStatus)


@dataclass
class InstancePage:
    """One page of a group's instances and the numbers to page through the rest."""

    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int


PERIODS: dict[str, timedelta | None] = {
    "rollout": None,
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
}
"""What the group page's period picker offers: since the rollout began, or a fixed span."""


@dataclass
class Progress:
    """Instances in each stage of the current rollout at each sample time (the last is now)."""

    version: str | None
    labels: list[str] = field(default_factory=list)
    series: dict[str, list[int]] = field(default_factory=dict)
    times: list[int] = field(default_factory=list)
    """Sample times as milliseconds since the epoch (the chart's time axis)."""
    period: str = "rollout"


def _iso(dt: datetime | None) -> str:
    d = utc(dt)
    return d.strftime("%Y-%m-%d %H:%M:%S") if d is not None else ""


def app_summaries(engine: Engine) -> list[dict[str, Any]]:
    """Applications with their instance, group and channel counts."""
    with reading(engine) as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                select(instances.c.app_id, func.count()).group_by(instances.c.app_id)
            ).all()
        )
        ngroups: dict[str, int] = dict(
            conn.execute(select(groups.c.app_id, func.count()).group_by(groups.c.app_id)).all()
        )
        nchan: dict[str, int] = dict(
            conn.execute(select(channels.c.app_id, func.count()).group_by(channels.c.app_id)).all()
        )
        rows = conn.execute(select(applications).order_by(applications.c.name)).mappings()
        return [
            {
                **dict(r),
                "instances": int(counts.get(r["id"], 0)),
                "groups": int(ngroups.get(r["id"], 0)),
                "channels": int(nchan.get(r["id"], 0)),
            }
            for r in rows
        ]


def app_name(engine: Engine, app_id: str) -> str:
    """The application's name; raises catalog.NotFoundError."""
    with reading(engine) as conn:
        name = conn.execute(select(applications.c.name).where(applications.c.id == app_id)).scalar()
    if name is None:
        raise catalog.NotFoundError(f"no application {app_id}")
    return str(name)


def versions(engine: Engine, app_id: str) -> list[str]:
    """Versions that have a package (what a channel may point at), newest first."""
    from flotilla.updates.models import InvalidVersionError, Version

    with reading(engine) as conn:
        vs = set(
            conn.execute(
                select(packages.c.version).where(packages.c.app_id == app_id).distinct()
            ).scalars()
        )

    def key(v: str) -> tuple[int, Any]:
        try:
            return (1, Version.parse(v)._key())
        except InvalidVersionError:
            return (0, ())

    return sorted(vs, key=key, reverse=True)


def status_counts_by_group(engine: Engine, app_id: str) -> dict[str, dict[str, int]]:
    """group id -> status -> instances (one GROUP BY over an index)."""
    out: dict[str, dict[str, int]] = {}
    with reading(engine) as conn:
        # By group id, not app id: the (group_id, status) index answers it alone.
        ids = select(groups.c.id).where(groups.c.app_id == app_id).scalar_subquery()
        q = (
            select(instances.c.group_id, instances.c.status, func.count())
            .where(instances.c.group_id.in_(ids))
            .group_by(instances.c.group_id, instances.c.status)
        )
        for gid, status, n in conn.execute(q):
            out.setdefault(gid, {})[status] = int(n)
    return out


def group_numbers(conn: Connection, group_id: str) -> dict[str, Any]:
    """Status counts and the version breakdown of one group."""
    status = {
        s: int(n)
        for s, n in conn.execute(
            select(instances.c.status, func.count())
            .where(instances.c.group_id == group_id)
            .group_by(instances.c.status)
        )
    }
    by_version = [
        (v, int(n))
        for v, n in conn.execute(
            select(instances.c.version, func.count().label("n"))
            .where(instances.c.group_id == group_id)
            .group_by(instances.c.version)
            .order_by(literal_column("n").desc(), instances.c.version)
        )
    ]
    return {"status": status, "versions": by_version, "total": sum(status.values())}


def rollout_started(conn: Connection, group_id: str, version: str) -> datetime | None:
    """When the rollout of ``version`` first started in the group.

    The first RolloutStarted entry, not the last: resuming a halted rollout logs another one, and
    the chart must keep the failed part of the rollout's history.
    """
    at = conn.execute(
        select(func.min(activity.c.at)).where(
            activity.c.group_id == group_id,
            activity.c.kind == ActivityKind.ROLLOUT_STARTED.value,
            activity.c.version == version,
        )
    ).scalar()
    return utc(at)


def sample(engine: Engine, now: datetime | None = None, keep: timedelta = SAMPLE_KEEP) -> int:
    """Record how many instances each group has in each status now; drop old samples.

    One ``GROUP BY`` over the (group, status) index, read outside the write transaction; the
    write is a few rows. Returns how many rows were written.
    """
    now = now or datetime.now(UTC)
    with reading(engine) as conn:
        rows = conn.execute(
            select(instances.c.group_id, instances.c.status, func.count()).group_by(
                instances.c.group_id, instances.c.status
            )
        ).all()
    with engine.begin() as conn:
        if rows:
            conn.execute(
                insert(group_status_samples),
                [{"group_id": g, "at": now, "status": s, "count": int(n)} for g, s, n in rows],
            )
        conn.execute(delete(group_status_samples).where(group_status_samples.c.at < now - keep))
    return len(rows)


def progress(
    conn: Connection,
    group_id: str,
    version: str | None,
    live: dict[str, int],
    now: datetime | None = None,
    points: int = POINTS,
    period: str = "rollout",
) -> Progress:
    """Instances per rollout stage over time, from the samples since the rollout began.

    Reads the group's samples (a few hundred small rows, never the instances), keeps at most
    ``points`` evenly spread timestamps, and ends with ``live``, the counts of this moment.
    ``period`` is a key of :data:`PERIODS` (unknown keys mean the whole rollout).
    """
    now = now or datetime.now(UTC)
    period = period if period in PERIODS else "rollout"
    out = Progress(version, period=period)
    span = PERIODS[period]
    if span is not None:
        since: datetime | None = now - span
    else:
        since = rollout_started(conn, group_id, version) if version else None
    since = max(since or now - DEFAULT_WINDOW, now - SAMPLE_KEEP)
    s = group_status_samples.c
    by_at: dict[datetime, dict[str, int]] = {}
    for at, status, count in conn.execute(
        select(s.at, s.status, s.count).where(s.group_id == group_id, s.at >= since).order_by(s.at)
    ):
        by_at.setdefault(utc(at) or now, {})[status] = int(count)
    stamps = sorted(by_at)
    if len(stamps) > points - 1:
        step = len(stamps) / (points - 1)
        stamps = [stamps[int(i * step)] for i in range(points - 1)]
    frames = [(at, by_at[at]) for at in stamps] + [(now, live)]
    out.labels = [at.strftime("%H:%M:%S") for at, _ in frames]
    out.times = [int(at.timestamp() * 1000) for at, _ in frames]
    out.series = {st: [f.get(st, 0) for _, f in frames] for st in STAGES}
    return out


def group_state(
    engine: Engine, app_id: str, group_ref: str, period: str = "rollout", full: bool = True
) -> dict[str, Any]:
    """Everything the group page and its live poll show (raises catalog.NotFoundError).

    ``full`` adds the reason breakdown and the versions over time, which read the waiting machines
    and the status history (the page, not the poll).
    """
    g = catalog.get_group(engine, app_id, group_ref)
    with reading(engine) as conn:
        numbers = group_numbers(conn, g["id"])
        version = g["policy"].get("pinned_version") or _channel_version(conn, app_id, g["channel"])
        prog = progress(
            conn, g["id"], g["rollout_version"] or version, numbers["status"], period=period
        )
        glance = rollout_status.glance(conn, g)
        by_version = None
        if full:
            stamps = [datetime.fromtimestamp(ms / 1000, UTC) for ms in prog.times]
            by_version = rollout_status.versions_over_time(
                conn, g["id"], app_id, numbers["versions"], stamps
            )
        reasons = rollout_status.breakdown(conn, g["id"]) if full else None
        recent = [
            _activity_out(r)
            for r in conn.execute(
                select(activity)
                .where(activity.c.group_id == g["id"])
                .order_by(activity.c.id.desc())
                .limit(10)
            ).mappings()
        ]
    on_target = sum(n for v, n in numbers["versions"] if v == version) if version else 0
    return {
        "group": g,
        "target": version,
        "on_target": on_target,
        "numbers": numbers,
        "progress": prog,
        "recent": recent,
        "glance": glance,
        "reasons": reasons,
        "versions_over_time": by_version,
    }


def app_glance(engine: Engine, app_id: str) -> dict[str, dict[str, Any]]:
    """group id -> the group's rollout at a glance (see :func:`rollout_status.glance`)."""
    gs = catalog.list_groups(engine, app_id)
    with reading(engine) as conn:
        return {g["id"]: rollout_status.glance(conn, g) for g in gs}


def _channel_version(conn: Connection, app_id: str, channel: str | None) -> str | None:
    if channel is None:
        return None
    v = conn.execute(
        select(channels.c.version).where(channels.c.app_id == app_id, channels.c.name == channel)
    ).scalar()
    return str(v) if v is not None else None


def instance_page(
    engine: Engine,
    app_id: str,
    group_id: str,
    *,
    q: str = "",
    status: str = "",
    version: str = "",
    sort: str = "last_seen",
    order: str = "desc",
    page: int = 1,
    per_page: int = PER_PAGE,
) -> InstancePage:
    """One page of a group's instances: search (machine id or alias contains ``q``), filters, sort.

    Sorting and paging happen in SQL; the total is one COUNT with the same filters.
    """
    col = SORTS.get(sort, instances.c.last_seen)
    cond = [instances.c.app_id == app_id, instances.c.group_id == group_id]
    if q:
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        cond.append(
            or_(
                instances.c.machine_id.like(like, escape="\\"),
                instances.c.alias.like(like, escape="\\"),
            )
        )
    if status:
        cond.append(instances.c.status == status)
    if version:
        cond.append(instances.c.version == version)
    with reading(engine) as conn:
        total = int(conn.execute(select(func.count()).where(*cond)).scalar_one())
        pages = max(1, -(-total // per_page))
        page = min(max(1, page), pages)
        direction = col.desc() if order == "desc" else col.asc()
        rows = (
            conn.execute(
                select(
                    instances.c.machine_id,
                    instances.c.alias,
                    instances.c.version,
                    instances.c.status,
                    instances.c.last_seen,
                    instances.c.last_update_version,
                    instances.c.ip,
                    instances.c.last_error_code,
                    instances.c.app_id,
                    instances.c.group_id,
                    instances.c.arch,
                    instances.c.last_update_granted_at,
                    instances.c.update_in_progress,
                )
                .where(*cond)
                .order_by(direction, instances.c.machine_id)
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
            .mappings()
            .all()
        )
        out = [{**dict(r), "last_seen": _iso(r["last_seen"])} for r in rows]
        rollout_status.annotate(conn, zip(rows, out, strict=True))
    return InstancePage(out, total, page, pages)


def _activity_out(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "at": _iso(r["at"]),
        "app_id": r["app_id"],
        "group_id": r["group_id"],
        "kind": r["kind"],
        "severity": r["severity"],
        "version": r["version"],
        "machine_id": r["machine_id"],
        "message": r["message"],
    }


def activity_page(
    engine: Engine,
    *,
    before: int | None = None,
    after: int | None = None,
    severity: str = "",
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The feed newest first, paged by id (``before``) or new entries since ``after``."""
    q = select(activity).order_by(activity.c.id.desc()).limit(limit)
    if before is not None:
        q = q.where(activity.c.id < before)
    if after is not None:
        q = q.where(activity.c.id > after)
    if severity:
        q = q.where(activity.c.severity == severity)
    with reading(engine) as conn:
        return [_activity_out(r) for r in conn.execute(q).mappings()]


def group_names(engine: Engine) -> dict[str, tuple[str, str]]:
    """group id -> (app id, group name), to link feed entries (bounded by the number of groups)."""
    with reading(engine) as conn:
        return {
            r.id: (r.app_id, r.name)
            for r in conn.execute(select(groups.c.id, groups.c.app_id, groups.c.name))
        }


def instance_detail(
    engine: Engine, app_id: str, machine_id: str, history_limit: int = 200
) -> dict[str, Any]:
    """One instance with the newest ``history_limit`` status changes, newest first."""
    with reading(engine) as conn:
        row = (
            conn.execute(
                select(instances).where(
                    instances.c.app_id == app_id, instances.c.machine_id == machine_id
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise catalog.NotFoundError(f"no instance {machine_id} of {app_id}")
        hist = conn.execute(
            select(instance_history)
            .where(instance_history.c.app_id == app_id, instance_history.c.machine_id == machine_id)
            .order_by(instance_history.c.id.desc())
            .limit(history_limit)
        ).mappings()
        out = dict(row)
        for k in ("first_seen", "last_seen", "last_update_granted_at"):
            out[k] = _iso(row[k])
        rollout_status.annotate(conn, [(row, out)])
        out["history"] = [
            {**dict(h), "at": _iso(h["at"]), "error": _error_text(h["error_code"])} for h in hist
        ]
        return out


def _error_text(code: int | None) -> str:
    return error_codes.describe(code) if code is not None else ""


STALE_LOCK = timedelta(hours=1)
"""A reboot lock held longer than this is flagged as probably stale on the reboots page."""


def lock_group_view(g: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A FleetLock group as the reboots page shows it: slots used and whether a window is open."""
    windows = tuple(parse_window(w) for w in g["windows"])
    return {**g, "open": in_any_window(now, windows, g["timezone"])}


def lock_holder_view(h: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A lock holder with how long it has held the lock and whether that looks stale."""
    since = datetime.fromisoformat(h["acquired_at"]) if h["acquired_at"] else now
    since = utc(since) or now
    age = now - since
    minutes = int(age.total_seconds() // 60)
    return {
        **h,
        "since": _iso(since),
        "age": f"{minutes // 60}h {minutes % 60}m" if minutes >= 60 else f"{minutes}m",
        "stale": age > STALE_LOCK,
    }
