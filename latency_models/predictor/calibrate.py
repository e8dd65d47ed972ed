"""Few-shot calibration of a new group (phone, protocol) from a handful of measurements,
with a Bayesian prior on its scale and offset (``calibrate``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from ..architectures import FeatureCache
from ..measurements import Measurement
from .artifact import GroupCalibration, LatencyPredictor, PredictorError, compute_class
from .fit import usable

# Groups whose offset informs a new group's (calibrate): enough rows to pin their offset.
PRIOR_MIN_ROWS = 5
# calibrate's prior weight, a multiple of the Bayesian one. Chosen by leave-one-group-out
# (benchmarks/latency_fewshot.py), the rule written before the first run taking the lowest mean
# median MAPE: 1 with v2.4's shared costs (0.5 / 1 / 2: 17.26 / 16.88 / 17.74%; no prior
# 20.24%); with v2.3's, 0.5 (the three level at 16.81-16.82%).
OFFSET_PRIOR_WEIGHT = 1.0


def offset_prior(predictor: LatencyPredictor, compute_class_name: str,
                 exclude: Iterable[str] = ()) -> tuple[float, float] | None:
    """Mean and standard deviation of log offset (ms) over the calibrated groups of a compute
    class with at least ``PRIOR_MIN_ROWS`` rows, or None with fewer than 3 such groups.

    A group's offset is the fixed cost of one inference (dispatch, I/O): it varies less across
    phones and protocols than the scale does (v2.3's Neural Engine groups: log spread 0.48
    against 0.71, offsets mostly 0.24-0.59 ms), so it is what a few measurements of a new phone
    should borrow from the others. v2.4's fit pulls the scales together itself, so its own
    groups no longer show this (0.78 against 0.60, one DenseNet table's offset at 7.7 ms); the
    weight of the prior is chosen by the few-shot benchmark either way."""
    skip = set(exclude)
    logs = [math.log(c.offset_ms) for g, c in predictor.groups.items()
            if g not in skip and c.compute_class == compute_class_name
            and c.rows >= PRIOR_MIN_ROWS and c.offset_ms > 0]
    if len(logs) < 3:
        return None
    return float(np.mean(logs)), float(np.std(logs, ddof=1))


def calibrate(predictor: LatencyPredictor, measurements: Sequence[Measurement], *,
              cache: FeatureCache, prior: float = OFFSET_PRIOR_WEIGHT) -> LatencyPredictor:
    """Refit only the per-group scale and offset of the groups in ``measurements``.

    The shared per-operation costs stay, so a handful of rows calibrates a new device. Least
    squares on log latency; with ``prior`` (the default) the group's log offset is also pulled
    towards the other groups' (``offset_prior``, a Gaussian prior weighed against the
    predictor's per-row spread ``pooled_sigma_log``), so one row fits the scale with a typical
    offset and a few rows cannot swing the offset to an extreme. ``prior`` multiplies the prior
    row's weight (1: the Bayesian one; 0: no prior, v2.2's rule, where one row fits the scale
    alone, offset 0, and more rows fit both freely; default ``OFFSET_PRIOR_WEIGHT``).
    """
    rows, _ = usable(measurements)
    out = LatencyPredictor.from_dict(predictor.to_dict())
    by_group: dict[str, list[Measurement]] = {}
    for m in rows:
        by_group.setdefault(m.group, []).append(m)
    from scipy import optimize

    # the prior row's weight: its spread against the spread of one measured row
    noise = prior * max(predictor.pooled_sigma_log, 0.05)
    for g, members in by_group.items():
        cls = compute_class(members[0].compute_unit)
        if cls not in out.weights:
            raise PredictorError(
                f"group {g!r} runs on {cls}, and the predictor has no {cls} costs; refit with "
                "`swiftnas latency fit` including these measurements"
            )
        feats = [cache.get(m.ref, m.input_resolution)
                 for m in members]
        cost = np.array([out.cost(f, cls, fallback=m.fallback)
                         for f, m in zip(feats, members, strict=True)])
        log_y = np.log([m.latency_ms for m in members])
        log_fb = out.fallback_log_effect * np.array([m.fallback for m in members], dtype=float)
        # a measured family's own correction applies in the new group too, as in prediction
        log_fb += np.array([out.family_correction(f, g, cls, out.measurement_family(m))
                            for f, m in zip(feats, members, strict=True)])
        belief = offset_prior(predictor, cls, exclude=by_group) if prior > 0 else None

        def resid(p: np.ndarray, cost: np.ndarray = cost, log_y: np.ndarray = log_y,
                  log_fb: np.ndarray = log_fb,
                  belief: tuple[float, float] | None = belief) -> np.ndarray:
            offset = math.exp(p[1]) if len(p) > 1 else 0.0
            r = np.log(math.exp(p[0]) * cost + offset) + log_fb - log_y
            if belief is None:
                return r
            mean, spread = belief
            return np.append(r, (p[1] - mean) * noise / max(spread, 1e-3))

        if belief is not None:
            p0 = np.array([0.0, belief[0]])
        else:
            p0 = np.array([0.0, -2.0]) if len(members) >= 2 else np.array([0.0])
        sol = optimize.least_squares(resid, p0)
        out.groups[g] = GroupCalibration(
            scale=float(math.exp(sol.x[0])),
            offset_ms=float(math.exp(sol.x[1])) if len(sol.x) > 1 else 0.0,
            compute_class=cls, rows=len(members),
            families=len({m.family_name for m in members}))
    return out
