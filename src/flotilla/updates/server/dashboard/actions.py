"""What the dashboard's buttons do: catalog changes, each with an entry in the activity feed.

The REST API and the dashboard share :mod:`catalog` for the change itself; these add a feed entry
naming the change and who made it (the person logged in with OIDC, or the token's name), so the
feed answers "who paused this group and when".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert

from flotilla.updates.models import Channel, InvalidVersionError, Severity, Version
from flotilla.updates.server import catalog
from flotilla.updates.server.schema import activity

POLICY_UPDATED = "PolicyUpdated"
GROUP_PAUSED = "GroupPaused"
GROUP_RESUMED = "GroupResumed"
LOCK_RELEASED = "RebootLockReleased"


def _log(engine: Engine, app_id: str, group_id: str | None, kind: str, message: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(activity).values(
                at=datetime.now(UTC),
                app_id=app_id,
                group_id=group_id,
                kind=kind,
                severity=Severity.INFO.value,
                version=None,
                message=message,
            )
        )


def set_policy(
    engine: Engine, app_id: str, group_ref: str, policy: dict[str, Any], actor: str
) -> dict[str, Any]:
    """Replace the policy (validated by the caller) and say which fields changed."""
    before = catalog.get_group(engine, app_id, group_ref)
    after = catalog.set_group_policy(engine, app_id, group_ref, policy)
    changed = [
        f"{k} {before['policy'].get(k)!r} -> {v!r}"
        for k, v in after["policy"].items()
        if before["policy"].get(k) != v
    ]
    if changed:
        _log(
            engine,
            app_id,
            after["id"],
            POLICY_UPDATED,
            f"group {after['name']}: policy changed by {actor}: " + ", ".join(changed),
        )
    return after


def pause(engine: Engine, app_id: str, group_ref: str, actor: str) -> None:
    """Stop granting updates in the group (``updates_enabled: false``)."""
    g = catalog.get_group(engine, app_id, group_ref)
    if g["policy"]["updates_enabled"]:
        catalog.set_group_policy(engine, app_id, g["id"], {**g["policy"], "updates_enabled": False})
        _log(engine, app_id, g["id"], GROUP_PAUSED, f"group {g['name']}: updates paused by {actor}")


def resume(engine: Engine, app_id: str, group_ref: str, actor: str) -> None:
    """Grant updates again: enable them and release a tripped failure/timeout brake."""
    g = catalog.get_group(engine, app_id, group_ref)
    if not g["policy"]["updates_enabled"]:
        catalog.set_group_policy(engine, app_id, g["id"], {**g["policy"], "updates_enabled": True})
        _log(
            engine, app_id, g["id"], GROUP_RESUMED, f"group {g['name']}: updates resumed by {actor}"
        )
    if g["halted_version"]:
        catalog.resume_group(engine, app_id, g["id"], actor)


def set_channel_package(engine: Engine, app_id: str, name: str, version: str, actor: str) -> None:
    """Point a channel at ``version``, keeping its floors and blocked versions."""
    current = {c["name"]: c for c in catalog.list_channels(engine, app_id)}
    if name not in current:
        raise catalog.NotFoundError(f"no channel {name} in application {app_id}")
    c = current[name]
    catalog.set_channel(
        engine,
        Channel(app_id, name, version, tuple(c["blocked_versions"]), tuple(c["floors"])),
        actor,
    )


def older_than_channel(engine: Engine, app_id: str, name: str, version: str) -> str | None:
    """The channel's current version when ``version`` is older (a downgrade to confirm)."""
    current = {c["name"]: c for c in catalog.list_channels(engine, app_id)}.get(name)
    now_on = current["package"] if current else None
    if not now_on:
        return None
    try:
        return now_on if Version.parse(version) < Version.parse(now_on) else None
    except InvalidVersionError:
        return None


def log_lock_release(engine: Engine, app_id: str, group: str, holder: str, actor: str) -> None:
    """Feed entry for a reboot lock released by an operator."""
    _log(
        engine,
        app_id,
        None,
        LOCK_RELEASED,
        f"reboot lock of {holder} in {group} released by {actor}",
    )
