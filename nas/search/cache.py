"""The evaluation cache in SQL: identical architectures are evaluated once per evaluator key
(proxy setting and score definition; predictor artifact and device), across studies and runs.
One table, ``swiftnas_evaluations``, keyed by (architecture key, evaluator key).

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
from nas.storage.models import CandidateRow, EvaluationRow, ExportRow, PredictorRow
from search_spaces import ArchConfig

from .evaluation import Evaluation, EvaluationSettings

Row = TypeVar("Row", CandidateRow, PredictorRow, EvaluationRow)


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


def cached_evaluation(storage: Storage, arch: ArchConfig,
                      settings: EvaluationSettings) -> Evaluation | None:
    """The stored evaluation of ``arch`` under ``settings``, or None when either part (its
    proxies or its latency) is missing.

    One SELECT of two rows by their unique key, on a connection without a transaction: the
    driver asks this once per trial, and on PostgreSQL each statement and each BEGIN/COMMIT is
    a round trip."""
    proxy_key, latency_key = settings.evaluator_keys
    table = EvaluationRow.__table__
    query = (sa.select(table.c.evaluator_key, table.c.metrics_json, table.c.seconds)
             .where(table.c.arch_key == arch.key(),
                    table.c.evaluator_key.in_((proxy_key, latency_key))))
    with storage.read_engine.connect() as conn:
        rows = {r.evaluator_key: r for r in conn.execute(query)}
    if proxy_key not in rows or latency_key not in rows:
        return None
    proxies, latency = (json.loads(rows[k].metrics_json) for k in (proxy_key, latency_key))
    if any(p not in proxies for p in settings.proxies):
        return None
    return Evaluation(
        arch=arch, params=int(latency["params"]), macs=int(latency["macs"]),
        proxy_scores={p: float(proxies[p]) for p in settings.proxies},
        latency_ms=latency["latency_ms"], latency_low_ms=latency["low_ms"],
        latency_high_ms=latency["high_ms"], latency_sigma_log=latency["sigma_log"],
        latency_group=latency["group"], proxy_seconds=rows[proxy_key].seconds,
        latency_seconds=rows[latency_key].seconds, cached=True,
    )


def save_evaluation(storage: Storage, ev: Evaluation, settings: EvaluationSettings) -> int:
    """Store ``ev`` (one transaction): its two evaluator rows, and the candidate (exports name
    it); returns the candidate id."""
    proxy_key, latency_key = settings.evaluator_keys
    with storage.session(write=True) as session:
        cand = _get_or_add(session, CandidateRow, {"arch_key": ev.arch.key()}, {
            "arch_json": ev.arch.to_json(indent=None), "params": ev.params, "macs": ev.macs,
            "num_attn_blocks": ev.arch.num_attn_blocks,
        })
        _get_or_add(session, EvaluationRow, {"arch_key": ev.arch.key(),
                                             "evaluator_key": proxy_key},
                    {"metrics_json": json.dumps(ev.proxy_scores), "seconds": ev.proxy_seconds})
        latency = {"latency_ms": ev.latency_ms, "low_ms": ev.latency_low_ms,
                   "high_ms": ev.latency_high_ms, "sigma_log": ev.latency_sigma_log,
                   "group": ev.latency_group, "params": ev.params, "macs": ev.macs}
        _get_or_add(session, EvaluationRow, {"arch_key": ev.arch.key(),
                                             "evaluator_key": latency_key},
                    {"metrics_json": json.dumps(latency), "seconds": ev.latency_seconds})
        session.flush()
        return cand.id


def record_export(storage: Storage, *, study_name: str, trial_number: int, arch: ArchConfig,
                  out_dir: str, files: list[str], coreml: bool) -> None:
    with storage.session(write=True) as session:
        cand = session.scalars(sa.select(CandidateRow).filter_by(arch_key=arch.key())).one()
        session.add(ExportRow(study_name=study_name, trial_number=trial_number,
                              candidate_id=cand.id, out_dir=out_dir,
                              files_json=json.dumps(files), coreml=coreml))
