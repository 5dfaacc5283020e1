"""Why machines wait and how fast a rollout moves: read from the store for dashboard, API, CLI.

The words come from :func:`policies.why` and :func:`policies.group_why`, which run the check-in's
own decision (:func:`policies.may_grant`) over the same facts the check-in reads: the group's
policy, channel and brake, and the rate-limit counts from :mod:`store`'s own queries. So a reason
can never disagree with the decision. Everything here only reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from flotilla.updates import policies
from flotilla.updates.models import (
    ActivityKind,
    Channel,
    InstanceState,
    InstanceStatus,
    RolloutStats,
)
from flotilla.updates.policies import GroupFacts, Why
from flotilla.updates.server import checkin_sql
from flotilla.updates.server.fleetspec import policy_from_dict
from flotilla.updates.server.rollouts import utc
from flotilla.updates.server.schema import (
    activity,
    channels,
    groups,
    instance_history,
    instances,
    packages,
)

GROUP_PAUSED = "GroupPaused"
"""Activity kind the dashboard logs when it pauses a group (see ``dashboard.actions``)."""
BREAKDOWN_CAP = 5_000
"""Most machines of one group whose reasons are counted for the breakdown."""
RATE_WINDOW = timedelta(hours=1)
"""How far back the rollout rate looks."""
MIN_RATE_WINDOW = timedelta(minutes=10)
"""The shortest span a rate is measured over (a one-minute-old rollout is not extrapolated)."""


@dataclass
class FactsReader:
    """Reads and caches the facts about groups, per request (one connection, one ``now``)."""

    conn: Connection
    now: datetime
    _facts: dict[str, GroupFacts | None] = field(default_factory=dict)
    _packages: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def facts(self, group_id: str) -> GroupFacts | None:
        """The group's facts (None when the group is gone)."""
        if group_id not in self._facts:
            self._facts[group_id] = self._load(group_id)
        return self._facts[group_id]

    def has_package(self, app_id: str, version: str, arch: str) -> bool:
        if app_id not in self._packages:
            rows = self.conn.execute(
                select(packages.c.version, packages.c.arch).where(packages.c.app_id == app_id)
            )
            self._packages[app_id] = {(v, a) for v, a in rows}
        return (version, arch) in self._packages[app_id]

    def _load(self, group_id: str) -> GroupFacts | None:
        g = self.conn.execute(select(groups).where(groups.c.id == group_id)).mappings().first()
        if g is None:
            return None
        policy = policy_from_dict(g["policy"])
        channel = None
        if g["channel"] is not None:
            c = (
                self.conn.execute(
                    select(channels).where(
                        channels.c.app_id == g["app_id"], channels.c.name == g["channel"]
                    )
                )
                .mappings()
                .first()
            )
            if c is not None:
                channel = Channel(
                    g["app_id"], c["name"], c["version"],
                    tuple(c["blocked_versions"] or ()), tuple(c["floors"] or ()),
                )  # fmt: skip
        facts = GroupFacts(
            group_id, policy, channel, g["halted_version"], g["halted_reason"],
            paused_by=None if policy.updates_enabled else self._paused_by(group_id),
        )  # fmt: skip
        if policies.needs_stats(policy) and facts.final_target is not None:
            stats = self._stats(group_id, facts)
            facts = replace(facts, stats=stats, next_slot=self._next_slot(group_id, facts, stats))
        return facts

    def _stats(self, group_id: str, facts: GroupFacts) -> RolloutStats:
        """The check-in's own counting queries (:mod:`store`), with the same parameters."""
        p = facts.policy
        params = {
            "g": group_id,
            "period_start": self.now - p.period_interval,
            "timeout_start": self.now - p.update_timeout,
            "target": facts.final_target,
        }
        granted = self.conn.execute(checkin_sql.GRANTED_IN_PERIOD, params).scalar_one()
        live, timed_out = self.conn.execute(checkin_sql.IN_PROGRESS, params).one()
        attempted = (
            self.conn.execute(checkin_sql.ATTEMPTED, params).scalar_one() if p.safe_mode else 0
        )
        return RolloutStats(int(granted), int(live or 0), int(timed_out or 0), int(attempted))

    def _next_slot(self, group_id: str, facts: GroupFacts, stats: RolloutStats) -> datetime | None:
        p = facts.policy
        limit = 1 if p.safe_mode and stats.attempted == 0 else p.max_updates_per_period
        excess = stats.granted_in_period - limit
        if excess < 0:
            return None
        at = self.conn.execute(
            select(instances.c.last_update_granted_at)
            .where(instances.c.group_id == group_id)
            .where(instances.c.last_update_granted_at > self.now - p.period_interval)
            .order_by(instances.c.last_update_granted_at)
            .offset(excess)
            .limit(1)
        ).scalar()
        when = utc(at)
        return policies.next_slot([when] if when else [], 1, p.period_interval)

    def _paused_by(self, group_id: str) -> str | None:
        """Who paused and when, from the feed's latest pause entry (it names the user or token;
        entries from before names were logged say "an admin")."""
        row = self.conn.execute(
            select(activity.c.at, activity.c.message)
            .where(activity.c.group_id == group_id, activity.c.kind == GROUP_PAUSED)
            .order_by(activity.c.at.desc(), activity.c.id.desc())
            .limit(1)
        ).first()
        if row is None or utc(row.at) is None:
            return None
        _, by, who = str(row.message).rpartition(" paused by ")
        return f"{who if by else 'an admin'} at {utc(row.at):%Y-%m-%d %H:%M} UTC"


def state_of(row: Any) -> InstanceState:
    """The check-in's view of an instance row."""
    return InstanceState(
        version=row["version"],
        status=InstanceStatus(row["status"]),
        last_update_version=row["last_update_version"],
        last_update_granted_at=utc(row["last_update_granted_at"]),
        update_in_progress=bool(row["update_in_progress"]),
        last_error_code=row["last_error_code"],
    )


def why_row(reader: FactsReader, row: Any) -> Why | None:
    """Why one instance row is not on its group's target (None: it is, or nothing to say)."""
    facts = reader.facts(row["group_id"])
    if facts is None:
        return Why("noGroup", "its group no longer exists")
    state = state_of(row)
    target = None
    if facts.final_target is not None:
        try:
            target = policies.choose_target(
                state.version, facts.channel or Channel("", ""), facts.policy.pinned_version
            )
        except ValueError:
            target = None
    has_package = target is None or reader.has_package(row["app_id"], target, row["arch"])
    return policies.why(reader.now, row["machine_id"], state, facts, has_package)


def annotate(conn: Connection, rows: Iterable[tuple[Any, dict[str, Any]]]) -> None:
    """Add ``reason``, ``reason_kind`` and ``error`` to each output dict from its raw row."""
    from flotilla.updates import error_codes

    reader = FactsReader(conn, datetime.now(UTC))
    for raw, out in rows:
        w = why_row(reader, raw)
        out["reason"] = w.text if w else None
        out["reason_kind"] = w.kind if w else None
        code = raw["last_error_code"]
        out["error"] = error_codes.describe(code) if code is not None else None


def breakdown(
    conn: Connection, group_id: str, now: datetime | None = None, cap: int = BREAKDOWN_CAP
) -> dict[str, Any]:
    """How many machines of the group wait for each reason, with one example sentence each."""
    reader = FactsReader(conn, now or datetime.now(UTC))
    facts = reader.facts(group_id)
    cond = [instances.c.group_id == group_id]
    if facts is not None and facts.final_target is not None:
        cond.append(
            (instances.c.version != facts.final_target)
            | (instances.c.status == InstanceStatus.ERROR.value)
            | instances.c.update_in_progress.is_(True)
        )
    c = instances.c
    needed = (
        c.machine_id, c.app_id, c.group_id, c.version, c.status, c.arch, c.last_update_version,
        c.last_update_granted_at, c.update_in_progress, c.last_error_code,
    )  # fmt: skip
    rows = conn.execute(select(*needed).where(*cond).limit(cap + 1)).mappings().all()
    counts: Counter[str] = Counter()
    sample: dict[str, str] = {}
    for r in rows[:cap]:
        w = why_row(reader, r)
        if w is None:
            continue
        counts[w.kind] += 1
        sample.setdefault(w.kind, w.text)
    return {
        "reasons": [{"kind": k, "count": n, "text": sample[k]} for k, n in counts.most_common()],
        "capped": len(rows) > cap,
    }


def glance(
    conn: Connection, group: Mapping[str, Any], now: datetime | None = None
) -> dict[str, Any]:
    """A group's rollout at a glance: target, share on it, rate, ETA and why it stands still."""
    now = now or datetime.now(UTC)
    reader = FactsReader(conn, now)
    facts = reader.facts(group["id"])
    assert facts is not None
    target = facts.final_target
    total = int(
        conn.execute(select(func.count()).where(instances.c.group_id == group["id"])).scalar_one()
    )
    on_target = 0
    per_hour = 0.0
    if target is not None:
        on_target = int(
            conn.execute(
                select(func.count()).where(
                    instances.c.group_id == group["id"], instances.c.version == target
                )
            ).scalar_one()
        )
        started = utc(
            conn.execute(
                select(func.min(activity.c.at)).where(
                    activity.c.group_id == group["id"],
                    activity.c.kind == ActivityKind.ROLLOUT_STARTED.value,
                    activity.c.version == target,
                )
            ).scalar()
        )
        # A young rollout is measured over its own age (at least MIN_RATE_WINDOW), not an hour.
        window = min(RATE_WINDOW, max(MIN_RATE_WINDOW, now - (started or now - RATE_WINDOW)))
        granted = int(
            conn.execute(
                select(func.count()).where(
                    instances.c.group_id == group["id"],
                    instances.c.last_update_version == target,
                    instances.c.last_update_granted_at > now - window,
                )
            ).scalar_one()
        )
        per_hour = granted / (window.total_seconds() / 3600)
    still = policies.group_why(now, facts)
    eligible = round(total * min(max(facts.policy.rollout_percent, 0.0), 100.0) / 100.0)
    remaining = max(0, eligible - on_target)
    stopped = still is not None and still.kind in (
        policies.Reason.UPDATES_DISABLED.value,
        policies.Reason.ROLLOUT_HALTED.value,
    )
    eta = policies.eta(remaining, per_hour, facts.policy, stopped=stopped)
    return {
        "target": target,
        "total": total,
        "on_target": on_target,
        "percent": round(100.0 * on_target / total, 1) if total else 0.0,
        "rate_per_hour": round(per_hour, 1),
        "remaining": remaining,
        "eta": eta,
        "stopped": still.text if still else None,
        "stopped_kind": still.kind if still else None,
    }


def _first_history_id_after(conn: Connection, since: datetime) -> int | None:
    """The first status-history id written after ``since`` (ids grow with time): a binary
    search over the primary key, as the history has no index on its time."""
    h = instance_history.c
    lo, hi = conn.execute(select(func.min(h.id), func.max(h.id))).one()
    if lo is None:
        return None

    def first_from(i: int) -> tuple[int, datetime] | None:
        row = conn.execute(select(h.id, h.at).where(h.id >= i).order_by(h.id).limit(1)).first()
        return (int(row[0]), utc(row[1]) or since) if row else None

    last = first_from(int(hi))
    if last is None or last[1] <= since:
        return None
    low, high = int(lo), int(hi)
    while low < high:  # the smallest i whose first row at or after it is newer than ``since``
        mid = (low + high) // 2
        found = first_from(mid)
        if found is not None and found[1] > since:
            high = mid
        else:
            low = mid + 1
    first = first_from(low)
    return first[0] if first else None


VERSION_SERIES = 6
"""Versions drawn separately in the versions-over-time chart; the rest add up as "other"."""


def versions_over_time(
    conn: Connection,
    group_id: str,
    app_id: str,
    current: list[tuple[str, int]],
    times: list[datetime],
) -> dict[str, list[int]]:
    """Machines per version at each of ``times`` (oldest first, the last one is now).

    Walks back from the current breakdown: each change of version between two consecutive
    status-history rows of a machine moved it from the older row's version to the newer one,
    so undoing the moves made after ``t`` gives the breakdown at ``t``. Machines first seen
    after ``t`` are left out of it. Reads only history since the first time.
    """
    if not times:
        return {}
    h = instance_history.c
    moves: list[tuple[datetime, str, str]] = []
    bound = _first_history_id_after(conn, times[0])
    if bound is not None:
        earlier = instance_history.alias("earlier")
        prev = (
            select(earlier.c.version)
            .where(earlier.c.app_id == h.app_id, earlier.c.machine_id == h.machine_id)
            .where(earlier.c.id < h.id)
            .order_by(earlier.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        joined = instance_history.join(
            instances, (instances.c.app_id == h.app_id) & (instances.c.machine_id == h.machine_id)
        )
        for at, version, before in conn.execute(
            select(h.at, h.version, prev.label("prev"))
            .select_from(joined)
            .where(h.id >= bound, h.app_id == app_id, h.at > times[0])
            .where(instances.c.group_id == group_id)
            .order_by(h.at.desc())
        ):
            if before is not None and before != version:
                moves.append((utc(at) or times[0], version, before))
    newcomers = [
        (utc(at) or times[0], version)
        for at, version in conn.execute(
            select(instances.c.first_seen, instances.c.version)
            .where(instances.c.group_id == group_id, instances.c.first_seen > times[0])
            .order_by(instances.c.first_seen.desc())
        )
    ]
    counts: Counter[str] = Counter(dict(current))
    frames: list[dict[str, int]] = [dict(counts)]
    mi = ni = 0
    for t in reversed(times[:-1]):
        while mi < len(moves) and moves[mi][0] > t:
            _, moved_to, moved_from = moves[mi]
            counts[moved_to] -= 1
            counts[moved_from] += 1
            mi += 1
        while ni < len(newcomers) and newcomers[ni][0] > t:
            # Approximation: a newcomer leaves the count of its current version.
            counts[newcomers[ni][1]] -= 1
            ni += 1
        frames.append({v: n for v, n in counts.items() if n > 0})
    frames.reverse()
    top = [v for v, _ in Counter(dict(current)).most_common(VERSION_SERIES)]
    series = {v: [f.get(v, 0) for f in frames] for v in top}
    other = [sum(n for v, n in f.items() if v not in series) for f in frames]
    if any(other):
        series["other"] = other
    return series
