"""Who may steer a rollout: which failure reports count, and how many new machines get grants.

Omaha has no client authentication: anyone who reaches the endpoint can invent machine ids. Two
rules keep such strangers from steering a rollout (see the "Security" section of docs/updates.md):

- a failure report moves the failure brake only when it comes from a machine this server granted
  that version to, and only once per machine and version (:func:`failure_counts`);
- grants to *new* machines (first seen less than :data:`NEW_MACHINE_AGE` ago) are limited per
  source network and hour (:func:`admit_new_machine`), so a script inventing ids cannot use up a
  group's per-period quota. Loopback and Unix-socket clients are exempt: they are this host.

Called by :mod:`store` inside its check-in transaction; plain SQL, no state of its own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, func, insert, select

from flotilla.updates.models import InstanceState
from flotilla.updates.server import rollouts
from flotilla.updates.server.rollouts import GroupCtx, utc
from flotilla.updates.server.schema import instances, new_machine_grants

NEW_MACHINE_AGE = timedelta(days=1)
"""A machine first seen less than this long ago is new."""
NEW_MACHINE_WINDOW = timedelta(hours=1)
"""The limit counts grants to new machines over this sliding window."""
REFUSAL = "newMachineLimitReached"
"""The refusal reason counted in ``flotilla_updates_refusals``."""


@dataclass(frozen=True)
class NewMachineLimit:
    """At most ``grants`` grants per network and window to new machines (0: no limit)."""

    grants: int = 5
    window: timedelta = NEW_MACHINE_WINDOW
    age: timedelta = NEW_MACHINE_AGE


def network_of(ip: str) -> str | None:
    """The network a client address belongs to (IPv4 /24, IPv6 /64); None when exempt.

    Loopback and an empty address (a Unix socket) are this host, hence exempt. Anything else that
    is not an address counts as a network of its own, so odd values never slip past the limit.
    """
    if not ip:
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return None
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def admit_new_machine(
    conn: Connection,
    limit: NewMachineLimit,
    app_id: str,
    machine_id: str,
    ip: str,
    now: datetime,
) -> bool:
    """Whether a grant the policy allows may go to this machine; records it when new.

    Machines seen for longer than ``limit.age`` are never limited; a new machine already counted
    in the window (asking again for its grant) is not counted twice. Parallel grants in several
    processes may overshoot the limit by the number of processes at most.
    """
    if limit.grants <= 0:
        return True
    network = network_of(ip)
    if network is None:
        return True
    first_seen = conn.execute(
        select(instances.c.first_seen).where(
            instances.c.machine_id == machine_id, instances.c.app_id == app_id
        )
    ).scalar()
    if first_seen is not None and utc(first_seen) <= now - limit.age:  # type: ignore[operator]
        return True
    recent = (
        new_machine_grants.c.network == network,
        new_machine_grants.c.at > now - limit.window,
    )
    counted = conn.execute(
        select(new_machine_grants.c.id)
        .where(*recent)
        .where(new_machine_grants.c.machine_id == machine_id)
        .where(new_machine_grants.c.app_id == app_id)
        .limit(1)
    ).first()
    if counted is not None:
        return True
    used = conn.execute(
        select(func.count()).select_from(new_machine_grants).where(*recent)
    ).scalar_one()
    if used >= limit.grants:
        return False
    conn.execute(
        insert(new_machine_grants),
        {"network": network, "app_id": app_id, "machine_id": machine_id, "at": now},
    )
    return True


def prune(engine: Engine, now: datetime, limit: NewMachineLimit) -> int:
    """Forget grants older than the window (run by the server's pruning task)."""
    with engine.begin() as conn:
        res = conn.execute(
            delete(new_machine_grants).where(new_machine_grants.c.at <= now - limit.window)
        )
    return int(res.rowcount or 0)


def failure_counts(
    conn: Connection, before: InstanceState, ctx: GroupCtx, app_id: str, machine_id: str
) -> bool:
    """Whether a failure report moves the group's failure brake.

    Only when this server granted the machine a version of the group's current rollout (its
    target or one of the channel's floors), and only the first failure per machine and version:
    a stranger's invented machine id was granted nothing, so its reports count for nothing.
    """
    granted = before.last_update_version
    if granted is None or before.last_update_granted_at is None:
        return False
    current = {ctx.final_target, *(ctx.channel.floors if ctx.channel else ())}
    if granted not in current:
        return False
    return not rollouts.failed_before(conn, app_id, machine_id, granted)
