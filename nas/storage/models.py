"""swiftnas's own SQL tables (Optuna keeps its tables; these sit beside them, prefixed
``swiftnas_``). The schema is created and upgraded only by the Alembic migrations in
``migrations/``; each migration freezes its own copy of the tables it touches.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Integer, String, Text, func
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
