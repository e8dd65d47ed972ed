"""Accuracy metrics of latency predictions: MAPE, share within +-10/20%, RMSE, rank correlation.

Metrics are reported per measurement group and overall. Rank correlations only mean something
inside one group (absolute numbers differ between protocols), so the overall rank figure is the
mean of per-group Spearman / Kendall over groups with at least ``MIN_RANK_ROWS`` predicted rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .measurements import Measurement

MIN_RANK_ROWS = 5


def _metrics(measured: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    rel = np.abs(predicted - measured) / measured
    out: dict[str, Any] = {
        "rows": len(measured),
        "mape": float(100 * rel.mean()),
        "within_10": float(100 * (rel <= 0.10).mean()),
        "within_20": float(100 * (rel <= 0.20).mean()),
        "rmse_ms": float(np.sqrt(np.mean((predicted - measured) ** 2))),
        "spearman": None,
        "kendall": None,
    }
    if len(measured) >= 3 and np.ptp(measured) > 0 and np.ptp(predicted) > 0:
        from scipy import stats  # lazy: scipy costs ~0.3 s of every CLI start-up

        out["spearman"] = float(stats.spearmanr(measured, predicted).statistic)
        out["kendall"] = float(stats.kendalltau(measured, predicted).statistic)
    return out


def evaluate_rows(rows: Sequence[Measurement], predicted: Sequence[float | None],
                  *, groups: Sequence[str] | None = None) -> dict[str, Any]:
    """Metrics over rows with a prediction (others are counted as ``unpredicted``)."""
    keep = [i for i, p in enumerate(predicted) if p is not None and math.isfinite(p)
            and (groups is None or rows[i].group in groups)]
    unpredicted = sum(1 for i, p in enumerate(predicted) if p is None
                      and (groups is None or rows[i].group in groups))
    if not keep:
        return {"overall": None, "groups": {}, "unpredicted": unpredicted}
    y = np.array([rows[i].latency_ms for i in keep])
    p = np.array([predicted[i] for i in keep], dtype=float)
    per_group: dict[str, Any] = {}
    for g in sorted({rows[i].group for i in keep}):
        idx = [k for k, i in enumerate(keep) if rows[i].group == g]
        per_group[g] = _metrics(y[idx], p[idx])
    overall = _metrics(y, p)
    ranked = [m for m in per_group.values() if m["rows"] >= MIN_RANK_ROWS and m["spearman"]
              is not None]
    overall["spearman"] = float(np.mean([m["spearman"] for m in ranked])) if ranked else None
    overall["kendall"] = float(np.mean([m["kendall"] for m in ranked])) if ranked else None
    overall["rank_groups"] = len(ranked)
    fallback = [k for k, i in enumerate(keep) if rows[i].fallback]
    clean = None
    if len(fallback) < len(keep):  # error metrics only: pooled ranks mix protocols
        clean = _metrics(np.delete(y, fallback), np.delete(p, fallback))
        clean["spearman"] = clean["kendall"] = None
    return {
        "overall": overall,
        "without_fallback_rows": clean,
        "groups": per_group,
        "unpredicted": unpredicted,
    }


# Which calibration rows speak for each token mixer's price. Additive attention is SwiftFormer's
# own. Multi-head softmax self-attention: the families built on it (a list, because a fused
# attention op hides its softmax from the features, and ReLU linear attention such as
# EfficientViT's has the same products), counting only the rows whose model has attention
# products (FastViT-T8 has none). No measured family uses separable attention.
SEARCH_FAMILY_MIXER = ("SwiftFormer", "additive")
MHSA_FAMILIES = ("DeiT", "PiT", "ViT", "EfficientFormer", "EfficientFormerV2", "MobileViT",
                 "FastViT")


def mixer_of_row(m: Measurement, features: Any) -> str | None:
    """The token mixer a calibration row measures: "additive" (SwiftFormer), "mhsa" (a
    self-attention family's model with attention products), or None."""
    if m.family_name == SEARCH_FAMILY_MIXER[0]:
        return SEARCH_FAMILY_MIXER[1]
    attention = features.values.get("matmul.macs", 0.0) > 0
    return "mhsa" if m.family_name in MHSA_FAMILIES and attention else None


def lofo_by_mixer(rows: Sequence[Measurement], predicted: Sequence[float | None],
                  features: Sequence[Any]) -> dict[str, Any]:
    """Leave-one-family-out metrics (``predicted``: each row's held-out prediction) over the
    rows that measure each mixer, plus the families they come from. "separable" has none."""
    out: dict[str, Any] = {}
    for mixer in ("additive", "mhsa", "separable"):
        idx = [i for i, (m, f) in enumerate(zip(rows, features, strict=True))
               if mixer_of_row(m, f) == mixer and predicted[i] is not None]
        if not idx:
            out[mixer] = None
            continue
        measured = np.array([rows[i].latency_ms for i in idx])
        pred = np.array([float(predicted[i]) for i in idx])  # type: ignore[arg-type]
        out[mixer] = {**_metrics(measured, pred),
                      "families": sorted({rows[i].family_name for i in idx}),
                      "median_ape": float(100 * np.median(np.abs(pred - measured) / measured))}
    return out
