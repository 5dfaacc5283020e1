"""The Alembic migrations build exactly the tables the code uses, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from flotilla.updates.server.schema import make_engine, metadata, migrate, normalize_url


def test_migrations_match_the_tables(db_url: str) -> None:
    engine = make_engine(db_url, pool_size=1)
    migrate(engine)
    migrate(engine)  # a second start is a no-op
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_normalize_url() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("/var/lib/x.db") == "sqlite:////var/lib/x.db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
