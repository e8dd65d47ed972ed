"""Search records: predictor artifacts, candidates, proxy scores, latency predictions, exports.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "swiftnas_predictors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("artifact_json", sa.Text, nullable=False),
        _created_at(),
    )
    op.create_table(
        "swiftnas_candidates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("arch_key", sa.String(512), nullable=False, unique=True),
        sa.Column("arch_json", sa.Text, nullable=False),
        sa.Column("params", sa.Integer, nullable=False),
        sa.Column("macs", sa.BigInteger, nullable=False),
        sa.Column("num_attn_blocks", sa.Integer, nullable=False),
        _created_at(),
    )
    op.create_table(
        "swiftnas_proxy_scores",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("candidate_id", sa.Integer, sa.ForeignKey("swiftnas_candidates.id"),
                  nullable=False, index=True),
        sa.Column("proxy", sa.String(64), nullable=False),
        sa.Column("settings_key", sa.String(256), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.UniqueConstraint("candidate_id", "proxy", "settings_key"),
    )
    op.create_table(
        "swiftnas_latency_predictions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("candidate_id", sa.Integer, sa.ForeignKey("swiftnas_candidates.id"),
                  nullable=False, index=True),
        sa.Column("predictor_id", sa.Integer, sa.ForeignKey("swiftnas_predictors.id"),
                  nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("low_ms", sa.Float, nullable=False),
        sa.Column("high_ms", sa.Float, nullable=False),
        sa.Column("sigma_log", sa.Float, nullable=False),
        sa.Column("group", sa.String(512), nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.UniqueConstraint("candidate_id", "predictor_id", "device"),
        sa.CheckConstraint("latency_ms > 0", name="ck_prediction_latency_positive"),
    )
    op.create_table(
        "swiftnas_exports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_name", sa.String(512), nullable=False, index=True),
        sa.Column("trial_number", sa.Integer, nullable=False),
        sa.Column("candidate_id", sa.Integer, sa.ForeignKey("swiftnas_candidates.id"),
                  nullable=False),
        sa.Column("out_dir", sa.String(2048), nullable=False),
        sa.Column("files_json", sa.Text, nullable=False),
        sa.Column("coreml", sa.Boolean, nullable=False),
        _created_at(),
    )


def downgrade() -> None:
    for table in ("swiftnas_exports", "swiftnas_latency_predictions", "swiftnas_proxy_scores",
                  "swiftnas_candidates", "swiftnas_predictors"):
        op.drop_table(table)
