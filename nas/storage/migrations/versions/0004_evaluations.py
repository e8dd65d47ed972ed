"""One evaluation cache keyed by (architecture key, evaluator key); the proxy-score and
latency-prediction rows are copied into it (and kept where they were).

Revision ID: 0004
Revises: 0003
"""

import json
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

# the evaluators' keys as nas.evaluators wrote them when this migration was made (a migration
# never imports the code it migrates from)
PROXIES = ("score", "swap", "grad_norm")  # what every search scored


def upgrade() -> None:
    table = op.create_table(
        "swiftnas_evaluations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("arch_key", sa.String(512), nullable=False),
        sa.Column("evaluator_key", sa.String(512), nullable=False),
        sa.Column("metrics_json", sa.Text, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.UniqueConstraint("arch_key", "evaluator_key"),
    )
    conn = op.get_bind()
    rows = []
    # proxies: one row per (candidate, proxy setting, score definition) with every proxy
    scores: dict[tuple[str, str], dict[str, tuple[float, float]]] = defaultdict(dict)
    for arch_key, setting, proxy, value, seconds in conn.execute(sa.text(
            "SELECT c.arch_key, s.settings_key, s.proxy, s.value, s.seconds "
            "FROM swiftnas_proxy_scores s JOIN swiftnas_candidates c ON c.id = s.candidate_id")):
        scores[(arch_key, setting)][proxy] = (value, seconds)
    for (arch_key, setting), by_name in scores.items():
        for name in by_name:
            if not name.startswith("score@") or not all(p in by_name for p in PROXIES[1:]):
                continue
            metrics = {"score": by_name[name][0],
                       **{p: by_name[p][0] for p in PROXIES[1:]}}
            rows.append({"arch_key": arch_key, "seconds": by_name[name][1],
                         "evaluator_key": f"proxy:{setting}:{','.join(PROXIES)}:"
                                          f"{name.removeprefix('score@')}",
                         "metrics_json": json.dumps(metrics)})
    # latency: one row per (candidate, predictor, device), with the size
    for r in conn.execute(sa.text(
            "SELECT c.arch_key, c.params, c.macs, p.device, pr.digest, p.latency_ms, p.low_ms, "
            "p.high_ms, p.sigma_log, p.\"group\", p.seconds FROM swiftnas_latency_predictions p "
            "JOIN swiftnas_candidates c ON c.id = p.candidate_id "
            "JOIN swiftnas_predictors pr ON pr.id = p.predictor_id")):
        metrics = {"latency_ms": r.latency_ms, "low_ms": r.low_ms, "high_ms": r.high_ms,
                   "sigma_log": r.sigma_log, "group": r.group, "params": r.params,
                   "macs": r.macs}
        rows.append({"arch_key": r.arch_key, "seconds": r.seconds,
                     "evaluator_key": f"latency:{r.digest[:16]}:{r.device}",
                     "metrics_json": json.dumps(metrics)})
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table("swiftnas_evaluations")
