"""Trained accuracies (swiftnas train, swiftnas accuracy import).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "swiftnas_trained_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("arch_key", sa.String(512), nullable=False, index=True),
        sa.Column("arch_json", sa.Text, nullable=False),
        sa.Column("dataset", sa.String(256), nullable=False, index=True),
        sa.Column("dataset_digest", sa.String(64), nullable=False),
        sa.Column("recipe_key", sa.String(300), nullable=False),
        sa.Column("recipe_label", sa.String(256), nullable=False),
        sa.Column("recipe_json", sa.Text, nullable=False),
        sa.Column("top1", sa.Float, nullable=False),
        sa.Column("top5", sa.Float, nullable=True),
        sa.Column("train_seconds", sa.Float, nullable=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("versions_json", sa.Text, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("origin", sa.String(2048), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.UniqueConstraint("arch_key", "dataset", "dataset_digest", "recipe_key"),
    )


def downgrade() -> None:
    op.drop_table("swiftnas_trained_results")
