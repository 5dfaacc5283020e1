"""Server settings: read from flags or the environment at the entry point, then passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flotilla.updates.server.syncer import SyncSettings

DEFAULT_DB = "sqlite:///flotilla-updates.db"


@dataclass(frozen=True)
class ServerSettings:
    """How ``flotilla updates serve`` runs."""

    db_url: str = DEFAULT_DB
    """SQLAlchemy URL or plain path; ``postgresql://`` uses psycopg 3."""
    host: str = "127.0.0.1"
    port: int = 8000
    admin_tokens: tuple[str, ...] = ()
    """Bearer tokens allowed to change things through /api/v1 (none: the API refuses writes)."""
    read_tokens: tuple[str, ...] = ()
    """Bearer tokens allowed to read /api/v1 (admin tokens can read too)."""
    retention: timedelta | None = timedelta(days=90)
    """Instances not seen for this long are pruned; None keeps them forever."""
    prune_interval: timedelta = timedelta(hours=1)
    """How often the pruning task runs."""
    pool_size: int = 10
    """Database connections per process (plus as many again on overflow)."""
    config_ttl: float = 1.0
    """Seconds a process caches a group's channel and policy for check-ins (0: no cache)."""
    trust_forwarded_for: bool = False
    """Take the client IP from X-Forwarded-For (only behind a proxy you run)."""
    sample_interval: float = 30.0
    """Seconds between the dashboard's samples of each group's status counts (0: none)."""
    sync: SyncSettings | None = None
    """Import releases from an upstream Omaha server (``--sync-from``); None: no syncer."""


def _tokens(raw: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (raw or "").split(",") if t.strip())


def settings_from_env(env: Mapping[str, str] | None = None) -> ServerSettings:
    """Settings from ``FLOTILLA_UPDATES_*`` variables (used by worker processes and containers)."""
    from flotilla.updates.policies import parse_duration  # loaded here: the CLI's --help needs none

    env = os.environ if env is None else env
    retention_raw = env.get("FLOTILLA_UPDATES_RETENTION", "90d")
    retention = None if retention_raw in ("", "0", "never") else parse_duration(retention_raw)
    return ServerSettings(
        db_url=env.get("FLOTILLA_UPDATES_DB", DEFAULT_DB),
        host=env.get("FLOTILLA_UPDATES_HOST", "127.0.0.1"),
        port=int(env.get("FLOTILLA_UPDATES_PORT", "8000")),
        admin_tokens=_tokens(env.get("FLOTILLA_UPDATES_ADMIN_TOKENS")),
        read_tokens=_tokens(env.get("FLOTILLA_UPDATES_READ_TOKENS")),
        retention=retention,
        prune_interval=parse_duration(env.get("FLOTILLA_UPDATES_PRUNE_INTERVAL", "1h")),
        pool_size=int(env.get("FLOTILLA_UPDATES_POOL_SIZE", "10")),
        config_ttl=float(env.get("FLOTILLA_UPDATES_CONFIG_TTL", "1.0")),
        trust_forwarded_for=env.get("FLOTILLA_UPDATES_TRUST_FORWARDED_FOR", "") in ("1", "true"),
        sample_interval=float(env.get("FLOTILLA_UPDATES_SAMPLE_INTERVAL", "30")),
        sync=sync_settings_from_env(env),
    )


def sync_settings_from_env(env: Mapping[str, str]) -> SyncSettings | None:
    """``FLOTILLA_UPDATES_SYNC_*``: the syncer's settings, None when no upstream is named."""
    upstream = env.get("FLOTILLA_UPDATES_SYNC_FROM", "")
    if not upstream:
        return None
    from flotilla.updates.policies import parse_duration
    from flotilla.updates.server.syncer import SyncSettings

    host_dir = env.get("FLOTILLA_UPDATES_HOST_PACKAGES", "")
    return SyncSettings(
        upstream=upstream,
        channels=_tokens(env.get("FLOTILLA_UPDATES_SYNC_CHANNELS", "alpha,beta,stable")),
        arches=_tokens(env.get("FLOTILLA_UPDATES_SYNC_ARCHES", "amd64,arm64")),
        interval=parse_duration(env.get("FLOTILLA_UPDATES_SYNC_INTERVAL", "1h")),
        host_dir=Path(host_dir) if host_dir else None,
        public_url=env.get("FLOTILLA_UPDATES_PUBLIC_URL", ""),
    )
