"""A large synthetic fleet written straight into the database, for scale tests and benchmarks.

Check-ins over HTTP would take minutes for 100,000 machines; the dashboard only reads, so rows
shaped like the ones check-ins write are enough to measure it.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select

from flotilla.updates.models import ActivityKind, InstanceStatus, Severity
from flotilla.updates.server.schema import activity, groups, instance_history, instances

OLD, NEW = "3510.2.0", "3760.2.0"


def populate(
    engine: Engine,
    app_id: str,
    n: int,
    *,
    target: str = NEW,
    old: str = OLD,
    seed: int = 7,
    now: datetime | None = None,
) -> dict[str, int]:
    """Spread ``n`` instances over the app's groups, mid-rollout of ``target``; return counts.

    About 40% run ``target`` (Complete), the rest are spread over the rollout's stages, each with
    a status history of the stages it went through over the last hour.
    """
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    start = now - timedelta(hours=1)
    with engine.begin() as conn:
        gids = list(conn.execute(select(groups.c.id).where(groups.c.app_id == app_id)).scalars())
        if not gids:
            raise ValueError(f"application {app_id} has no groups")
        for gid in gids:
            conn.execute(
                insert(activity).values(
                    at=start, app_id=app_id, group_id=gid, kind=ActivityKind.ROLLOUT_STARTED.value,
                    severity=Severity.INFO.value, version=target, machine_id=None,
                    message=f"rollout of {target} started",
                )
            )  # fmt: skip
    path = [
        InstanceStatus.UPDATE_GRANTED,
        InstanceStatus.DOWNLOADING,
        InstanceStatus.DOWNLOADED,
        InstanceStatus.INSTALLED,
        InstanceStatus.COMPLETE,
    ]
    counts: dict[str, int] = {}
    batch_i: list[dict[str, Any]] = []
    batch_h: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as conn:
            if batch_i:
                conn.execute(insert(instances), batch_i)
            if batch_h:
                conn.execute(insert(instance_history), batch_h)
        batch_i.clear()
        batch_h.clear()

    for i in range(n):
        machine = f"{i:08x}{rng.getrandbits(96):024x}"
        r = rng.random()
        if r < 0.4:
            status, steps = InstanceStatus.COMPLETE, 5
        elif r < 0.55:
            status, steps = InstanceStatus.UNDEFINED, 0
        elif r < 0.65:
            status, steps = InstanceStatus.ON_HOLD, 0
        elif r < 0.68:
            status, steps = InstanceStatus.ERROR, 2
        else:
            steps = rng.randint(1, 4)
            status = path[steps - 1]
        version = target if status == InstanceStatus.COMPLETE else old
        granted = start + timedelta(seconds=rng.randint(0, 3000)) if steps else None
        seen = now - timedelta(seconds=rng.randint(0, 2700))
        batch_i.append(
            {
                "machine_id": machine, "app_id": app_id, "group_id": gids[i % len(gids)],
                "version": version, "status": status.value, "arch": "amd64",
                "alias": f"node-{i:06d}" if i % 3 == 0 else "", "oem": "qemu", "oem_version": "",
                "aleph_version": old, "boot_id": "",
                "ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                "first_seen": start, "last_seen": seen,
                "last_update_version": target if steps else None,
                "last_update_granted_at": granted,
                "update_in_progress": status in (
                    InstanceStatus.UPDATE_GRANTED, InstanceStatus.DOWNLOADING,
                    InstanceStatus.DOWNLOADED, InstanceStatus.INSTALLED,
                ),
                "last_error_code": 2004 if status == InstanceStatus.ERROR else None,
            }
        )  # fmt: skip
        at = granted
        stages = path[:steps] if status != InstanceStatus.ERROR else [path[0], InstanceStatus.ERROR]
        if status == InstanceStatus.ON_HOLD:
            stages = [InstanceStatus.ON_HOLD]
            at = start + timedelta(seconds=rng.randint(0, 3000))
        for st in stages:
            assert at is not None
            batch_h.append(
                {
                    "machine_id": machine, "app_id": app_id, "at": at, "status": st.value,
                    "version": target if st == InstanceStatus.COMPLETE else old,
                    "target_version": target if st != InstanceStatus.ON_HOLD else None,
                    "error_code": 2004 if st == InstanceStatus.ERROR else None,
                }
            )  # fmt: skip
            at += timedelta(seconds=rng.randint(5, 120))
        counts[status.value] = counts.get(status.value, 0) + 1
        if len(batch_i) >= 5000:
            flush()
    flush()
    return counts
