"""SQL tables (SQLAlchemy Core) and engine set-up for SQLite and PostgreSQL.

The tables mirror the Alembic migrations in ``migrations/versions``; a test checks they agree.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

metadata = MetaData()

applications = Table(
    "applications",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
)

packages = Table(
    "packages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app_id", String(64), ForeignKey("applications.id", ondelete="CASCADE"), nullable=False),
    Column("version", String(100), nullable=False),
    Column("arch", String(16), nullable=False),
    Column("url", Text, nullable=False),
    Column("filename", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("sha1", String(40), nullable=False, default=""),
    Column("extra_files", JSON, nullable=False, default=list),
    UniqueConstraint("app_id", "version", "arch", name="uq_packages_app_version_arch"),
)

channels = Table(
    "channels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app_id", String(64), ForeignKey("applications.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("version", String(100), nullable=True),
    Column("blocked_versions", JSON, nullable=False, default=list),
    Column("floors", JSON, nullable=False, default=list),
    UniqueConstraint("app_id", "name", name="uq_channels_app_name"),
)

groups = Table(
    "groups",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("app_id", String(64), ForeignKey("applications.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("track", String(100), nullable=False),
    Column("channel", String(100), nullable=True),
    Column("policy", JSON, nullable=False),
    Column("halted_version", String(100), nullable=True),
    Column("halted_reason", Text, nullable=True),
    Column("rollout_version", String(100), nullable=True),
    Column("rollout_failures", Integer, nullable=False, default=0),
    UniqueConstraint("app_id", "name", name="uq_groups_app_name"),
    UniqueConstraint("app_id", "track", name="uq_groups_app_track"),
)

instances = Table(
    "instances",
    metadata,
    Column("machine_id", String(100), primary_key=True),
    Column("app_id", String(64), primary_key=True),
    Column("group_id", String(64), nullable=False),
    Column("version", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("arch", String(16), nullable=False),
    Column("alias", String(256), nullable=False, default=""),
    Column("oem", String(256), nullable=False, default=""),
    Column("oem_version", String(256), nullable=False, default=""),
    Column("aleph_version", String(256), nullable=False, default=""),
    Column("boot_id", String(256), nullable=False, default=""),
    Column("ip", String(64), nullable=False, default=""),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("last_update_version", String(100), nullable=True),
    Column("last_update_granted_at", DateTime(timezone=True), nullable=True),
    Column("update_in_progress", Boolean, nullable=False, default=False),
    Column("last_error_code", BigInteger, nullable=True),
    Index("ix_instances_group_granted", "group_id", "last_update_granted_at"),
    Index("ix_instances_group_target", "group_id", "update_in_progress", "last_update_version"),
    Index("ix_instances_last_seen", "last_seen"),
    # Migration 0002: the dashboard's per-group counts and sorted pages.
    Index("ix_instances_group_seen", "group_id", "last_seen", "machine_id"),
    Index("ix_instances_group_status", "group_id", "status"),
    Index("ix_instances_group_version", "group_id", "version", "machine_id"),
)

instance_history = Table(
    "instance_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("machine_id", String(100), nullable=False),
    Column("app_id", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("version", String(100), nullable=False),
    Column("target_version", String(100), nullable=True),
    Column("error_code", BigInteger, nullable=True),
    Index("ix_history_instance", "app_id", "machine_id", "id"),
)

activity = Table(
    "activity",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("app_id", String(64), nullable=False),
    Column("group_id", String(64), nullable=True),
    Column("kind", String(40), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("version", String(100), nullable=True),
    Column("machine_id", String(100), nullable=True),
    Column("message", Text, nullable=False),
    Index("ix_activity_at", "at"),
)


group_status_samples = Table(
    "group_status_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("group_id", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("count", Integer, nullable=False),
    Index("ix_samples_group_at", "group_id", "at"),
)
"""Migration 0002: instances per group and status, sampled periodically for the rollout chart."""

# Migration 0003: FleetLock reboot semaphores (Zincati/Flatcar clients); see fleetlock.py.

fleetlock_groups = Table(
    "fleetlock_groups",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("max_holders", Integer, nullable=False),
    Column("windows", JSON, nullable=False, default=list),
    Column("timezone", String(64), nullable=False, default="UTC"),
    # Migration 0004: SHA-256 (hex) of the group's token; NULL means the group needs none.
    Column("token_sha256", String(64), nullable=True),
)

fleetlock_holders = Table(
    "fleetlock_holders",
    metadata,
    Column("group_name", String(100), primary_key=True),
    Column("holder", String(256), primary_key=True),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
)

# Migration 0004: what keeps strangers from steering rollouts (see grantguard.py, sessions.py).

new_machine_grants = Table(
    "new_machine_grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("network", String(64), nullable=False),
    Column("app_id", String(64), nullable=False),
    Column("machine_id", String(100), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_new_machine_grants_network_at", "network", "at"),
)
"""Grants to machines first seen recently, by source network, for the per-network limit."""

dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("role", String(10), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=False),
    Column("user_name", String(200), nullable=False, server_default=""),
    Index("ix_dashboard_sessions_last_used", "last_used_at"),
)
"""Dashboard logins: only the SHA-256 of the cookie's random id is stored; ``user_name`` is the
person (OIDC) or the token's name, named in the activity feed for the session's changes."""


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` (what people type) and use psycopg 3; a bare path means SQLite."""
    if "://" not in url:
        return f"sqlite:///{url}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(engine: Engine) -> bool:
    """Which locking strategy the store must use."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str, pool_size: int = 10, max_overflow: int | None = None) -> Engine:
    """An engine tuned for the check-in path.

    ``max_overflow`` defaults to ``pool_size``; the server passes 0 so that it holds exactly
    ``pool_size`` connections and never opens and closes overflow sessions under a burst.

    SQLite: WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for every transaction that may write, so
    grants are serialized across threads and processes (SQLite has a single writer anyway).
    PostgreSQL: a connection pool; grants serialize on a ``SELECT ... FOR UPDATE`` of the group row.
    """
    sa_url = normalize_url(url)
    overflow = pool_size if max_overflow is None else max_overflow
    if make_url(sa_url).get_backend_name() == "sqlite":
        engine = create_engine(
            sa_url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=overflow,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Read-only looks (execution option flotilla_deferred) take no write lock.
            deferred = conn.get_execution_options().get("flotilla_deferred")
            conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

        return engine
    return create_engine(sa_url, pool_size=pool_size, max_overflow=overflow, pool_pre_ping=False)


def reading(engine: Engine) -> Connection:
    """A connection for reads only: on SQLite its transaction is deferred and takes no write lock.

    Use as ``with reading(engine) as conn: ...``.
    """
    return engine.connect().execution_options(flotilla_deferred=True)


def migrate(engine: Engine) -> None:
    """Apply Alembic migrations up to head; safe when several processes start at once."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option(
        "script_location", str(resources.files("flotilla.updates.server").joinpath("migrations"))
    )
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Serialize concurrent starts: the second process waits, then finds head applied.
            conn.execute(text("SELECT pg_advisory_xact_lock(727001)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    logger.info("database schema at head (%s)", engine.url.render_as_string(hide_password=True))
