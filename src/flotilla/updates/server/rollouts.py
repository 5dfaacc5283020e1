"""Rollout bookkeeping in SQL: the activity feed, rollout start/finish, the failure brake.

Called by :mod:`store` inside its check-in transaction (after the instance row is locked), so the
group row is always locked second and updates to it are atomic counters or compare-and-set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, insert, or_, select, update

from flotilla.updates import policies
from flotilla.updates.models import (
    Activity,
    ActivityKind,
    Channel,
    InstanceStatus,
    Policy,
    Severity,
)
from flotilla.updates.server.omaha import AppRequest
from flotilla.updates.server.schema import activity, groups, instance_history, instances, packages

logger = logging.getLogger(__name__)

LIVE_INTERVAL = timedelta(days=1)
"""Instances seen within this interval count as the live fleet for "rollout finished"."""


def utc(dt: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; everything in this package is UTC-aware."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


@dataclass
class GroupCtx:
    """A group with its channel, as one check-in needs them."""

    id: str
    app_id: str
    name: str
    policy: Policy
    channel: Channel | None
    halted_version: str | None
    rollout_version: str | None

    @property
    def final_target(self) -> str | None:
        """The version the group is heading to: the pin, else the channel's version."""
        if self.policy.pinned_version:
            return self.policy.pinned_version
        return self.channel.version if self.channel else None


def record_activity(
    conn: Connection,
    ctx: GroupCtx,
    act: Activity,
    now: datetime,
    machine_id: str | None = None,
) -> None:
    """Append to the activity feed (same transaction as the change it describes)."""
    conn.execute(
        insert(activity),
        {
            "at": now,
            "app_id": ctx.app_id,
            "group_id": ctx.id,
            "kind": act.kind.value,
            "severity": act.severity.value,
            "version": act.version,
            "machine_id": machine_id,
            "message": f"group {ctx.name}: {act.message}",
        },
    )


def start_rollout(conn: Connection, ctx: GroupCtx, final: str, now: datetime) -> None:
    """Mark ``final`` as the group's rollout (compare-and-set: logged once across processes)."""
    res = conn.execute(
        update(groups)
        .where(groups.c.id == ctx.id)
        .where(or_(groups.c.rollout_version.is_(None), groups.c.rollout_version != final))
        .values(rollout_version=final, rollout_failures=0)
    )
    if res.rowcount:  # only the first grant of a rollout (across processes) logs it
        record_activity(
            conn,
            ctx,
            Activity(
                ActivityKind.ROLLOUT_STARTED,
                Severity.INFO,
                f"rollout of {final} started",
                final,
            ),
            now,
        )


def note_missing_package(
    conn: Connection, ctx: GroupCtx, version: str, arch: str, now: datetime
) -> None:
    """Log a missing package once per group, arch and version, not once per check-in.

    An arch mismatch (the version has packages, none for this arch: an arm64 machine in a group
    whose channel only ships amd64) says which arches it has, so the fix is obvious.
    """
    prefix = f"group {ctx.name}: no {arch} package of {version}"
    seen = conn.execute(
        select(activity.c.id)
        .where(activity.c.group_id == ctx.id)
        .where(activity.c.kind == ActivityKind.PACKAGE_NOT_FOUND.value)
        .where(activity.c.message.startswith(prefix, autoescape=True))
        .limit(1)
    ).first()
    if seen is not None:
        return
    others = sorted(
        conn.execute(
            select(packages.c.arch)
            .where(packages.c.app_id == ctx.app_id)
            .where(packages.c.version == version)
        ).scalars()
    )
    message = f"no {arch} package of {version}"
    if others:
        message += f" (arch mismatch: the channel's version has {', '.join(others)} only)"
    logger.warning("group %s: %s", ctx.name, message)
    record_activity(
        conn,
        ctx,
        Activity(ActivityKind.PACKAGE_NOT_FOUND, Severity.WARNING, message, version),
        now,
    )


def failed_before(conn: Connection, app_id: str, machine_id: str, target: str | None) -> bool:
    """Whether this machine already failed an update to ``target`` (from its status history)."""
    if target is None:
        return False
    row = conn.execute(
        select(instance_history.c.id)
        .where(instance_history.c.app_id == app_id)
        .where(instance_history.c.machine_id == machine_id)
        .where(instance_history.c.status == InstanceStatus.ERROR.value)
        .where(instance_history.c.target_version == target)
        .limit(1)
    ).first()
    return row is not None


def count_failure(conn: Connection, ctx: GroupCtx, now: datetime) -> None:
    """Count a failed attempt on the current rollout (atomic increment); trip the brake."""
    final = ctx.final_target
    if final is None:
        return
    row = conn.execute(
        update(groups)
        .where(groups.c.id == ctx.id, groups.c.rollout_version == final)
        .values(rollout_failures=groups.c.rollout_failures + 1)
        .returning(groups.c.rollout_failures, groups.c.halted_version)
    ).first()
    if row is None:
        return  # the failure belongs to no rollout we track
    failures, halted = row
    if halted != final and policies.brake_trips(ctx.policy, failures):
        halt(conn, ctx, final, f"{failures} failed updates", now)


def halt(conn: Connection, ctx: GroupCtx, final: str, why: str, now: datetime) -> None:
    """Halt the rollout of ``final`` in this group until an admin resumes it."""
    res = conn.execute(
        update(groups)
        .where(groups.c.id == ctx.id)
        .where(or_(groups.c.halted_version.is_(None), groups.c.halted_version != final))
        .values(halted_version=final, halted_reason=why)
    )
    if res.rowcount:
        logger.warning("rollout of %s in group %s halted: %s", final, ctx.name, why)
        record_activity(
            conn,
            ctx,
            Activity(
                ActivityKind.ROLLOUT_FAILED,
                Severity.ERROR,
                f"rollout of {final} halted ({why}); press Resume updates on the group page",
                final,
            ),
            now,
        )


def finish_rollout_if_done(conn: Connection, ctx: GroupCtx, app: AppRequest, now: datetime) -> None:
    final = ctx.final_target
    if final is None or app.version != final:
        return
    behind = conn.execute(  # LIMIT 1: mid-rollout this stops at the first straggler
        select(instances.c.machine_id)
        .where(instances.c.group_id == ctx.id)
        .where(instances.c.last_seen > now - LIVE_INTERVAL)
        .where(instances.c.version != final)
        .where(instances.c.machine_id != app.machine_id)
        .limit(1)
    ).first()
    if behind is not None:
        return
    seen = conn.execute(
        select(activity.c.id).where(
            activity.c.group_id == ctx.id,
            activity.c.kind == ActivityKind.ROLLOUT_FINISHED.value,
            activity.c.version == final,
        )
    ).first()
    if seen is None:
        record_activity(
            conn,
            ctx,
            Activity(
                ActivityKind.ROLLOUT_FINISHED,
                Severity.SUCCESS,
                f"rollout of {final} finished",
                final,
            ),
            now,
        )
