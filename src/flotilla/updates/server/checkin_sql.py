"""Prebuilt statements of the check-in path, with bind parameters.

Building SQLAlchemy statements per check-in cost more CPU than running them, so :mod:`store`
builds each once at import.
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from flotilla.updates.models import InstanceStatus
from flotilla.updates.server.schema import channels, groups, instances
from flotilla.updates.server.schema import packages as packages_t

RESOLVE = (
    select(
        groups,
        channels.c.version.label("ch_version"),
        channels.c.blocked_versions,
        channels.c.floors,
        channels.c.name.label("ch_name"),
    )
    .select_from(
        groups.outerjoin(
            channels,
            and_(channels.c.app_id == groups.c.app_id, channels.c.name == groups.c.channel),
        )
    )
    .where(groups.c.app_id == bindparam("app_id"))
    .where(or_(groups.c.track == bindparam("track"), groups.c.id == bindparam("track")))
)
_INSTANCE_KEY = (instances.c.machine_id == bindparam("m"), instances.c.app_id == bindparam("a"))
_KEY_COLUMNS = {"machine_id", "app_id", "first_seen"}
INSTANCE = select(*(c for c in instances.c if c.name not in _KEY_COLUMNS)).where(*_INSTANCE_KEY)
"""The read of a check-in: what :meth:`Store._quiet` compares (not the key it looked up by)."""
INSTANCE_PG_DRIVER = (
    f"SELECT {', '.join(c.name for c in INSTANCE.selected_columns)} FROM instances"
    " WHERE machine_id = %s AND app_id = %s"
)
"""The same read as plain psycopg SQL, for :meth:`Store._driver_reads` (prepared per connection)."""
STATE_COLUMNS = (
    instances.c.version,
    instances.c.status,
    instances.c.last_update_version,
    instances.c.last_update_granted_at,
    instances.c.update_in_progress,
    instances.c.last_error_code,
)
"""What a writing check-in reads of its locked row (every column costs CPU in the driver)."""
_GROUP_STATE_COLUMNS = (groups.c.halted_version, groups.c.rollout_version)
INSTANCE_FOR_UPDATE = (
    select(*STATE_COLUMNS, *_GROUP_STATE_COLUMNS)
    .select_from(instances.outerjoin(groups, groups.c.id == bindparam("g")))
    .where(*_INSTANCE_KEY)
    .with_for_update(of=instances)
)
"""The locked row of a writing check-in, with its group's brake state in the same round trip
(only the instance row is locked; a grant under a rate limit locks the group separately)."""
UPDATE_INSTANCE = update(instances).where(
    instances.c.machine_id == bindparam("k_m"), instances.c.app_id == bindparam("k_a")
)
INSERT_COLUMNS = (
    "machine_id", "app_id", "version", "status", "first_seen", "last_seen", "update_in_progress",
    "group_id", "arch", "alias", "oem", "oem_version", "aleph_version", "boot_id", "ip",
)  # fmt: skip
# RETURNING: the new row (locked by the insert), or nothing when the machine already existed.
# PostgreSQL adds the group's brake state, as INSTANCE_FOR_UPDATE does, in the same statement.
_NEW = (
    pg_insert(instances)
    .values({c: bindparam(c) for c in INSERT_COLUMNS})
    .on_conflict_do_nothing()
    .returning(*STATE_COLUMNS)
    .cte("new_instance")
)
INSERT_INSTANCE_PG = select(_NEW, *_GROUP_STATE_COLUMNS).select_from(
    _NEW.outerjoin(groups, groups.c.id == bindparam("g"))
)
INSERT_INSTANCE_SQLITE = sqlite_insert(instances).on_conflict_do_nothing().returning(*STATE_COLUMNS)
PACKAGE = select(packages_t).where(
    packages_t.c.app_id == bindparam("app_id"),
    packages_t.c.version == bindparam("version"),
    packages_t.c.arch == bindparam("arch"),
)
GROUP_STATE = select(groups.c.halted_version, groups.c.rollout_version).where(
    groups.c.id == bindparam("g")
)
GROUP_STATE_FOR_UPDATE = GROUP_STATE.with_for_update()


GRANTED_IN_PERIOD = (
    select(func.count())
    .select_from(instances)
    .where(instances.c.group_id == bindparam("g"))
    .where(instances.c.last_update_granted_at > bindparam("period_start"))
)
IN_PROGRESS = (
    select(
        # Installed (3/1 reported) only waits for its reboot window: it stays in progress for
        # the concurrency limit, but is not a stuck update, so it never trips the timeout brake
        # (Nebraska's most reported stall, nebraska#853).
        func.count().filter(
            or_(
                instances.c.last_update_granted_at > bindparam("timeout_start"),
                instances.c.status == InstanceStatus.INSTALLED.value,
            )
        ),
        func.count().filter(
            instances.c.last_update_granted_at <= bindparam("timeout_start"),
            instances.c.status != InstanceStatus.INSTALLED.value,
        ),
    )
    .where(instances.c.group_id == bindparam("g"))
    .where(instances.c.update_in_progress.is_(True))
)
ATTEMPTED = (
    select(func.count())
    .select_from(instances)
    .where(instances.c.group_id == bindparam("g"))
    .where(instances.c.update_in_progress.is_(False))
    .where(instances.c.last_update_version == bindparam("target"))
)
