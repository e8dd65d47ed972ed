"""Which of the calibration file's new rows move leave-one-family-out? (decision record:
docs/decisions/latency-v3-family-stage.md)

    python -m experiments.latency_v3_rows swiftformer-only   # the 467-row file + SwiftFormer's
    python -m experiments.latency_v3_rows drop SOURCE_PART   # all rows but one source's new ones

The shared stage alone (the family stage never changes LOFO), with cross-validation; prints the
all-groups metrics and those on the 165 rows v2.4 was scored on (the first 467 of the file).
A diagnosis only: the shipped fit keeps every row.
"""

from __future__ import annotations

import json
import sys

import search_spaces  # noqa: F401  (before timm)
from benchmarks.common import calibration_rows, feature_cache
from latency_models import (
    evaluate_rows,
)
from latency_models.predictor import fit_predictor

V24_ROWS = 467  # the data's third release appended its 46 rows after these


def main() -> None:
    import torch

    torch.set_num_threads(1)
    rows = calibration_rows()
    new = rows[V24_ROWS:]
    if sys.argv[1:2] == ["swiftformer-only"]:
        keep = [m for m in new if m.family == "SwiftFormer"]
    elif sys.argv[1:2] == ["drop"] and len(sys.argv) == 3:
        keep = [m for m in new if sys.argv[2] not in m.source]
    else:
        raise SystemExit(__doc__)
    cache = feature_cache()
    fit = fit_predictor(rows[:V24_ROWS] + keep, cache=cache, family_options=None,
                        own_interval_families=())
    n_old = sum(1 for m in rows[:V24_ROWS] if m.timm_name or m.arch)
    print(json.dumps({"args": sys.argv[1:], "all_groups": fit.predictor.metrics["overall"],
                      "v2.4_rows": evaluate_rows(fit.rows[:n_old],
                                                 fit.cv_predictions[:n_old])["overall"]}))


if __name__ == "__main__":
    main()
