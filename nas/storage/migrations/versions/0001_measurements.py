"""Imported latency measurements.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "swiftnas_measurements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("device", sa.String(128), nullable=False, index=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("timm_name", sa.String(256), nullable=False),
        sa.Column("arch_json", sa.Text, nullable=False),
        sa.Column("input_resolution", sa.Integer, nullable=True),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("compute_unit", sa.String(32), nullable=False),
        sa.Column("os", sa.String(64), nullable=False),
        sa.Column("family", sa.String(128), nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("fallback", sa.Boolean, nullable=False),
        sa.Column("origin", sa.String(1024), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.CheckConstraint("latency_ms > 0", name="ck_measurement_latency_positive"),
    )


def downgrade() -> None:
    op.drop_table("swiftnas_measurements")
