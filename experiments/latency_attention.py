"""Experiment (issue #15): does a category of its own for token-mixing attention help?

    python -m experiments.latency_attention     # -> results/latency_fitopts.jsonl, "attention"

DeiT's cost on the Neural Engine is said to be dominated by N x N attention (matrix products
between two activations, softmax), SwiftFormer's additive attention has none, and LOFO under-
predicts DeiT (-42%) and EfficientViT (-47%) while over-predicting SwiftFormer XS/S (+30/+28%).
Today an activation-activation product falls into ``matmul`` whatever its shape. This variant
moves the products that build or consume a token x token matrix (the last two axes of an operand
or of the result equal and at least 49 long: 7 x 7 tokens; a fused scaled-dot-product attention
always) into a new category ``attention``, which gets its own scale and so, under the ridge, its
own cost per MAC, byte and op (as ``softmax`` has). Linear attention (EfficientViT's K^T V,
head-dim square) stays in ``matmul``. Scored like ``latency_fitopts.py`` (the rule: lower
all-groups LOFO MAPE than v2.3's strict 20.52%), after retracing every calibration model into
``benchmarks/work/attention_features.json``. Resumable: a recorded variant is not refitted.
Result: worse (all groups 22.47%, headline 17.41%, within ±20% 70.0%, Spearman 0.922; the
SwiftFormer presets unchanged): not adopted.
"""

from __future__ import annotations

from pathlib import Path

import latency_models.features as ft
import latency_models.featureset as fs
import search_spaces  # noqa: F401  (before timm)

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / "work" / "attention_features.json"
OUT = ROOT / "benchmarks" / "results" / "latency_fitopts.jsonl"
CV_DIR = ROOT / "benchmarks" / "work" / "fitopts_cv"
MIN_TOKENS = 49
FUSED = {"_scaled_dot_product_flash_attention_for_cpu", "scaled_dot_product_attention",
         "_scaled_dot_product_efficient_attention", "_scaled_dot_product_attention_math"}


def _token_square(t: ft.torch.Tensor) -> bool:
    return t.dim() >= 2 and t.shape[-1] == t.shape[-2] and t.shape[-1] >= MIN_TOKENS


def _add_attention_category() -> None:
    fs.CATEGORIES = (*fs.CATEGORIES, "attention")
    ft.CATEGORIES = fs.CATEGORIES
    from experiments.latency_roofline import patch_predictor

    patch_predictor("CATEGORIES", fs.CATEGORIES)
    record = ft._OpRecorder.__torch_dispatch__

    def dispatch(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        before = dict(self.totals)
        out = record(self, func, types, args, kwargs)
        if self.totals["matmul.count"] == before["matmul.count"]:
            return out
        tensors = [t for t in ft.tree_flatten((args, kwargs or {}, out))[0]
                   if isinstance(t, ft.torch.Tensor)]
        if func.overloadpacket.__name__ in FUSED or any(_token_square(t) for t in tensors):
            for m in fs.MEASURES:
                moved = self.totals[f"matmul.{m}"] - before[f"matmul.{m}"]
                self.totals[f"matmul.{m}"] -= moved
                self.totals[f"attention.{m}"] = self.totals.get(f"attention.{m}", 0.0) + moved
        return out

    ft._OpRecorder.__torch_dispatch__ = dispatch  # type: ignore[method-assign]
    init = ft._OpRecorder.__init__

    def init_with(self, weights):  # type: ignore[no-untyped-def]
        init(self, weights)
        for m in fs.MEASURES:
            self.totals.setdefault(f"attention.{m}", 0.0)

    ft._OpRecorder.__init__ = init_with  # type: ignore[method-assign]


def main() -> None:
    _add_attention_category()
    from experiments.latency_roofline import run_variants
    from latency_models import FeatureCache

    CACHE.parent.mkdir(parents=True, exist_ok=True)
    run_variants({"attention": {}}, out=OUT, cv_dir=CV_DIR, cache=FeatureCache(CACHE))


if __name__ == "__main__":
    main()
