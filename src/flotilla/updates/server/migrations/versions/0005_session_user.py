"""Dashboard sessions name their person (OIDC login) or token, for the activity feed.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``dashboard_sessions.user_name`` (not ``user``, a reserved word in PostgreSQL).

    Sessions from before it have an empty name: the feed names their role's token.
    """
    with op.batch_alter_table("dashboard_sessions") as batch:
        batch.add_column(sa.Column("user_name", sa.String(200), nullable=False, server_default=""))


def downgrade() -> None:
    """Drop the column again."""
    with op.batch_alter_table("dashboard_sessions") as batch:
        batch.drop_column("user_name")
