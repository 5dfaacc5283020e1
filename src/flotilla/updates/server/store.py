"""The check-in path: one Omaha request in, one SQL transaction, one answer out.

Thin adapter between :mod:`omaha` (the wire), :mod:`lifecycle` and :mod:`policies` (the decisions)
and SQL. Concurrency rules:

- an instance row is locked (``FOR UPDATE`` on PostgreSQL) before it changes, so duplicate requests
  from one machine serialize;
- a grant under a rate limit first locks the group row, then counts and decides, so N parallel
  check-ins - in one process or several - never grant more than the limit;
- lock order is always instance, then group, so two transactions never wait on each other in a
  cycle;
- SQLite runs every writing transaction as ``BEGIN IMMEDIATE`` (see :func:`schema.make_engine`).

A check-in that changes nothing a user can see - same version and attributes, events that only
restate the current state (update_engine's 3/2 on every check), nothing to offer or a refusal that
needs no counting, seen within ``quiet_within`` - is answered from one read outside any write
transaction and writes nothing: its last-seen time goes to :class:`lastseen.LastSeen`, which the
server flushes once a second in one statement.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    func,
    insert,
    select,
    tuple_,
)

from flotilla.updates import policies
from flotilla.updates.models import (
    IN_PROGRESS,
    Channel,
    InstanceState,
    InstanceStatus,
    Package,
    Policy,
    RolloutStats,
)
from flotilla.updates.server import checkin_reads, checkin_sql, grantguard, lifecycle, rollouts
from flotilla.updates.server.fleetspec import package_from_row
from flotilla.updates.server.lastseen import LastSeen
from flotilla.updates.server.omaha import (
    STATUS_NO_PACKAGE,
    UPDATECHECK_INTERNAL_ERROR,
    AppRequest,
    AppResponse,
    Request,
)
from flotilla.updates.server.rollouts import LIVE_INTERVAL, GroupCtx, utc
from flotilla.updates.server.schema import (
    groups,
    instance_history,
    instances,
    reading,
)

logger = logging.getLogger(__name__)

_MAX_CACHED_PACKAGES = 1024
"""Bound of the package cache (a fleet serves a handful of versions and arches)."""

QUIET_WITHIN = timedelta(hours=1)
"""A machine last seen longer ago than this takes the writing path (update_engine checks every
45 min +- 5); within it, a check-in that changes nothing only touches :class:`LastSeen`."""


@dataclass
class Observer:
    """Hooks for metrics; the HTTP layer plugs Prometheus counters in."""

    on_grant: Callable[[str, str], None] = field(default=lambda app, group: None)
    on_failure: Callable[[str, str], None] = field(default=lambda app, group: None)
    on_refusal: Callable[[str, str, str], None] = field(default=lambda app, group, why: None)


def _state_of(row: Any) -> InstanceState:
    return InstanceState(
        version=row["version"],
        status=InstanceStatus(row["status"]),
        last_update_version=row["last_update_version"],
        last_update_granted_at=utc(row["last_update_granted_at"]),
        update_in_progress=bool(row["update_in_progress"]),
        last_error_code=row["last_error_code"],
    )


def _events_are_noops(row: Any, app: AppRequest) -> bool:
    """True when applying the events to the stored state changes and records nothing."""
    state = _state_of(row)
    for ev in app.events:
        out = lifecycle.apply_event(state, ev, app.version)
        if out.changed or out.activity is not None or out.failed or out.completed:
            return False
    return True


class Store:
    """The SQL side of check-ins, pruning and the numbers behind /metrics."""

    def __init__(
        self,
        engine: Engine,
        observer: Observer | None = None,
        config_ttl: float = 1.0,
        quiet_within: timedelta = QUIET_WITHIN,
        new_machines: grantguard.NewMachineLimit | None = None,
    ) -> None:
        self.engine = engine
        self.new_machines = new_machines or grantguard.NewMachineLimit()
        self.observer = observer or Observer()
        self.config_ttl = config_ttl
        self.quiet_within = quiet_within
        self.seen = LastSeen(engine)
        self._ctx_cache: dict[tuple[str, str], tuple[float, GroupCtx]] = {}
        self._pkg_cache: dict[tuple[str, str, str], tuple[float, Package]] = {}
        self._unknown_logged: set[tuple[str, str]] = set()
        self._pg = engine.dialect.name == "postgresql"
        # SQLite has one writer: queue this process's transactions on a lock instead of letting
        # threads spin in SQLite's busy handler (which sleeps in growing steps and hurts p99).
        self._serial = threading.Lock() if not self._pg else contextlib.nullcontext()

    # --- check-in ------------------------------------------------------------------------------

    def checkin(self, req: Request, ip: str = "", now: datetime | None = None) -> list[AppResponse]:
        """Process a parsed request atomically.

        An app whose appid or track this server does not know is answered with Nebraska's error
        statuses (:meth:`AppResponse.unknown`) and changes nothing; the others are served.
        """
        now = now or datetime.now(UTC)
        # A read-only look first (no transaction on PostgreSQL, a deferred one on SQLite): the
        # steady state of a fleet - nothing to offer, nothing to record - ends here.
        found, known, rows = self._look(req.apps)
        for app, ctx in zip(req.apps, found, strict=True):
            if ctx is None:
                self._note_unknown(app)
        quiet = [
            self._quiet(row, app, ctx, ip, now)
            for row, (_, app, ctx) in zip(rows, known, strict=True)
        ]
        answers = [AppResponse.unknown(app.raw_app_id) for app in req.apps]
        absent = {i for row, (i, _, _) in zip(rows, known, strict=True) if row is None}
        if all(q is not None for q in quiet):
            for q, (i, app, ctx) in zip(quiet, known, strict=True):
                self.seen.touch(app.machine_id, app.app_id, now)
                if q:
                    self.observer.on_refusal(ctx.app_id, ctx.name, q)
                answers[i] = AppResponse(
                    app.raw_app_id, len(app.events), app.ping, app.update_check
                )
        else:
            with self._serial, self.engine.begin() as conn:
                for i, app, ctx in known:
                    answers[i] = self._checkin_app(conn, app, ctx, ip, now, i in absent)
        return answers

    def _look(
        self, apps: tuple[AppRequest, ...]
    ) -> tuple[list[GroupCtx | None], list[tuple[int, AppRequest, GroupCtx]], list[Any]]:
        """(group of each app, the known ones with their index, their instance rows or None)."""

        def pick(found: list[GroupCtx | None]) -> list[tuple[int, AppRequest, GroupCtx]]:
            return [
                (i, app, ctx)
                for i, (app, ctx) in enumerate(zip(apps, found, strict=True))
                if ctx is not None
            ]

        if self._pg and not self._instrumented():
            found = [self._cached(app) for app in apps]
            if any(ctx is None for ctx in found):
                with self._read() as conn:
                    found = [
                        ctx or self._resolve_cached(conn, a)
                        for a, ctx in zip(apps, found, strict=True)
                    ]
            known = pick(found)
            return found, known, self._driver_reads([app for _, app, _ in known])
        with self._read() as conn:
            found = [self._resolve_cached(conn, app) for app in apps]
            known = pick(found)
            rows = [self._select_instance(conn, app, lock=False) for _, app, _ in known]
        return found, known, rows

    def _instrumented(self) -> bool:
        """Whether anything listens to this engine's statements (tracing, statement recorders):
        then every read goes through SQLAlchemy, so that it sees them."""
        d = self.engine.dispatch
        return bool(d.before_cursor_execute or d.after_cursor_execute)

    def _driver_reads(self, apps: list[AppRequest]) -> list[Any]:
        return checkin_reads.driver_instance_rows(self.engine, apps)

    def _note_unknown(self, app: AppRequest) -> None:
        checkin_reads.note_unknown(self._unknown_logged, app)

    def flush_seen(self) -> int:
        """Write the last-seen times of quiet check-ins (the server calls this every second)."""
        with self._serial:
            return self.seen.flush()

    def invalidate(self) -> None:
        """Forget cached groups and packages (after an admin change made through this process)."""
        self._ctx_cache.clear()
        self._pkg_cache.clear()

    def _resolve_cached(self, conn: Connection, app: AppRequest) -> GroupCtx | None:
        """Group and channel for (app, track), cached for ``config_ttl`` seconds.

        Only found groups are cached, so the cache is bounded by the number of groups. Policy and
        channel changes reach every process within the TTL; the brake state is re-read on grants.
        """
        hit = self._cached(app)
        if hit is not None:
            return hit
        ctx = self._resolve(conn, app)
        if ctx is not None and self.config_ttl > 0:
            self._ctx_cache[(app.app_id, app.track)] = (time.monotonic() + self.config_ttl, ctx)
        return ctx

    def _cached(self, app: AppRequest) -> GroupCtx | None:
        hit = self._ctx_cache.get((app.app_id, app.track))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def _resolve(self, conn: Connection, app: AppRequest) -> GroupCtx | None:
        return checkin_reads.resolve_group(conn, app)

    def _select_instance(
        self, conn: Connection, app: AppRequest, lock: bool, group_id: str = ""
    ) -> Any:
        """The whole row (``lock=False``, the read), or its state columns, locked on PostgreSQL,
        with the brake state of group ``group_id``."""
        # SQLite renders no FOR UPDATE (its writers are serialized by BEGIN IMMEDIATE).
        if lock:
            q, params = checkin_sql.INSTANCE_FOR_UPDATE, {"m": app.machine_id, "a": app.app_id}
            params["g"] = group_id
        else:
            q, params = checkin_sql.INSTANCE, {"m": app.machine_id, "a": app.app_id}
        return conn.execute(q, params).mappings().first()

    def _target(self, app: AppRequest, ctx: GroupCtx) -> str | None:
        if ctx.channel is None and ctx.policy.pinned_version is None:
            return None
        channel = ctx.channel or Channel(app_id=ctx.app_id, name="")
        return policies.choose_target(app.version, channel, ctx.policy.pinned_version)

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        opts: dict[str, Any] = (
            {"isolation_level": "AUTOCOMMIT"} if self._pg else {"flotilla_deferred": True}
        )
        with self.engine.connect().execution_options(**opts) as conn:
            yield conn

    @staticmethod
    def _attrs(app: AppRequest, ctx: GroupCtx, ip: str) -> dict[str, Any]:
        return {
            "group_id": ctx.id,
            "arch": app.arch,
            "alias": app.machine_alias,
            "oem": app.oem,
            "oem_version": app.oem_version,
            "aleph_version": app.aleph_version,
            "boot_id": app.boot_id,
            "ip": ip[:64],
        }

    def _quiet(
        self, row: Any, app: AppRequest, ctx: GroupCtx, ip: str, now: datetime
    ) -> str | None:
        """None when this check-in must write; else "" (nothing to offer) or a refusal reason.

        Quiet means: known, seen within ``quiet_within``, same version and attributes, every
        event a no-op on the stored state (update_engine's 3/2 that restates the version), and
        either nothing newer to offer or a refusal that needs no counting (see
        :func:`policies.early_refusal`).
        """
        if row is None or row["version"] != app.version:
            return None
        if (utc(row["last_seen"]) or now) < now - self.quiet_within:
            return None
        if any(row[k] != v for k, v in self._attrs(app, ctx, ip).items()):
            return None
        if app.events and not _events_are_noops(row, app):
            return None
        if not app.update_check:
            return ""
        if row["update_in_progress"]:
            return None
        if self._target(app, ctx) is None:
            return ""
        halted = ctx.halted_version is not None and ctx.halted_version == ctx.final_target
        early = policies.early_refusal(now, app.machine_id, ctx.id, ctx.policy, halted)
        return None if early is None else early.value

    def _checkin_app(
        self,
        conn: Connection,
        app: AppRequest,
        ctx: GroupCtx,
        ip: str,
        now: datetime,
        absent: bool = False,
    ) -> AppResponse:
        """One app's check-in in the caller's transaction; ``absent``: the read saw no row.

        A machine the read did not find is inserted first (``RETURNING`` hands back the new row,
        locked by the insert); when a parallel request inserted it meanwhile, it is selected
        ``FOR UPDATE`` as a known machine is.
        """
        attrs = self._attrs(app, ctx, ip)
        row = self._insert_instance(conn, app, attrs, now) if absent else None
        if row is None:
            row = self._select_instance(conn, app, lock=True, group_id=ctx.id)
        if row is None:  # pruned since the read
            row = self._insert_instance(conn, app, attrs, now)
        if row is None:  # and inserted again by a parallel request
            row = self._select_instance(conn, app, lock=True, group_id=ctx.id)
        assert row is not None
        # The group's brake state as read with the row; read again when an event moved it.
        group_state = (
            (row["halted_version"], row["rollout_version"]) if "halted_version" in row else None
        )
        state = _state_of(row)
        original = state
        history: list[dict[str, Any]] = []

        def record(st: InstanceState) -> None:
            history.append(
                {
                    "machine_id": app.machine_id,
                    "app_id": app.app_id,
                    "at": now,
                    "status": st.status.value,
                    "version": app.version,
                    "target_version": st.last_update_version,
                    "error_code": st.last_error_code,
                }
            )

        # 1. Events first (update_engine sends the post-reboot 3/2 with the next updatecheck).
        for ev in app.events:
            out = lifecycle.apply_event(state, ev, app.version)
            if out.changed:
                record(out.state)
            if out.activity is not None:
                rollouts.record_activity(conn, ctx, out.activity, now, app.machine_id)
            if out.failed:
                self.observer.on_failure(ctx.app_id, ctx.name)
                # The brake counts machines this server granted the version to, once each: a
                # retry does not halt the rollout by itself, and invented ids count for nothing.
                if grantguard.failure_counts(conn, state, ctx, app.app_id, app.machine_id):
                    rollouts.count_failure(conn, ctx, now)
                    group_state = None
            state = out.state
            if out.completed:
                rollouts.finish_rollout_if_done(conn, ctx, app, now)
        # 2. The ping needs nothing beyond last_seen. 3. The update check.
        package: Package | None = None
        missing = False
        if app.update_check:
            state, package, missing = self._update_check(
                conn, app, ctx, state, now, ip, group_state
            )
            if state.status != original.status and state.status in (
                InstanceStatus.UPDATE_GRANTED,
                InstanceStatus.ON_HOLD,
            ):
                record(state)
        values: dict[str, Any] = {
            **attrs,
            "version": app.version,
            "status": state.status.value,
            "last_seen": now,
            "last_update_version": state.last_update_version,
            "last_update_granted_at": state.last_update_granted_at,
            "update_in_progress": state.update_in_progress,
            "last_error_code": state.last_error_code,
        }
        conn.execute(
            checkin_sql.UPDATE_INSTANCE, {**values, "k_m": app.machine_id, "k_a": app.app_id}
        )
        if history:
            conn.execute(insert(instance_history), history)
        if missing:
            return AppResponse(
                app.raw_app_id,
                len(app.events),
                app.ping,
                app.update_check,
                status=STATUS_NO_PACKAGE,
                update_error=UPDATECHECK_INTERNAL_ERROR,
            )
        return AppResponse(app.raw_app_id, len(app.events), app.ping, app.update_check, package)

    def _insert_instance(
        self, conn: Connection, app: AppRequest, attrs: dict[str, Any], now: datetime
    ) -> Any:
        """Insert a new machine; its state (PostgreSQL: and its group's brake state), or None when
        the row already existed."""
        values: dict[str, Any] = {
            "machine_id": app.machine_id,
            "app_id": app.app_id,
            "version": app.version,
            "status": InstanceStatus.UNDEFINED.value,
            "first_seen": now,
            "last_seen": now,
            "update_in_progress": False,
            **attrs,
        }
        q: Any
        if self._pg:
            q = checkin_sql.INSERT_INSTANCE_PG
            values["g"] = attrs["group_id"]
        else:
            q = checkin_sql.INSERT_INSTANCE_SQLITE
        return conn.execute(q, values).mappings().first()

    def _package(self, conn: Connection, app_id: str, version: str, arch: str) -> Package | None:
        """The package of (app, version, arch); found ones are cached for ``config_ttl``, as
        groups are (a missing one is looked up each time, so a new package is served at once)."""
        key = (app_id, version, arch)
        now = time.monotonic()
        hit = self._pkg_cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = (
            conn.execute(checkin_sql.PACKAGE, {"app_id": app_id, "version": version, "arch": arch})
            .mappings()
            .first()
        )
        if row is None:
            return None
        package = package_from_row(row)
        if self.config_ttl > 0:
            if len(self._pkg_cache) >= _MAX_CACHED_PACKAGES:
                self._pkg_cache.clear()
            self._pkg_cache[key] = (now + self.config_ttl, package)
        return package

    def _update_check(
        self,
        conn: Connection,
        app: AppRequest,
        ctx: GroupCtx,
        state: InstanceState,
        now: datetime,
        ip: str = "",
        group_state: tuple[str | None, str | None] | None = None,
    ) -> tuple[InstanceState, Package | None, bool]:
        """(new state, package to offer, whether the target has no package for this arch).

        ``group_state``: (halted, rollout) version as read with the locked instance row in this
        transaction; None to read it here.
        """
        again = lifecycle.regrant_target(state, app.version)
        if again is not None:
            return state, self._package(conn, ctx.app_id, again, app.arch), False
        target = self._target(app, ctx)
        if target is None:
            return state, None, False
        if state.update_in_progress and state.last_update_version == target:
            return state, None, False  # downloaded or installed, waiting for the reboot
        package = self._package(conn, ctx.app_id, target, app.arch)
        if package is None:
            rollouts.note_missing_package(conn, ctx, target, app.arch, now)
            return state, None, True
        final = ctx.final_target or target
        policy = ctx.policy
        stats: RolloutStats | None = None
        # The brake state is read fresh (the group context may come from the short cache); under
        # a rate limit the read also takes the group lock that serializes grants.
        locked = policies.needs_stats(policy)
        if locked or group_state is None:
            g = self._group_state(conn, ctx.id, lock=locked)
            group_state = g["halted_version"], g["rollout_version"]
        halted_version, rollout_version = group_state
        if locked:
            stats = self._stats(conn, ctx.id, target, policy, now)
        decision = policies.may_grant(
            now, app.machine_id, ctx.id, policy, stats, halted=halted_version == final
        )
        if decision.halt:
            rollouts.halt(conn, ctx, final, decision.reason.value, now)
        if not decision.grant:
            self.observer.on_refusal(ctx.app_id, ctx.name, decision.reason.value)
            if decision.reason in (
                policies.Reason.MAX_UPDATES_PER_PERIOD,
                policies.Reason.MAX_CONCURRENT,
                policies.Reason.MAX_TIMED_OUT,
            ):
                state = lifecycle.hold(state)
            return state, None, False
        if not grantguard.admit_new_machine(
            conn, self.new_machines, ctx.app_id, app.machine_id, ip, now
        ):
            self.observer.on_refusal(ctx.app_id, ctx.name, grantguard.REFUSAL)
            return state, None, False
        if rollout_version != final:
            rollouts.start_rollout(conn, ctx, final, now)
        self.observer.on_grant(ctx.app_id, ctx.name)
        return lifecycle.grant(state, target, now), package, False

    def _group_state(self, conn: Connection, group_id: str, lock: bool) -> Any:
        q = checkin_sql.GROUP_STATE_FOR_UPDATE if lock and self._pg else checkin_sql.GROUP_STATE
        return conn.execute(q, {"g": group_id}).mappings().one()

    def _stats(
        self, conn: Connection, group_id: str, target: str, policy: Policy, now: datetime
    ) -> RolloutStats:
        params = {
            "g": group_id,
            "period_start": now - policy.period_interval,
            "timeout_start": now - policy.update_timeout,
            "target": target,
        }
        granted = conn.execute(checkin_sql.GRANTED_IN_PERIOD, params).scalar_one()
        live, timed_out = conn.execute(checkin_sql.IN_PROGRESS, params).one()
        attempted = (
            conn.execute(checkin_sql.ATTEMPTED, params).scalar_one() if policy.safe_mode else 0
        )
        return RolloutStats(granted, live, timed_out, attempted)

    # --- maintenance ---------------------------------------------------------------------------

    def prune(self, retention: timedelta, now: datetime | None = None, batch: int = 5000) -> int:
        """Delete instances (and their history) not seen for ``retention``; return how many.

        Works in batches, each its own short transaction, so check-ins are never blocked long.
        """
        cutoff = (now or datetime.now(UTC)) - retention
        total = 0
        while True:
            with self.engine.begin() as conn:
                keys = [
                    tuple(r)
                    for r in conn.execute(
                        select(instances.c.app_id, instances.c.machine_id)
                        .where(instances.c.last_seen < cutoff)
                        .limit(batch)
                    )
                ]
                if not keys:
                    return total
                hist_key = tuple_(instance_history.c.app_id, instance_history.c.machine_id)
                conn.execute(delete(instance_history).where(hist_key.in_(keys)))
                inst_key = tuple_(instances.c.app_id, instances.c.machine_id)
                conn.execute(
                    delete(instances)
                    .where(inst_key.in_(keys))
                    .where(instances.c.last_seen < cutoff)
                )
                total += len(keys)
            if len(keys) < batch:
                return total

    def fleet_counts(self, now: datetime | None = None) -> list[tuple[str, str, str, str, int]]:
        """(app, channel, version, status, count) over instances seen in the last day."""
        since = (now or datetime.now(UTC)) - LIVE_INTERVAL
        q = (
            select(
                instances.c.app_id,
                func.coalesce(groups.c.channel, ""),
                instances.c.version,
                instances.c.status,
                func.count(),
            )
            .select_from(instances.join(groups, groups.c.id == instances.c.group_id))
            .where(instances.c.last_seen > since)
            .group_by(instances.c.app_id, groups.c.channel, instances.c.version, instances.c.status)
        )
        with reading(self.engine) as conn:
            return [(a, c, v, s, int(n)) for a, c, v, s, n in conn.execute(q)]

    def ping_db(self) -> None:
        """Raise if the database cannot answer (for /healthz)."""
        with reading(self.engine) as conn:
            conn.execute(select(1))


__all__ = ["IN_PROGRESS", "GroupCtx", "Observer", "Store", "utc"]
