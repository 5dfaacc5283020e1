"""Applications, packages, channels and groups in SQL: declarative apply, reads, admin changes.

Used by ``flotilla updates apply|instances|activity`` and by the REST API. The check-in path lives
in :mod:`store`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from flotilla.core.errors import FlotillaError
from flotilla.updates.models import DEFAULT_CHANNELS, ActivityKind, Channel, Package, Severity
from flotilla.updates.server import fleetlock_store, rollout_status
from flotilla.updates.server.fleetspec import (
    AppSpec,
    FleetSpec,
    group_id,
    package_from_row,
    policy_from_dict,
    policy_to_dict,
)
from flotilla.updates.server.rollouts import utc
from flotilla.updates.server.schema import (
    activity,
    applications,
    channels,
    groups,
    instance_history,
    instances,
    packages,
    reading,
)


class CatalogError(FlotillaError, ValueError):
    """A change that would break the catalog (unknown names, conflicting tracks)."""


class NotFoundError(FlotillaError, LookupError):
    """An application, channel, group or instance that does not exist."""


def _iso(dt: datetime | None) -> str | None:
    d = utc(dt)
    return d.isoformat() if d is not None else None


def _changed(row: Any, values: dict[str, Any]) -> bool:
    return any(row[k] != v for k, v in values.items())


def _log(
    conn: Connection,
    app_id: str,
    kind: ActivityKind,
    sev: Severity,
    msg: str,
    version: str | None = None,
    group: str | None = None,
) -> None:
    conn.execute(
        insert(activity).values(
            at=datetime.now(UTC),
            app_id=app_id,
            group_id=group,
            kind=kind.value,
            severity=sev.value,
            version=version,
            message=msg,
        )
    )


def _set_channel(conn: Connection, ch: Channel, changes: list[str], actor: str = "") -> bool:
    """Create or change a channel; True when it moved to another version (logged, with the
    actor when one is given)."""
    row = (
        conn.execute(
            select(channels).where(channels.c.app_id == ch.app_id, channels.c.name == ch.name)
        )
        .mappings()
        .first()
    )
    values = {
        "version": ch.version,
        "blocked_versions": list(ch.blocked_versions),
        "floors": list(ch.floors),
    }
    if row is None:
        conn.execute(insert(channels).values(app_id=ch.app_id, name=ch.name, **values))
        changes.append(f"created channel {ch.app_id}/{ch.name} -> {ch.version or '(none)'}")
        old = None
    elif _changed(row, values):
        conn.execute(update(channels).where(channels.c.id == row["id"]).values(**values))
        changes.append(f"updated channel {ch.app_id}/{ch.name} -> {ch.version or '(none)'}")
        old = row["version"]
    else:
        return False
    if ch.version is not None and ch.version != old:
        by = f" (by {actor})" if actor else ""
        _log(
            conn,
            ch.app_id,
            ActivityKind.CHANNEL_PACKAGE_UPDATED,
            Severity.INFO,
            f"channel {ch.name}: {old or '(none)'} -> {ch.version}{by}",
            ch.version,
        )
        return True
    return False


def _set_package(conn: Connection, p: Package, changes: list[str]) -> None:
    row = (
        conn.execute(
            select(packages).where(
                packages.c.app_id == p.app_id,
                packages.c.version == p.version,
                packages.c.arch == p.arch,
            )
        )
        .mappings()
        .first()
    )
    values = {
        "url": p.url,
        "filename": p.filename,
        "size": p.size,
        "sha256": p.sha256,
        "sha1": p.sha1,
        "extra_files": [
            {"name": e.name, "size": e.size, "sha256": e.sha256} for e in p.extra_files
        ],
    }
    if row is None:
        conn.execute(
            insert(packages).values(app_id=p.app_id, version=p.version, arch=p.arch, **values)
        )
        changes.append(f"created package {p.app_id} {p.version} {p.arch}")
    elif _changed(row, values):
        conn.execute(update(packages).where(packages.c.id == row["id"]).values(**values))
        changes.append(f"updated package {p.app_id} {p.version} {p.arch}")


def _apply_app(conn: Connection, app: AppSpec, changes: list[str], actor: str = "") -> None:
    row = conn.execute(select(applications).where(applications.c.id == app.id)).mappings().first()
    if row is None:
        conn.execute(
            insert(applications).values(id=app.id, name=app.name, description=app.description)
        )
        changes.append(f"created application {app.id} ({app.name})")
    elif _changed(row, {"name": app.name, "description": app.description}):
        conn.execute(
            update(applications)
            .where(applications.c.id == app.id)
            .values(name=app.name, description=app.description)
        )
        changes.append(f"updated application {app.id}")
    for p in app.packages:
        _set_package(conn, p, changes)
    declared = {c.name for c in app.channels}
    for name in DEFAULT_CHANNELS:
        if (
            name not in declared
            and conn.execute(
                select(channels.c.id).where(channels.c.app_id == app.id, channels.c.name == name)
            ).first()
            is None
        ):
            _set_channel(conn, Channel(app.id, name), changes)
    for ch in app.channels:
        _set_channel(conn, ch, changes, actor)
    for g in app.groups:
        gid = group_id(app.id, g.name)
        values = {
            "name": g.name,
            "track": g.track,
            "channel": g.channel,
            "policy": policy_to_dict(g.policy),
        }
        grow = conn.execute(select(groups).where(groups.c.id == gid)).mappings().first()
        if grow is None:
            conn.execute(insert(groups).values(id=gid, app_id=app.id, rollout_failures=0, **values))
            changes.append(f"created group {app.id}/{g.name} (track {g.track}, id {gid})")
        elif _changed(grow, values):
            conn.execute(update(groups).where(groups.c.id == gid).values(**values))
            changes.append(f"updated group {app.id}/{g.name}")


def apply_fleet(engine: Engine, spec: FleetSpec, actor: str = "") -> list[str]:
    """Make the database hold what the spec declares, in one transaction; return what changed.

    Applying the same spec twice changes nothing. Things the spec does not mention are kept.
    With an ``actor`` (an apply through the REST API), each application's changes get one
    activity entry naming who applied them.
    """
    changes: list[str] = []
    try:
        with engine.begin() as conn:
            for app in spec.applications:
                before = len(changes)
                _apply_app(conn, app, changes, actor)
                if actor and len(changes) > before:
                    _log_apply(conn, app.id, actor, changes[before:])
            before = len(changes)
            fleetlock_store.apply_groups(conn, spec.fleetlock, changes)
            if actor and len(changes) > before:
                _log_apply(conn, "", actor, changes[before:])
    except IntegrityError as e:
        raise CatalogError(
            f"conflicts with what is stored (a track used twice?): {e.orig}"
        ) from None
    return changes


def _log_apply(conn: Connection, app_id: str, actor: str, changes: list[str]) -> None:
    text = "; ".join(changes)
    if len(text) > 900:
        text = text[:900] + f"... ({len(changes)} changes)"
    _log(conn, app_id, ActivityKind.ADMIN_CHANGE, Severity.INFO, f"{actor}: applied {text}")


# --- reads --------------------------------------------------------------------------------------


def _require_app(conn: Connection, app_id: str) -> None:
    if conn.execute(select(applications.c.id).where(applications.c.id == app_id)).first() is None:
        raise NotFoundError(f"no application {app_id}")


def list_apps(engine: Engine) -> list[dict[str, Any]]:
    """Every application."""
    with reading(engine) as conn:
        return [
            dict(r)
            for r in conn.execute(select(applications).order_by(applications.c.id)).mappings()
        ]


def list_packages(engine: Engine, app_id: str) -> list[dict[str, Any]]:
    """Packages of an application, as the API shows them."""
    with reading(engine) as conn:
        _require_app(conn, app_id)
        rows = conn.execute(
            select(packages).where(packages.c.app_id == app_id).order_by(packages.c.id)
        ).mappings()
        out = []
        for r in rows:
            p = package_from_row(r)
            out.append(
                {
                    "version": p.version,
                    "arch": p.arch,
                    "url": p.url,
                    "filename": p.filename,
                    "size": p.size,
                    "sha256": p.sha256,
                    "sha1": p.sha1,
                    "extra_files": [e.__dict__ for e in p.extra_files],
                }
            )
        return out


def list_channels(engine: Engine, app_id: str) -> list[dict[str, Any]]:
    """Channels of an application."""
    with reading(engine) as conn:
        _require_app(conn, app_id)
        rows = conn.execute(
            select(channels).where(channels.c.app_id == app_id).order_by(channels.c.name)
        ).mappings()
        return [
            {
                "name": r["name"],
                "package": r["version"],
                "blocked_versions": r["blocked_versions"],
                "floors": r["floors"],
            }
            for r in rows
        ]


def _group_out(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "name": r["name"],
        "track": r["track"],
        "channel": r["channel"],
        "policy": policy_to_dict(policy_from_dict(r["policy"])),
        "halted_version": r["halted_version"],
        "halted_reason": r["halted_reason"],
        "rollout_version": r["rollout_version"],
        "rollout_failures": r["rollout_failures"],
    }


def list_groups(engine: Engine, app_id: str) -> list[dict[str, Any]]:
    """Groups of an application with their policy and rollout state."""
    with reading(engine) as conn:
        _require_app(conn, app_id)
        rows = conn.execute(
            select(groups).where(groups.c.app_id == app_id).order_by(groups.c.name)
        ).mappings()
        return [_group_out(r) for r in rows]


def _find_group(conn: Connection, app_id: str, ref: str) -> Any:
    row = (
        conn.execute(
            select(groups)
            .where(groups.c.app_id == app_id)
            .where((groups.c.name == ref) | (groups.c.id == ref))
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"no group {ref} in application {app_id}")
    return row


def get_group(engine: Engine, app_id: str, ref: str) -> dict[str, Any]:
    """One group by name or id."""
    with reading(engine) as conn:
        return _group_out(_find_group(conn, app_id, ref))


def _instance_out(r: Any, group_names: dict[str, str]) -> dict[str, Any]:
    return {
        "machine_id": r["machine_id"],
        "app_id": r["app_id"],
        "group": group_names.get(r["group_id"], r["group_id"]),
        "version": r["version"],
        "status": r["status"],
        "arch": r["arch"],
        "alias": r["alias"],
        "oem": r["oem"],
        "oem_version": r["oem_version"],
        "aleph_version": r["aleph_version"],
        "ip": r["ip"],
        "first_seen": _iso(r["first_seen"]),
        "last_seen": _iso(r["last_seen"]),
        "last_update_version": r["last_update_version"],
        "last_update_granted_at": _iso(r["last_update_granted_at"]),
        "last_error_code": r["last_error_code"],
    }


def list_instances(
    engine: Engine,
    app_id: str | None = None,
    group: str | None = None,
    status: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Instances, newest check-in first, optionally for one application / group / status."""
    with reading(engine) as conn:
        names = {r.id: r.name for r in conn.execute(select(groups.c.id, groups.c.name))}
        q = select(instances)
        if app_id:
            q = q.where(instances.c.app_id == app_id)
        if group:
            ids = [gid for gid, n in names.items() if n == group or gid == group]
            if not ids:
                raise NotFoundError(f"no group {group}")
            q = q.where(instances.c.group_id.in_(ids))
        if status:
            q = q.where(instances.c.status == status)
        q = (
            q.order_by(instances.c.last_seen.desc(), instances.c.machine_id)
            .limit(limit)
            .offset(offset)
        )
        rows = conn.execute(q).mappings().all()
        out = [_instance_out(r, names) for r in rows]
        rollout_status.annotate(conn, zip(rows, out, strict=True))
        return out


def get_instance(engine: Engine, app_id: str, machine_id: str) -> dict[str, Any]:
    """One instance with its status history (newest last)."""
    with reading(engine) as conn:
        names = {r.id: r.name for r in conn.execute(select(groups.c.id, groups.c.name))}
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
            raise NotFoundError(f"no instance {machine_id} of {app_id}")
        hist = conn.execute(
            select(instance_history)
            .where(instance_history.c.app_id == app_id, instance_history.c.machine_id == machine_id)
            .order_by(instance_history.c.id)
        ).mappings()
        out = _instance_out(row, names)
        rollout_status.annotate(conn, [(row, out)])
        out["history"] = [
            {
                "at": _iso(h["at"]),
                "status": h["status"],
                "version": h["version"],
                "target_version": h["target_version"],
                "error_code": h["error_code"],
            }
            for h in hist
        ]
        return out


def count_instances(engine: Engine) -> int:
    """How many instances are stored (for the bench and /metrics)."""
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(instances)).scalar_one())


def list_activity(
    engine: Engine, app_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The activity feed, newest first."""
    with reading(engine) as conn:
        q = select(activity).order_by(activity.c.id.desc()).limit(limit)
        if app_id:
            q = q.where(activity.c.app_id == app_id)
        return [
            {
                "at": _iso(r["at"]),
                "app_id": r["app_id"],
                "group_id": r["group_id"],
                "kind": r["kind"],
                "severity": r["severity"],
                "version": r["version"],
                "machine_id": r["machine_id"],
                "message": r["message"],
            }
            for r in conn.execute(q).mappings()
        ]


# --- admin changes (REST API) -------------------------------------------------------------------


def set_channel(engine: Engine, ch: Channel, actor: str = "") -> list[str]:
    """Point a channel at a version (which must have a package) and set blocks and floors."""
    changes: list[str] = []
    with engine.begin() as conn:
        _require_app(conn, ch.app_id)
        for v in [ch.version, *ch.floors]:
            if (
                v is not None
                and conn.execute(
                    select(packages.c.id).where(
                        packages.c.app_id == ch.app_id, packages.c.version == v
                    )
                ).first()
                is None
            ):
                raise CatalogError(f"no package {v} in application {ch.app_id}")
        _set_channel(conn, ch, changes, actor)
    return changes


def add_package(engine: Engine, p: Package) -> list[str]:
    """Create or update one package."""
    changes: list[str] = []
    with engine.begin() as conn:
        _require_app(conn, p.app_id)
        _set_package(conn, p, changes)
    return changes


def set_group_policy(
    engine: Engine, app_id: str, ref: str, policy: dict[str, Any]
) -> dict[str, Any]:
    """Replace a group's policy (already validated by the caller)."""
    with engine.begin() as conn:
        row = _find_group(conn, app_id, ref)
        conn.execute(
            update(groups)
            .where(groups.c.id == row["id"])
            .values(policy=policy_to_dict(policy_from_dict(policy)))
        )
        return _group_out(_find_group(conn, app_id, row["id"]))


def resume_group(engine: Engine, app_id: str, ref: str, actor: str = "an admin") -> dict[str, Any]:
    """Release the failure/timeout brake; the failure count starts again from zero."""
    with engine.begin() as conn:
        row = _find_group(conn, app_id, ref)
        conn.execute(
            update(groups)
            .where(groups.c.id == row["id"])
            .values(halted_version=None, halted_reason=None, rollout_failures=0)
        )
        if row["halted_version"]:
            _log(
                conn,
                app_id,
                ActivityKind.ROLLOUT_STARTED,
                Severity.INFO,
                f"group {row['name']}: rollout of {row['halted_version']} resumed by {actor}",
                row["halted_version"],
                row["id"],
            )
        return _group_out(_find_group(conn, app_id, row["id"]))


# --- releases imported by the syncer ----------------------------------------------------------


def channel_version(engine: Engine, app_id: str, name: str) -> str | None:
    """The version a channel serves, None when it has none or does not exist."""
    with engine.connect() as conn:
        row = conn.execute(
            select(channels.c.version).where(channels.c.app_id == app_id, channels.c.name == name)
        ).first()
    return None if row is None else row[0]


def import_release(
    engine: Engine, app_id: str, channel: str, version: str, pkgs: list[Package], source: str
) -> list[str]:
    """Add the synced packages that are new and move ``channel`` to ``version``, in one transaction.

    Never deletes or overwrites: a stored package of the same version and arch with another
    sha256 is refused, and the channel keeps its blocked versions and floors (a blocked version
    is not moved to). The application is created when the database has none yet.
    """
    changes: list[str] = []
    try:
        with engine.begin() as conn:
            if (
                conn.execute(select(applications.c.id).where(applications.c.id == app_id)).first()
                is None
            ):
                conn.execute(
                    insert(applications).values(
                        id=app_id, name="Flatcar Container Linux", description=""
                    )
                )
                changes.append(f"created application {app_id}")
            for p in pkgs:
                row = conn.execute(
                    select(packages.c.sha256).where(
                        packages.c.app_id == p.app_id,
                        packages.c.version == p.version,
                        packages.c.arch == p.arch,
                    )
                ).first()
                if row is not None:
                    if row[0] != p.sha256:
                        raise CatalogError(
                            f"package {p.version} ({p.arch}) is stored with sha256 {row[0]}, but "
                            f"{source} now announces {p.sha256}; not overwritten"
                        )
                    continue
                _set_package(conn, p, changes)
                _log(
                    conn,
                    app_id,
                    ActivityKind.PACKAGE_SYNCED,
                    Severity.INFO,
                    f"synced {p.version} ({p.arch}) from {source}",
                    p.version,
                )
            current = (
                conn.execute(
                    select(channels).where(channels.c.app_id == app_id, channels.c.name == channel)
                )
                .mappings()
                .first()
            )
            blocked = tuple(current["blocked_versions"] or ()) if current is not None else ()
            floors = tuple(current["floors"] or ()) if current is not None else ()
            if version in blocked:
                _log(
                    conn,
                    app_id,
                    ActivityKind.CHANNEL_PACKAGE_UPDATED,
                    Severity.WARNING,
                    f"channel {channel}: {source} moved to {version}, which is blocked here; kept",
                    version,
                )
            else:
                _set_channel(conn, Channel(app_id, channel, version, blocked, floors), changes)
    except IntegrityError:
        # Another replica's syncer imported the same release at the same moment: nothing to do.
        return []
    return changes
