"""Experiment (issue #15): charge a linear layer as the 1x1 convolution it is on the Neural Engine.

    python -m experiments.latency_linear [VARIANT ...]   # -> results/latency_fitopts.jsonl

v2.3 learns a cost per byte for ``linear`` about twelve times that of ``pointwise`` (a 1x1
convolution), from the rows where linears are common: DeiT, MobileViT, EfficientFormer. The
Core ML converter lowers a linear on (batch, tokens, channels) to the same Neural Engine
matrix engine as a 1x1 convolution, so the gap may be attention's cost (softmax, N x N products,
LayerNorm) landing on the linears beside it. That is what over-charges SwiftFormer, whose additive
attention runs its linears on token tensors (its XS preset: 0.10 of its 0.63 cost units).
Variants, scored like ``latency_fitopts.py`` (rule, written before the runs: lower all-groups
LOFO MAPE than v2.3's strict 20.52%, with the headline Spearman kept at 0.93 or above):

- ``linear as pointwise``: every linear's MACs, bytes and op count added to ``pointwise``;
- ``linear as pointwise, attention``: the same, with the token x token products in a category
  of their own (``latency_attention.py``'s tracing and feature cache), so that attention, not
  the linears, can carry a transformer's extra cost.

Without arguments both run. Resumable: a recorded variant is not refitted.

Result (v2.3's calibration pull, so against 20.52%): both worse. ``linear as pointwise``: all
groups 21.16%, headline 16.66%, Spearman 0.928; ``linear as pointwise, attention``: 22.88%,
17.24%, 0.916. They bring the SwiftFormer presets 6 points closer (XS +24%, S +22%, L1 +9%, L3
-4%), which chooses nothing: on the families the model has seen, linears do cost more per byte
than 1x1 convolutions, or something beside them does that the features cannot tell apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import latency_models.predictor as pr
import search_spaces  # noqa: F401  (before timm)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "latency_fitopts.jsonl"
CV_DIR = ROOT / "benchmarks" / "work" / "fitopts_cv"


def _merge_linear_into_pointwise() -> None:
    plain = pr.feature_row

    def merged(features, names):  # type: ignore[no-untyped-def]
        row = plain(features, names)
        for i, n in enumerate(names):
            if n.startswith("pointwise."):
                row[i] += features.values["linear." + n.split(".", 1)[1]]
            elif n.startswith("linear."):
                row[i] = 0.0  # an all-zero feature is dropped by the fit
        return np.asarray(row)

    from experiments.latency_roofline import patch_predictor

    patch_predictor("feature_row", merged)


def main(names: list[str]) -> None:
    from experiments.latency_roofline import run_variants
    from latency_models import FeatureCache

    _merge_linear_into_pointwise()
    if "linear as pointwise" in names:
        run_variants({"linear as pointwise": {}}, out=OUT, cv_dir=CV_DIR)
    if "linear as pointwise, attention" in names:  # last: it retraces with a new category
        import latency_attention

        latency_attention._add_attention_category()
        run_variants({"linear as pointwise, attention": {}}, out=OUT, cv_dir=CV_DIR,
                     cache=FeatureCache(latency_attention.CACHE))


if __name__ == "__main__":
    main(sys.argv[1:] or ["linear as pointwise", "linear as pointwise, attention"])
