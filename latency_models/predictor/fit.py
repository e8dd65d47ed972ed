"""Fitting a predictor on measurements, with leave-one-family-out cross-validation for its
metrics and intervals (``fit_predictor``), and the default feature cache."""

from __future__ import annotations

import dataclasses
import math
import platform
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from search_spaces import SwiftNASError

from ..architectures import FeatureCache
from ..evaluation import evaluate_rows, lofo_by_mixer
from ..family import FamilyOptions, fit_family
from ..featureset import (
    FeatureExtractionError,
)
from ..measurements import Measurement
from .artifact import (
    DEFAULT_RIDGE,
    SEARCH_FAMILY,
    GroupCalibration,
    LatencyPredictor,
    PredictorError,
    compute_class,
    feature_row,
    model_feature_names,
)
from .solve import SolveOptions, _design, _solve


def usable(measurements: Iterable[Measurement]) -> tuple[list[Measurement], list[Measurement]]:
    """(rows naming an architecture, rows naming none: they cannot be used)."""
    ok: list[Measurement] = []
    skipped: list[Measurement] = []
    for m in measurements:
        (ok if (m.timm_name or m.arch is not None) else skipped).append(m)
    return ok, skipped


@dataclass
class FitResult:
    predictor: LatencyPredictor
    rows: list[Measurement]  # the rows used (naming an architecture)
    skipped: list[Measurement]  # rows naming no architecture
    cv_predictions: list[float | None]  # leave-one-family-out prediction per used row


def fit_predictor(measurements: Sequence[Measurement], *, cache: FeatureCache,
                  ridge: float = DEFAULT_RIDGE, options: SolveOptions = SolveOptions(),
                  family_options: FamilyOptions | None = FamilyOptions(),
                  own_interval_families: Sequence[str] = (SEARCH_FAMILY,),
                  cross_validate: bool = True,
                  progress: Callable[[str, int, int], None] | None = None,
                  name: str = "swiftnas-latency", version: str = "1") -> FitResult:
    """Fit on every row that names an architecture; optionally leave-one-family-out metrics.

    ``family_options``: the second stage, each measured family's own correction
    (``latency_models/family.py``; None: none, v2.4's predictor). With cross-validation, the
    families in ``own_interval_families`` also get their leave-one-row-out errors (one refit
    per row), from which their predictions' intervals come.

    ``progress(stage, done, total)`` is called as features are built and CV folds fit.
    """

    rows, skipped = usable(measurements)
    if len(rows) < 3:
        raise PredictorError(
            f"need at least 3 measurements that name a timm_name or arch to fit, got {len(rows)}"
        )
    features = []
    for i, m in enumerate(rows):
        try:
            features.append(cache.get(m.ref, m.input_resolution))
        except (SwiftNASError, FeatureExtractionError) as exc:  # say which row names it
            where = f"{m.origin}: " if m.origin else ""
            raise PredictorError(f"{where}cannot build {m.model!r} ({m.family_name}) to "
                                 f"compute its features: {exc}") from None
        if progress:
            progress("features", i + 1, len(rows))
    cache.save()
    names = model_feature_names()
    raw = np.array([feature_row(f, names) for f in features])
    active = raw.max(axis=0) > 0
    names = [n for n, a in zip(names, active, strict=True) if a]
    measure_names = sorted({n.split(".")[-1] for n in names})
    measure_index = np.array([measure_names.index(n.split(".")[-1]) for n in names])
    raw = raw[:, active]

    def fit_on(idx: Sequence[int]) -> LatencyPredictor:
        part = [rows[i] for i in idx]
        scale = _feature_scale(raw[list(idx)], measure_index)
        d = _design(part, [features[i] for i in idx], names, scale, options.balance)
        sol = _solve(d, measure_index, ridge, options)
        resid = []
        groups = {}
        for gi, g in enumerate(d.groups):
            members = [m for m in part if m.group == g]
            groups[g] = GroupCalibration(
                scale=float(sol["scale"][gi]), offset_ms=float(sol["offset"][gi]),
                compute_class=compute_class(members[0].compute_unit), rows=len(members),
                families=len({m.family_name for m in members}))
        pred = LatencyPredictor(
            feature_names=list(names), feature_scale=[float(s) for s in scale],
            weights={c: [float(v) for v in sol["w"][k]] for k, c in enumerate(d.classes)},
            groups=groups, fallback_log_effect=float(sol["phi"][0]), pooled_sigma_log=0.0,
            ridge=ridge, name=name, version=version, fallback_cost=sol["fallback_cost"],
            fallback_cost_per="op" if options.fallback == "ops" else "model",
            exponents={} if sol["exponents"] is None else {
                c: float(sol["exponents"][k]) for k, c in enumerate(d.classes)})
        for i in idx:
            p = pred.predict_features(features[i], rows[i].group, fallback=rows[i].fallback)
            resid.append(math.log(p.latency_ms / rows[i].latency_ms))
        # in-sample spread: optimistic; replaced by the cross-validated one when available
        pred.pooled_sigma_log = float(np.std(resid))
        if family_options is not None:  # the second stage, on the shared fit's residuals
            by_family: dict[str, list[int]] = {}
            for k, i in enumerate(idx):
                by_family.setdefault(rows[i].family_name, []).append(k)
            for fam, ks in by_family.items():
                members = [rows[idx[k]] for k in ks]
                pred.families[fam] = fit_family(
                    [-resid[k] for k in ks],
                    [math.log(pred.cost(features[idx[k]], pred.groups[m.group].compute_class))
                     for k, m in zip(ks, members, strict=True)],
                    [m.group for m in members], family_options,
                    timm_names=[m.timm_name for m in members])
        return pred

    def family_rows_out(fam: str) -> dict[str, Any] | None:
        """Leave-one-row-out over a family's rows (one refit each): its predictions'
        interval spread, and the errors, in ``metrics["families"]``."""
        from scipy.stats import t as student_t

        mine = [i for i, m in enumerate(rows) if m.family_name == fam]
        if len(mine) < 3:
            return None
        out: list[dict[str, Any]] = []
        for k, i in enumerate(mine):
            fold = fit_on([j for j in range(len(rows)) if j != i])
            p = fold.predict_features(features[i], rows[i].group, fallback=rows[i].fallback,
                                      family=fam).latency_ms
            out.append({"model": rows[i].model, "group": rows[i].group,
                        "measured_ms": rows[i].latency_ms, "predicted_ms": p})
            if progress:
                progress(f"leave-one-row-out ({fam})", k + 1, len(mine))
        logs = [math.log(r["predicted_ms"] / r["measured_ms"]) for r in out]
        cal = predictor.families[fam]
        cal.sigma_log = float(np.sqrt(np.mean(np.square(logs))))
        cal.interval_z = float(student_t.ppf(0.95, len(logs) - 1))
        errors = [100 * abs(r["predicted_ms"] / r["measured_ms"] - 1) for r in out]
        return {"protocol": "leave-one-row-out: each of the family's rows is removed, the "
                            "model (both stages) is refitted, and that row is predicted",
                "mape": float(np.mean(errors)), "worst": float(max(errors)), "rows": out}

    predictor = fit_on(list(range(len(rows))))
    cv_predictions: list[float | None] = [None] * len(rows)
    if cross_validate:
        families = sorted({m.family_name for m in rows})
        for k, fam in enumerate(families):
            train = [i for i, m in enumerate(rows) if m.family_name != fam]
            test = [i for i, m in enumerate(rows) if m.family_name == fam]
            if train:
                fold = fit_on(train)
                for i in test:
                    if rows[i].group in fold.groups:  # the fold has no such family
                        cv_predictions[i] = fold.predict_features(
                            features[i], rows[i].group, fallback=rows[i].fallback,
                            family=rows[i].family_name).latency_ms
            if progress:
                progress("cross-validation", k + 1, len(families))
        _set_sigmas(predictor, rows, cv_predictions)
        predictor.metrics = {
            "protocol": "leave-one-family-out: each family is removed from every group, the "
                        "model is refitted, and that family's rows are predicted",
            **evaluate_rows(rows, cv_predictions),
            # the same held-out predictions over the rows that measure each token mixer
            "mixers": lofo_by_mixer(rows, cv_predictions, features),
            # every row's held-out prediction, for plots of out-of-sample error (dashboard)
            "cv_rows": [{"model": m.model, "group": m.group, "measured_ms": m.latency_ms,
                         "predicted_ms": p} for m, p in zip(rows, cv_predictions, strict=True)],
        }
        if family_options is not None:
            own = {f: family_rows_out(f) for f in own_interval_families
                   if f in predictor.families}
            predictor.metrics["families"] = {f: v for f, v in own.items() if v}
    predictor.training = {
        "solve_options": dataclasses.asdict(options), "rows": len(rows),
        "family_options": None if family_options is None else dataclasses.asdict(family_options),
        "skipped_rows_without_architecture": len(skipped),
        "groups": len(predictor.groups), "families": len({m.family_name for m in rows}),
        "devices": sorted({m.device for m in rows}),
        "fallback_rows": sum(m.fallback for m in rows),
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
    }
    return FitResult(predictor, rows, skipped, cv_predictions)


def _feature_scale(raw: np.ndarray, measure_index: np.ndarray) -> np.ndarray:
    """Each feature's mean over the fitted rows (``raw``: rows x features).

    The ridge pulls the costs of *scaled* features together, so scaling each by its own
    category's mean lets a rare op type (attention matmul, softmax) cost more per MAC or byte.
    Leave-one-family-out (latency_fitopts.py) prefers exactly this: scales pooled towards their
    measure's geometric mean by 0 / 0.5 / 1 / 1.5 (1 = this) gave 26.98 / 23.35 / 20.00 / 21.50%
    (then measured with fold scales from every row's features). Only the fitted rows count, so a
    cross-validation fold never sees the held-out family's features (a fit on every row would
    not have them either); a feature none of them uses gets its measure's geometric mean scale.
    """
    mean = raw.mean(axis=0)
    used = mean > 0
    for m in np.unique(measure_index):
        mine = measure_index == m
        if (mine & ~used).any():
            shared = np.exp(np.log(mean[mine & used]).mean()) if (mine & used).any() else 1.0
            mean[mine & ~used] = shared
    return mean


def _set_sigmas(predictor: LatencyPredictor, rows: Sequence[Measurement],
                cv: Sequence[float | None]) -> None:
    """Interval spreads from the leave-one-family-out residuals: the RMS log error of the
    group (of all groups when it has fewer than 5), with a Student-t multiplier. A family's
    rows miss together (one shared shift), so the independent draws behind a spread are its
    families, not its rows: one degree of freedom per family. Measured in
    ``benchmarks/latency_accuracy.py coverage``."""
    from scipy.stats import t as student_t

    def z(families: set[str]) -> float:
        return float(student_t.ppf(0.95, max(len(families), 1)))

    by_group: dict[str, list[float]] = {}
    families: dict[str, set[str]] = {}
    for m, p in zip(rows, cv, strict=True):
        if p is not None:
            by_group.setdefault(m.group, []).append(math.log(p / m.latency_ms))
            families.setdefault(m.group, set()).add(m.family_name)
    pooled = [r for rs in by_group.values() for r in rs]
    if pooled:
        predictor.pooled_sigma_log = float(np.sqrt(np.mean(np.square(pooled))))
        predictor.pooled_interval_z = z(set().union(*families.values()))
    for g, cal in predictor.groups.items():
        rs = by_group.get(g, [])
        enough = len(rs) >= 5
        cal.sigma_log = float(np.sqrt(np.mean(np.square(rs)))) if enough else None
        cal.interval_z = z(families[g]) if enough else None
