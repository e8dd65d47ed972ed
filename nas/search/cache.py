"""The evaluation cache in SQL: identical architectures are evaluated once per proxy setting,
predictor artifact and device, across studies and runs.

Inserts are "insert unless present" inside a savepoint, so two drivers (two studies on one
PostgreSQL database) that meet the same architecture at once both succeed.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nas.evaluators import digest
from nas.storage import Storage
from nas.storage.models import (
    CandidateRow,
    ExportRow,
    LatencyPredictionRow,
    PredictorRow,
    ProxyScoreRow,
)
from search_spaces import ArchConfig

from .evaluation import Evaluation, EvaluationSettings

Row = TypeVar("Row", CandidateRow, PredictorRow, ProxyScoreRow, LatencyPredictionRow)


def _get_or_add(session: Session, model: type[Row], unique: dict[str, Any],
                values: dict[str, Any]) -> Row:
    query = sa.select(model).filter_by(**unique)
    row = session.scalars(query).first()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = model(**unique, **values)
            session.add(row)
        return row
    except IntegrityError:  # another driver inserted it between our select and insert
        return session.scalars(query).one()


def register_predictor(storage: Storage, artifact: dict[str, Any]) -> int:
    with storage.session(write=True) as session:
        row = _get_or_add(session, PredictorRow, {"digest": digest(artifact)}, {
            "name": str(artifact.get("name", "")), "version": str(artifact.get("version", "")),
            "artifact_json": json.dumps(artifact, sort_keys=True),
        })
        session.flush()
        return row.id


def stored_predictor(storage: Storage, digest: str) -> dict[str, Any] | None:
    """The predictor artifact stored under ``digest``, or None."""
    with storage.session() as session:
        text = session.scalars(sa.select(PredictorRow.artifact_json).filter_by(
            digest=digest)).first()
    return None if text is None else json.loads(text)


def predictor_id(storage: Storage, digest: str) -> int | None:
    """The stored predictor's id, or None (read-only)."""
    with storage.session() as session:
        return session.scalars(sa.select(PredictorRow.id).filter_by(digest=digest)).first()


def _stored_name(proxy: str, settings: EvaluationSettings) -> str:
    """The name a proxy's value is cached under (the score's carries its definition)."""
    return settings.score_name if proxy == "score" else proxy


def cached_evaluation(storage: Storage, arch: ArchConfig, settings: EvaluationSettings,
                      predictor_id: int) -> Evaluation | None:
    """The stored evaluation of ``arch`` under ``settings``, or None when any part is missing.

    One SELECT (a row per stored proxy score, joined with its candidate and latency prediction)
    on a connection without a transaction: the driver asks this once per trial, and on
    PostgreSQL each statement and each BEGIN/COMMIT is a round trip."""
    cand, score, pred = (CandidateRow.__table__, ProxyScoreRow.__table__,
                         LatencyPredictionRow.__table__)
    query = (sa.select(cand.c.params, cand.c.macs, pred.c.latency_ms, pred.c.low_ms,
                       pred.c.high_ms, pred.c.sigma_log, pred.c.group, pred.c.seconds,
                       score.c.proxy, score.c.value, score.c.seconds.label("proxy_seconds"))
             .join(pred, sa.and_(pred.c.candidate_id == cand.c.id,
                                 pred.c.predictor_id == predictor_id,
                                 pred.c.device == settings.device))
             .join(score, sa.and_(score.c.candidate_id == cand.c.id,
                                  score.c.settings_key == settings.proxy_key))
             .where(cand.c.arch_key == arch.key()))
    with storage.read_engine.connect() as conn:
        rows = conn.execute(query).all()
    by_name = {r.proxy: r for r in rows}
    if not rows or any(_stored_name(p, settings) not in by_name for p in settings.proxies):
        return None
    # row: the shared columns
    first, row = by_name[_stored_name(settings.proxies[0], settings)], rows[0]
    return Evaluation(
        arch=arch, params=row.params, macs=row.macs,
        proxy_scores={p: by_name[_stored_name(p, settings)].value for p in settings.proxies},
        latency_ms=row.latency_ms, latency_low_ms=row.low_ms, latency_high_ms=row.high_ms,
        latency_sigma_log=row.sigma_log, latency_group=row.group,
        proxy_seconds=first.proxy_seconds, latency_seconds=row.seconds,
        cached=True,
    )


def save_evaluation(storage: Storage, ev: Evaluation, settings: EvaluationSettings,
                    predictor_id: int) -> int:
    """Store ``ev`` (one transaction); returns the candidate id."""
    with storage.session(write=True) as session:
        cand = _get_or_add(session, CandidateRow, {"arch_key": ev.arch.key()}, {
            "arch_json": ev.arch.to_json(indent=None), "params": ev.params, "macs": ev.macs,
            "num_attn_blocks": ev.arch.num_attn_blocks,
        })
        session.flush()
        for proxy, value in ev.proxy_scores.items():
            _get_or_add(session, ProxyScoreRow, {
                "candidate_id": cand.id, "proxy": _stored_name(proxy, settings),
                "settings_key": settings.proxy_key,
            }, {"value": value, "seconds": ev.proxy_seconds})
        _get_or_add(session, LatencyPredictionRow, {
            "candidate_id": cand.id, "predictor_id": predictor_id, "device": settings.device,
        }, {"latency_ms": ev.latency_ms, "low_ms": ev.latency_low_ms,
            "high_ms": ev.latency_high_ms, "sigma_log": ev.latency_sigma_log,
            "group": ev.latency_group, "seconds": ev.latency_seconds})
        return cand.id


def record_export(storage: Storage, *, study_name: str, trial_number: int, arch: ArchConfig,
                  out_dir: str, files: list[str], coreml: bool) -> None:
    with storage.session(write=True) as session:
        cand = session.scalars(sa.select(CandidateRow).filter_by(arch_key=arch.key())).one()
        session.add(ExportRow(study_name=study_name, trial_number=trial_number,
                              candidate_id=cand.id, out_dir=out_dir,
                              files_json=json.dumps(files), coreml=coreml))
