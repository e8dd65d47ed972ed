"""swiftnas's own SQL tables (Optuna keeps its tables; these sit beside them, prefixed
``swiftnas_``). The schema is created and upgraded only by the Alembic migrations in
``migrations/``; each migration freezes its own copy of the tables it touches.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class MeasurementRow(Base):
    """One imported on-device latency (calibration CSV schema, plus where it came from)."""

    __tablename__ = "swiftnas_measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(256))
    device: Mapped[str] = mapped_column(String(128), index=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    timm_name: Mapped[str] = mapped_column(String(256), default="")
    arch_json: Mapped[str] = mapped_column(Text, default="")  # ArchConfig JSON, or empty
    input_resolution: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source: Mapped[str] = mapped_column(String(512), default="user")
    compute_unit: Mapped[str] = mapped_column(String(32), default="")
    os: Mapped[str] = mapped_column(String(64), default="")
    family: Mapped[str] = mapped_column(String(128), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    origin: Mapped[str] = mapped_column(String(1024), default="")  # imported file and line
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                  server_default=func.now())


class PredictorRow(Base):
    """A latency predictor artifact a study used, stored whole so results stay reproducible.

    ``digest`` (SHA-256 of the canonical artifact JSON) identifies it: two refits that share a
    name and version but differ in weights are different predictors.
    """

    __tablename__ = "swiftnas_predictors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    artifact_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())


class CandidateRow(Base):
    """One distinct architecture (canonical key), whatever study proposed it."""

    __tablename__ = "swiftnas_candidates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    arch_key: Mapped[str] = mapped_column(String(512), unique=True)
    arch_json: Mapped[str] = mapped_column(Text)
    params: Mapped[int] = mapped_column(Integer)
    macs: Mapped[int] = mapped_column(BigInteger)
    num_attn_blocks: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())


class ProxyScoreRow(Base):
    """One proxy's value for a candidate under one proxy setting (resolution, batch, seed)."""

    __tablename__ = "swiftnas_proxy_scores"
    __table_args__ = (UniqueConstraint("candidate_id", "proxy", "settings_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("swiftnas_candidates.id"), index=True)
    proxy: Mapped[str] = mapped_column(String(64))
    settings_key: Mapped[str] = mapped_column(String(256))
    value: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)  # time for all proxies of this evaluation


class LatencyPredictionRow(Base):
    """A candidate's predicted latency on a device by one predictor artifact."""

    __tablename__ = "swiftnas_latency_predictions"
    __table_args__ = (UniqueConstraint("candidate_id", "predictor_id", "device"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("swiftnas_candidates.id"), index=True)
    predictor_id: Mapped[int] = mapped_column(ForeignKey("swiftnas_predictors.id"))
    device: Mapped[str] = mapped_column(String(128))
    latency_ms: Mapped[float] = mapped_column(Float)
    low_ms: Mapped[float] = mapped_column(Float)
    high_ms: Mapped[float] = mapped_column(Float)
    sigma_log: Mapped[float] = mapped_column(Float)
    group: Mapped[str] = mapped_column(String(512))
    seconds: Mapped[float] = mapped_column(Float)


class EvaluationRow(Base):
    """The evaluation cache: one evaluator's metrics for one architecture. The evaluator key
    (``nas.evaluators``: ``Evaluator.key()``) names its settings and artifact, so a proxy
    setting, a score definition, a predictor or a device of its own is a key of its own.
    (The per-proxy and per-prediction tables before it are kept, read by nothing since
    migration 0004 copied them here.)"""

    __tablename__ = "swiftnas_evaluations"
    __table_args__ = (UniqueConstraint("arch_key", "evaluator_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    arch_key: Mapped[str] = mapped_column(String(512))
    evaluator_key: Mapped[str] = mapped_column(String(512))
    metrics_json: Mapped[str] = mapped_column(Text)  # {metric: value}
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())


class ExportRow(Base):
    """A `swiftnas export` of a study's trial: where the files went."""

    __tablename__ = "swiftnas_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(512), index=True)
    trial_number: Mapped[int] = mapped_column(Integer)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("swiftnas_candidates.id"))
    out_dir: Mapped[str] = mapped_column(String(2048))
    files_json: Mapped[str] = mapped_column(Text)  # JSON list of file names
    coreml: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())


class TrainedResultRow(Base):
    """One trained accuracy: an architecture trained on a dataset with a recipe.

    (arch_key, dataset, dataset_digest, recipe_key) identifies the experiment; a second
    `swiftnas train` of it is a cache hit. Imported rows (trained elsewhere) have an empty
    digest and the recipe key ``label:<their label>``.
    """

    __tablename__ = "swiftnas_trained_results"
    __table_args__ = (UniqueConstraint("arch_key", "dataset", "dataset_digest", "recipe_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    arch_key: Mapped[str] = mapped_column(String(512), index=True)
    arch_json: Mapped[str] = mapped_column(Text)  # ArchConfig JSON; empty for a timm model
    dataset: Mapped[str] = mapped_column(String(256), index=True)
    dataset_digest: Mapped[str] = mapped_column(String(64))
    recipe_key: Mapped[str] = mapped_column(String(300))
    recipe_label: Mapped[str] = mapped_column(String(256))
    recipe_json: Mapped[str] = mapped_column(Text)
    top1: Mapped[float] = mapped_column(Float)  # percent
    top5: Mapped[float | None] = mapped_column(Float, nullable=True)
    train_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    device: Mapped[str] = mapped_column(String(64))
    versions_json: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))  # "train" or "import"
    origin: Mapped[str] = mapped_column(String(2048))  # output folder, or imported file:line
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
