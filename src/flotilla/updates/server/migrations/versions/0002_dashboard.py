"""The dashboard: indexes for per-group counts and sorted pages, samples for the rollout chart.

Revision ID: 0002
Revises: 0001

Without them, the group page's counts and the instances list scan every instance of the app;
with them they read one index range per group (see docs/benchmarks.md, dashboard section).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the indexes and the samples table."""
    op.create_table(
        "group_status_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("group_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index("ix_samples_group_at", "group_status_samples", ["group_id", "at"])
    op.create_index("ix_instances_group_seen", "instances", ["group_id", "last_seen", "machine_id"])
    op.create_index("ix_instances_group_status", "instances", ["group_id", "status"])
    op.create_index(
        "ix_instances_group_version", "instances", ["group_id", "version", "machine_id"]
    )


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_samples_group_at", "group_status_samples")
    op.drop_table("group_status_samples")
    op.drop_index("ix_instances_group_version", "instances")
    op.drop_index("ix_instances_group_status", "instances")
    op.drop_index("ix_instances_group_seen", "instances")
