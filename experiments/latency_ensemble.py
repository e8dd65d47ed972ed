"""Experiment (issue #15): does averaging two latency models beat either alone?

    python -m experiments.latency_ensemble A B     # two variants of latency_roofline.py

Reads each variant's leave-one-family-out predictions (``benchmarks/work/roofline_cv/``,
written by ``latency_roofline.py``) and scores their weighted geometric mean
``exp(w log a + (1 - w) log b)`` for w in 0, 0.1, ..., 1 on the same protocol as
``latency_accuracy.py fit-default`` (headline groups, and all groups). The weight is chosen by
the all-groups LOFO MAPE, on the calibration set only; the SwiftFormer presets (published
numbers, scoring only) are reported for every weight but choose nothing. Because the weight is
picked on the same out-of-fold predictions it is scored on, the chosen row is slightly
optimistic (one parameter for 165 rows).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CV_DIR = ROOT / "benchmarks" / "work" / "roofline_cv"
VARIANTS = ROOT / "benchmarks" / "results" / "latency_roofline.jsonl"
OUT = ROOT / "benchmarks" / "results" / "latency_ensemble.jsonl"


def main(a: str, b: str) -> None:
    from benchmarks.latency_accuracy import PUBLISHED_SWIFTFORMER_IPHONE14_MS, headline_groups
    from latency_models import calibration_csv, evaluate_rows
    from latency_models.measurements import read_measurements
    from latency_models.predictor import usable

    rows, _ = usable(read_measurements(calibration_csv()))
    cv = {v: json.loads((CV_DIR / f"{v}.json").read_text()) for v in (a, b)}
    for v, recs in cv.items():
        if [r["model"] for r in recs] != [m.model for m in rows]:
            raise SystemExit(f"{v}: its predictions are for another calibration file; refit it")
    records = [json.loads(line) for line in VARIANTS.read_text().splitlines()]
    presets = {r["variant"]: r.get("swiftformer_ms") for r in records}
    head = headline_groups(rows)
    results = []
    for w in np.round(np.linspace(0, 1, 11), 2):
        pred = [None if ra["cv_ms"] is None or rb["cv_ms"] is None else
                float(np.exp(w * np.log(ra["cv_ms"]) + (1 - w) * np.log(rb["cv_ms"])))
                for ra, rb in zip(cv[a], cv[b], strict=True)]
        h = evaluate_rows(rows, pred, groups=head)["overall"]
        al = evaluate_rows(rows, pred)["overall"]
        sf = {p: round(100 * (float(np.exp(w * np.log(presets[a][p]) + (1 - w) * np.log(
            presets[b][p]))) - ms) / ms, 1) for p, ms in PUBLISHED_SWIFTFORMER_IPHONE14_MS.items()}
        results.append({"a": a, "b": b, "weight_a": float(w),
                        "headline_mape": round(h["mape"], 2),
                        "headline_within_20": round(h["within_20"], 1),
                        "headline_spearman": round(h["spearman"], 3),
                        "all_groups_mape": round(al["mape"], 2),
                        "all_groups_within_20": round(al["within_20"], 1),
                        "swiftformer_error_pct": sf})
        print(results[-1])
    best = min(results, key=lambda r: r["all_groups_mape"])
    print("chosen by all-groups LOFO MAPE:", best)
    with OUT.open("a") as f:
        f.write(json.dumps({"chosen": best, "grid": results}) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
