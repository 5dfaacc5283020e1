"""Alembic migrations of the update service's schema (applied on start)."""
