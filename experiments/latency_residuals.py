"""Experiment (issue #15): are the errors on unseen families predictable from their op mix?

    python -m experiments.latency_roofline base      # writes the shipped method's LOFO predictions
    python -m experiments.latency_residuals          # -> results/latency_residuals.jsonl

Stacking on the residual structure: a ridge regression predicts the log error of the shipped
method's leave-one-family-out prediction from 17 descriptors of the architecture's op mix (log
MACs, bytes, op count, weight bytes and arithmetic intensity; the share of activation bytes and
of ops in attention (matmul, softmax, norm), linear, layout (reshape, transpose, copy), dense
convolution, depthwise and elementwise categories; the compute class). It is scored with the same
families held out: the correction for a family is fitted on the other families' errors only.
(Those errors came from fits that saw the held-out family, a small leak in the correction's
favour.) Every ridge strength is reported; none is chosen by the SwiftFormer numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CV_FILE = ROOT / "benchmarks" / "work" / "roofline_cv" / "base.json"
OUT = ROOT / "benchmarks" / "results" / "latency_residuals.jsonl"
ALPHAS = (1, 10, 30, 100, 300, 1000, 3000)
SHARES = {"attention": ("matmul", "softmax", "norm"), "linear": ("linear",),
          "layout": ("reshape", "transpose", "copy"), "conv": ("conv", "pointwise", "grouped"),
          "depthwise": ("depthwise",),
          "elementwise": ("elementwise", "activation", "batchnorm", "reduce", "pool")}


def main() -> None:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from benchmarks.latency_accuracy import headline_groups
    from latency_models import FeatureCache, calibration_csv, evaluate_rows, read_measurements
    from latency_models.defaults import CALIBRATION_FEATURES_PATH
    from latency_models.predictor import compute_class, usable

    rows, _ = usable(read_measurements(calibration_csv()))
    cv = json.loads(CV_FILE.read_text())
    if [c["model"] for c in cv] != [m.model for m in rows]:
        raise SystemExit(f"{CV_FILE} is from another calibration file; rerun latency_roofline.py")
    cache = FeatureCache(preload=CALIBRATION_FEATURES_PATH)

    def descriptors(i: int) -> list[float]:
        m = rows[i]
        f = cache.get(m.ref, m.input_resolution)
        act, count = f.total("act_bytes"), f.total("count")
        out = [math.log(f.total("macs")), math.log(act), math.log(count),
               math.log(f.total("weight_bytes")), math.log(f.total("macs") / act)]
        for cats in SHARES.values():
            out.append(sum(f.values[f"{c}.act_bytes"] for c in cats) / act)
            out.append(sum(f.values[f"{c}.count"] for c in cats) / count)
        return out + [float(compute_class(m.compute_unit) == k) for k in ("ane", "gpu", "cpu")]

    keep = np.array([i for i, c in enumerate(cv) if c["cv_ms"] is not None])
    x = np.array([descriptors(i) for i in keep])
    y = np.array([math.log(rows[i].latency_ms / cv[i]["cv_ms"]) for i in keep])
    family = np.array([rows[i].family_name for i in keep])
    base = [c["cv_ms"] for c in cv]
    heads = headline_groups(rows)

    def score(predicted: list[float | None], alpha: float | None) -> dict[str, object]:
        head = evaluate_rows(rows, predicted, groups=heads)["overall"]
        return {"ridge_alpha": alpha, "headline_mape": round(head["mape"], 2),
                "headline_within_20": round(head["within_20"], 1),
                "headline_spearman": round(head["spearman"], 3),
                "all_groups_mape": round(evaluate_rows(rows, predicted)["overall"]["mape"], 2)}

    records = [score(base, None)]  # no correction: the shipped method
    for alpha in ALPHAS:
        corrected = list(base)
        for f in np.unique(family):
            held = family == f
            model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x[~held], y[~held])
            for i, r in zip(keep[held], model.predict(x[held]), strict=True):
                corrected[i] = base[i] * math.exp(r)
        records.append(score(corrected, alpha))
    OUT.write_text("".join(json.dumps(r) + "\n" for r in records))
    for r in records:
        print(r)


if __name__ == "__main__":
    main()
