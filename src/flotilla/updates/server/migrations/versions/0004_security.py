"""Security: per-network grant limit for new machines, server-side sessions, FleetLock tokens.

Revision ID: 0004
Revises: 0003 (FleetLock)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the grant and session tables, add the FleetLock group token column."""
    op.create_table(
        "new_machine_grants",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("machine_id", sa.String(100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_new_machine_grants_network_at", "new_machine_grants", ["network", "at"])
    op.create_table(
        "dashboard_sessions",
        sa.Column("id_sha256", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dashboard_sessions_last_used", "dashboard_sessions", ["last_used_at"])
    with op.batch_alter_table("fleetlock_groups") as batch:
        batch.add_column(sa.Column("token_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop what upgrade added."""
    with op.batch_alter_table("fleetlock_groups") as batch:
        batch.drop_column("token_sha256")
    op.drop_index("ix_dashboard_sessions_last_used", "dashboard_sessions")
    op.drop_table("dashboard_sessions")
    op.drop_index("ix_new_machine_grants_network_at", "new_machine_grants")
    op.drop_table("new_machine_grants")
