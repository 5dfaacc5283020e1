"""Create, update and delete applications, packages, channels and groups, one at a time.

What Nebraska's REST API does, for the admin API (:mod:`admin_api`). Every change is one
transaction with its activity entry (``AdminChange``, naming who did it); bodies are checked by
:func:`fleetspec.parse_part`, the code that checks fleet files, with references resolved against
the database. A delete that would leave something dangling is refused with :class:`InUseError`,
naming the users: a channel that groups follow, a package a channel serves or a group pins.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from flotilla.updates.models import (
    ActivityKind,
    Channel,
    Package,
    Severity,
    is_valid_app_id,
    normalize_app_id,
)
from flotilla.updates.server import catalog
from flotilla.updates.server.catalog import CatalogError, NotFoundError
from flotilla.updates.server.fleetspec import (
    FleetFileError,
    GroupSpec,
    group_id,
    parse_part,
    policy_to_dict,
)
from flotilla.updates.server.schema import (
    activity,
    applications,
    channels,
    group_status_samples,
    groups,
    instance_history,
    instances,
    packages,
)


class InUseError(CatalogError):
    """A change refused because other things use what it would remove or replace (HTTP 409)."""


def _log(conn: Connection, app_id: str, actor: str, msg: str, group: str | None = None) -> None:
    conn.execute(
        insert(activity).values(
            at=datetime.now(UTC),
            app_id=app_id,
            group_id=group,
            kind=ActivityKind.ADMIN_CHANGE.value,
            severity=Severity.INFO.value,
            version=None,
            message=f"{actor}: {msg}",
        )
    )


def _app_row(conn: Connection, app_id: str) -> Any:
    row = conn.execute(select(applications).where(applications.c.id == app_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no application {app_id}")
    return row


def _versions(conn: Connection, app_id: str) -> set[str]:
    return {
        r[0] for r in conn.execute(select(packages.c.version).where(packages.c.app_id == app_id))
    }


def _channel_names(conn: Connection, app_id: str) -> set[str]:
    return {r[0] for r in conn.execute(select(channels.c.name).where(channels.c.app_id == app_id))}


# --- applications ------------------------------------------------------------------------------


def _app_fields(body: Mapping[str, Any]) -> tuple[str, str]:
    name, description = body.get("name"), body.get("description", "")
    problems = []
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        problems.append("$.name: must be a string of 1 to 200 characters")
    if not isinstance(description, str) or len(description) > 10_000:
        problems.append("$.description: must be a string of at most 10000 characters")
    if problems:
        raise FleetFileError(problems)
    return str(name), str(description)


def create_app(engine: Engine, body: Mapping[str, Any], actor: str) -> dict[str, Any]:
    """A new application (``id``, ``name``, ``description``)."""
    raw_id = body.get("id")
    app_id = normalize_app_id(raw_id) if isinstance(raw_id, str) else ""
    if not is_valid_app_id(app_id):
        raise FleetFileError(["$.id: must be a UUID or a short id of letters, digits, ._-"])
    name, description = _app_fields(body)
    with engine.begin() as conn:
        if conn.execute(select(applications.c.id).where(applications.c.id == app_id)).first():
            raise InUseError(f"application {app_id} already exists")
        conn.execute(insert(applications).values(id=app_id, name=name, description=description))
        _log(conn, app_id, actor, f"created application {app_id} ({name})")
    return {"id": app_id, "name": name, "description": description}


def update_app(engine: Engine, app_id: str, body: Mapping[str, Any], actor: str) -> dict[str, Any]:
    """Rename an application or change its description."""
    name, description = _app_fields(body)
    with engine.begin() as conn:
        _app_row(conn, app_id)
        conn.execute(
            update(applications)
            .where(applications.c.id == app_id)
            .values(name=name, description=description)
        )
        _log(conn, app_id, actor, f"updated application {app_id} ({name})")
    return {"id": app_id, "name": name, "description": description}


def delete_app(engine: Engine, app_id: str, actor: str) -> None:
    """Delete an application with its packages and channels; refused while it has groups."""
    with engine.begin() as conn:
        _app_row(conn, app_id)
        names = [r[0] for r in conn.execute(select(groups.c.name).where(groups.c.app_id == app_id))]
        if names:
            raise InUseError(
                f"application {app_id} still has groups {', '.join(sorted(names))}; "
                "delete them first"
            )
        conn.execute(delete(channels).where(channels.c.app_id == app_id))
        conn.execute(delete(packages).where(packages.c.app_id == app_id))
        conn.execute(delete(applications).where(applications.c.id == app_id))
        _log(conn, app_id, actor, f"deleted application {app_id}")


# --- packages ------------------------------------------------------------------------------------


def put_package(engine: Engine, app_id: str, body: Mapping[str, Any], actor: str) -> list[str]:
    """Create or replace one package (version + arch)."""
    pkg = parse_part("package", body, app_id)
    assert isinstance(pkg, Package)
    with engine.begin() as conn:
        _app_row(conn, app_id)
        changes: list[str] = []
        catalog._set_package(conn, pkg, changes)
        if changes:
            _log(conn, app_id, actor, "; ".join(changes))
    return changes


def delete_package(engine: Engine, app_id: str, version: str, arch: str, actor: str) -> None:
    """Delete one package; refused while a channel serves it (or has it as a floor) or a group
    pins it and no other arch of that version remains."""
    with engine.begin() as conn:
        _app_row(conn, app_id)
        row = conn.execute(
            select(packages.c.id).where(
                packages.c.app_id == app_id, packages.c.version == version, packages.c.arch == arch
            )
        ).first()
        if row is None:
            raise NotFoundError(f"no package {version} ({arch}) in application {app_id}")
        others = conn.execute(
            select(packages.c.id).where(
                packages.c.app_id == app_id, packages.c.version == version, packages.c.arch != arch
            )
        ).first()
        if others is None:
            users = _version_users(conn, app_id, version)
            if users:
                raise InUseError(f"{version} is used by {', '.join(users)}")
        conn.execute(delete(packages).where(packages.c.id == row[0]))
        _log(conn, app_id, actor, f"deleted package {version} ({arch})")


def _version_users(conn: Connection, app_id: str, version: str) -> list[str]:
    users = []
    for ch in conn.execute(select(channels).where(channels.c.app_id == app_id)).mappings():
        if ch["version"] == version or version in (ch["floors"] or ()):
            users.append(f"channel {ch['name']}")
    for g in conn.execute(select(groups).where(groups.c.app_id == app_id)).mappings():
        if (g["policy"] or {}).get("pinned_version") == version:
            users.append(f"group {g['name']} (pinned)")
    return users


# --- channels ------------------------------------------------------------------------------------


def put_channel(
    engine: Engine, app_id: str, name: str, body: Mapping[str, Any], actor: str
) -> list[str]:
    """Create or replace a channel (``package``, ``blocked_versions``, ``floors``)."""
    with engine.begin() as conn:
        _app_row(conn, app_id)
        chan = parse_part("channel", {**body, "name": name}, app_id, _versions(conn, app_id))
        assert isinstance(chan, Channel)
        changes: list[str] = []
        moved = catalog._set_channel(conn, chan, changes, actor)
        if changes and not moved:
            _log(conn, app_id, actor, "; ".join(changes))
    return changes


def delete_channel(engine: Engine, app_id: str, name: str, actor: str) -> None:
    """Delete a channel; refused while groups follow it, naming them."""
    with engine.begin() as conn:
        _app_row(conn, app_id)
        if name not in _channel_names(conn, app_id):
            raise NotFoundError(f"no channel {name} in application {app_id}")
        users = [
            r[0]
            for r in conn.execute(
                select(groups.c.name).where(groups.c.app_id == app_id, groups.c.channel == name)
            )
        ]
        if users:
            raise InUseError(f"channel {name} is used by groups {', '.join(sorted(users))}")
        conn.execute(delete(channels).where(channels.c.app_id == app_id, channels.c.name == name))
        _log(conn, app_id, actor, f"deleted channel {name}")


# --- groups --------------------------------------------------------------------------------------


def put_group(
    engine: Engine, app_id: str, name: str, body: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Create a group or change its track, channel and policy (its id follows from its name)."""
    with engine.begin() as conn:
        _app_row(conn, app_id)
        spec = parse_part(
            "group",
            {**body, "name": name},
            app_id,
            _versions(conn, app_id),
            _channel_names(conn, app_id),
        )
        assert isinstance(spec, GroupSpec)
        gid = group_id(app_id, spec.name)
        taken = conn.execute(
            select(groups.c.name).where(
                groups.c.app_id == app_id, groups.c.track == spec.track, groups.c.id != gid
            )
        ).first()
        if taken is not None:
            raise InUseError(f"track {spec.track} is already used by group {taken[0]}")
        values = {
            "name": spec.name,
            "track": spec.track,
            "channel": spec.channel,
            "policy": policy_to_dict(spec.policy),
        }
        if conn.execute(select(groups.c.id).where(groups.c.id == gid)).first() is None:
            conn.execute(insert(groups).values(id=gid, app_id=app_id, rollout_failures=0, **values))
            _log(conn, app_id, actor, f"created group {spec.name} (track {spec.track})", gid)
        else:
            conn.execute(update(groups).where(groups.c.id == gid).values(**values))
            _log(conn, app_id, actor, f"updated group {spec.name}", gid)
    return catalog.get_group(engine, app_id, gid)


def delete_group(engine: Engine, app_id: str, ref: str, actor: str) -> None:
    """Delete a group with its instances, their history and its chart samples (as Nebraska's
    cascade does); machines still configured with its track get an Omaha error afterwards."""
    with engine.begin() as conn:
        row = catalog._find_group(conn, app_id, ref)
        gid = row["id"]
        machines = select(instances.c.machine_id).where(
            instances.c.app_id == app_id, instances.c.group_id == gid
        )
        conn.execute(
            delete(instance_history).where(
                instance_history.c.app_id == app_id, instance_history.c.machine_id.in_(machines)
            )
        )
        conn.execute(delete(instances).where(instances.c.group_id == gid))
        conn.execute(delete(group_status_samples).where(group_status_samples.c.group_id == gid))
        conn.execute(delete(groups).where(groups.c.id == gid))
        _log(conn, app_id, actor, f"deleted group {row['name']}", gid)


# --- instances -----------------------------------------------------------------------------------


def set_alias(engine: Engine, app_id: str, machine_id: str, alias: str, actor: str) -> None:
    """Name a machine for people (Nebraska's ``PUT /api/instances/{id}``)."""
    if len(alias) > 256 or "\x00" in alias:
        raise FleetFileError(["$.alias: must be at most 256 characters, without NUL"])
    with engine.begin() as conn:
        done = conn.execute(
            update(instances)
            .where(instances.c.app_id == app_id, instances.c.machine_id == machine_id)
            .values(alias=alias)
        )
        if done.rowcount == 0:
            raise NotFoundError(f"no instance {machine_id} in application {app_id}")
        _log(conn, app_id, actor, f"set the alias of {machine_id} to {alias!r}")
