"""Initial schema: applications, packages, channels, groups, instances, history, activity.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "applications",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
    )
    op.create_table(
        "packages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "app_id",
            sa.String(64),
            sa.ForeignKey("applications.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("arch", sa.String(16), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("sha1", sa.String(40), nullable=False),
        sa.Column("extra_files", sa.JSON, nullable=False),
        sa.UniqueConstraint("app_id", "version", "arch", name="uq_packages_app_version_arch"),
    )
    op.create_table(
        "channels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "app_id",
            sa.String(64),
            sa.ForeignKey("applications.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(100), nullable=True),
        sa.Column("blocked_versions", sa.JSON, nullable=False),
        sa.Column("floors", sa.JSON, nullable=False),
        sa.UniqueConstraint("app_id", "name", name="uq_channels_app_name"),
    )
    op.create_table(
        "groups",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "app_id",
            sa.String(64),
            sa.ForeignKey("applications.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("track", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(100), nullable=True),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("halted_version", sa.String(100), nullable=True),
        sa.Column("halted_reason", sa.Text, nullable=True),
        sa.Column("rollout_version", sa.String(100), nullable=True),
        sa.Column("rollout_failures", sa.Integer, nullable=False),
        sa.UniqueConstraint("app_id", "name", name="uq_groups_app_name"),
        sa.UniqueConstraint("app_id", "track", name="uq_groups_app_track"),
    )
    op.create_table(
        "instances",
        sa.Column("machine_id", sa.String(100), primary_key=True),
        sa.Column("app_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.String(64), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("arch", sa.String(16), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("oem", sa.String(256), nullable=False),
        sa.Column("oem_version", sa.String(256), nullable=False),
        sa.Column("aleph_version", sa.String(256), nullable=False),
        sa.Column("boot_id", sa.String(256), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("last_update_version", sa.String(100), nullable=True),
        sa.Column("last_update_granted_at", TS, nullable=True),
        sa.Column("update_in_progress", sa.Boolean, nullable=False),
        sa.Column("last_error_code", sa.BigInteger, nullable=True),
    )
    op.create_index(
        "ix_instances_group_granted", "instances", ["group_id", "last_update_granted_at"]
    )
    op.create_index(
        "ix_instances_group_target",
        "instances",
        ["group_id", "update_in_progress", "last_update_version"],
    )
    op.create_index("ix_instances_last_seen", "instances", ["last_seen"])
    op.create_table(
        "instance_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("machine_id", sa.String(100), nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("target_version", sa.String(100), nullable=True),
        sa.Column("error_code", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_history_instance", "instance_history", ["app_id", "machine_id", "id"])
    op.create_table(
        "activity",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("group_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("version", sa.String(100), nullable=True),
        sa.Column("machine_id", sa.String(100), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_activity_at", "activity", ["at"])


def downgrade() -> None:
    """Drop every table."""
    for table in (
        "activity",
        "instance_history",
        "instances",
        "groups",
        "channels",
        "packages",
        "applications",
    ):
        op.drop_table(table)
