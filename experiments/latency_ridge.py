"""Hyper-parameter (issue #15): the ridge strength of the shipped method, chosen by LOFO.

    python -m experiments.latency_ridge [RIDGE ...]   # -> results/latency_ridge.jsonl

The ridge pulls each op category's cost per MAC, per byte and per op towards one shared cost per
measure. 0.3 was chosen by cross-validation on an earlier calibration file; this refits the
shipped method on today's file for each strength and scores it like ``latency_roofline.py``
(leave-one-family-out, headline groups and all groups). The strength is chosen by the all-groups
LOFO MAPE; the SwiftFormer presets are reported but choose nothing. Resumable: strengths already
in the results file are skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "latency_ridge.jsonl"
CV_DIR = ROOT / "benchmarks" / "work" / "ridge_cv"
RIDGES = (0.1, 0.2, 0.3, 0.5, 1.0)


def main(ridges: list[float]) -> None:
    from experiments.latency_roofline import run_variants

    records = run_variants({f"ridge {r:g}": {"ridge": r} for r in ridges}, out=OUT, cv_dir=CV_DIR)
    best = min(records.values(), key=lambda r: r["all_groups_mape"])
    print(f"chosen by all-groups LOFO MAPE: {best['variant']}")


if __name__ == "__main__":
    main([float(r) for r in sys.argv[1:]] or list(RIDGES))
