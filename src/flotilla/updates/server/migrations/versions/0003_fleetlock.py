"""FleetLock: per-group reboot semaphores and their holders.

Revision ID: 0003
Revises: 0002 (the dashboard's indexes)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the FleetLock tables."""
    op.create_table(
        "fleetlock_groups",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("max_holders", sa.Integer, nullable=False),
        sa.Column("windows", sa.JSON, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
    )
    op.create_table(
        "fleetlock_holders",
        sa.Column("group_name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(256), primary_key=True),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the FleetLock tables."""
    op.drop_table("fleetlock_holders")
    op.drop_table("fleetlock_groups")
