"""Experiment (issue #15): does a roofline-shaped per-op cost predict Core ML latency better?

    python -m experiments.latency_roofline [VARIANT ...]   # -> results/latency_roofline.jsonl

For every traced op, ``roof{I} = max(macs / I, act_bytes + weight_bytes)``: the op's time under
a roofline with ridge point ``I`` MACs per byte, in units of bytes moved (``max(macs / T,
bytes / B) = max(macs / I, bytes) / B`` with ``I = T / B``). Summed per op category it is
linear in the per-category costs the predictor learns (1 / B per category), so it enters the
shipped model as one more measure, with ``I`` a fixed hyper-parameter. Variants:

- ``base``: today's measures (macs, act_bytes, count, plus total weight bytes), refitted on
  the 467-row calibration file;
- ``roof{I}+count+wb``: roofline and op count (plus total weight bytes) instead;
- ``roof{I}+count``: the same without the weight-bytes term;
- ``base+roof{I}``: today's measures plus the roofline one;
- ``padded``: today's measures with activation bytes counted as the Neural Engine stores them:
  every tensor's last axis padded to 64 bytes (Apple, "Deploying Transformers on the Apple
  Neural Engine", 2022). A 7 x 7 feature map then moves 32 / 7 times its bytes, a (1, N, 48)
  token tensor 64 / 48;
- ``fused``: today's measures with the bytes and count of ops that Core ML fuses into the op
  before them left out (``fbytes``, ``fcount``): an activation, batch norm or elementwise op
  whose input comes straight from a convolution, linear, or another fused op (conv + BN + ReLU
  + residual add is one Neural Engine op). Its MACs stay.

Each is scored like ``latency_accuracy.py fit-default`` (leave-one-family-out, headline groups)
and on the SwiftFormer presets on iPhone 14 (published numbers used only to score). The
roofline measure is added by patching the op recorder in this process only; features go to
their own cache (``benchmarks/work/roofline_features.json``). Resumable: finished variants are
skipped. Each variant's per-row leave-one-family-out predictions go to
``benchmarks/work/roofline_cv/VARIANT.json`` (for ensembles: ``latency_ensemble.py``); a variant
without that file is fitted again and its line replaced.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import latency_models.features as ft
import latency_models.featureset as fs
import latency_models.predictor as pr
import search_spaces  # noqa: F401  (before timm)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "latency_roofline.jsonl"
CACHE = ROOT / "benchmarks" / "work" / "roofline_features_v3.json"
CV_DIR = ROOT / "benchmarks" / "work" / "roofline_cv"
RIDGE_POINTS = (4, 16, 64, 256)
ANE_ROW_ELEMENTS = 32  # the Neural Engine pads a buffer's last axis to 64 bytes (32 FP16 values)


FUSE_HEADS = frozenset({"conv", "depthwise", "pointwise", "grouped", "linear"})
FUSABLE = frozenset({"activation", "batchnorm", "elementwise"})



def patch_predictor(name: str, value: Any) -> None:
    """Replace ``name`` in every module of ``latency_models.predictor`` that has it (the
    package re-exports its modules' names, and each module looks names up in its own)."""
    from latency_models.predictor import artifact, calibrate, fit, solve

    for module in (pr, artifact, solve, fit, calibrate):
        if hasattr(module, name):
            setattr(module, name, value)

def _padded_numel(t: ft.torch.Tensor) -> int:
    if t.dim() == 0:
        return 1
    last = -(-t.shape[-1] // ANE_ROW_ELEMENTS) * ANE_ROW_ELEMENTS
    return ft.math.prod(t.shape[:-1]) * last


def _add_roofline_measure() -> None:
    fs.MEASURES = (*fs.MEASURES, *(f"roof{i}" for i in RIDGE_POINTS), "fbytes", "fcount",
                   "pbytes")
    ft.MEASURES = fs.MEASURES
    record = ft._OpRecorder.__torch_dispatch__

    def dispatch(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        before = dict(self.totals)
        out = record(self, func, types, args, kwargs)
        if not hasattr(self, "_fused_into"):
            self._fused_into = set()  # ids of tensors that end a fusable chain
        inputs = [a for a in ft.tree_flatten((args, kwargs or {}))[0]
                  if isinstance(a, ft.torch.Tensor) and id(a) not in self._constant_ids]
        outputs = [o for o in ft.tree_flatten(out)[0] if isinstance(o, ft.torch.Tensor)]
        counted = [c for c in fs.CATEGORIES
                   if self.totals[f"{c}.count"] != before[f"{c}.count"]]
        if (not counted or counted[0] == "reshape") and any(
                id(a) in self._fused_into for a in inputs):  # views pass a chain on
            for o in outputs:
                self._fused_into.add(id(o))
                self._keep.append(o)
        for c in counted:  # the recorder adds each op to one category, or to none
            op = {m: self.totals[f"{c}.{m}"] - before[f"{c}.{m}"]
                  for m in ("macs", "act_bytes", "weight_bytes")}
            for i in RIDGE_POINTS:
                self.totals[f"{c}.roof{i}"] += max(op["macs"] / i,
                                                   op["act_bytes"] + op["weight_bytes"])
            self.totals[f"{c}.pbytes"] += fs.BYTES_PER_ELEMENT * sum(
                _padded_numel(t) for t in [*inputs, *outputs[:1]])
            fused = c in FUSABLE and any(id(a) in self._fused_into for a in inputs)
            if not fused:
                self.totals[f"{c}.fbytes"] += op["act_bytes"]
                self.totals[f"{c}.fcount"] += 1
            if c in FUSE_HEADS or fused:
                for o in outputs:
                    self._fused_into.add(id(o))
                    self._keep.append(o)
        return out

    ft._OpRecorder.__torch_dispatch__ = dispatch  # type: ignore[method-assign]


def variants() -> list[tuple[str, tuple[str, ...], bool]]:
    out = [("base", ("macs", "act_bytes", "count"), True)]
    for i in RIDGE_POINTS:
        out += [(f"roof{i}+count+wb", (f"roof{i}", "count"), True),
                (f"roof{i}+count", (f"roof{i}", "count"), False),
                (f"base+roof{i}", ("macs", "act_bytes", f"roof{i}", "count"), True)]
    return [*out, ("fused", ("macs", "fbytes", "fcount"), True),
            ("padded", ("macs", "pbytes", "count"), True)]


def fit_and_record(name: str, rows: list[Any], cache: Any, *, out: Path, cv_dir: Path,
                   **fit_options: Any) -> dict[str, Any]:
    """Fit the shipped method on ``rows`` with ``cache``'s features, score it (leave-one-family-
    out on the headline groups, all groups, and the SwiftFormer presets on iPhone 14), replace
    ``name``'s line in ``out`` and write its per-row LOFO predictions to ``cv_dir/name.json``.
    ``fit_options`` go to ``fit_predictor`` (``ridge``)."""
    from benchmarks.latency_accuracy import PUBLISHED_SWIFTFORMER_IPHONE14_MS, headline_groups
    from latency_models import evaluate_rows, fit_predictor
    from search_spaces import get_preset

    t = time.perf_counter()
    res = fit_predictor(rows, cache=cache, version="experiment", **fit_options)
    head = evaluate_rows(res.rows, res.cv_predictions, groups=headline_groups(res.rows))["overall"]
    presets, preset_ms = {}, {}
    for preset, published in PUBLISHED_SWIFTFORMER_IPHONE14_MS.items():
        p = res.predictor.predict(device="iPhone 14", model=get_preset(preset),
                                  source="SwiftFormer", cache=cache)
        presets[preset] = round(100 * (p.latency_ms - published) / published, 1)
        preset_ms[preset] = p.latency_ms
    record = {"variant": name, "headline_mape": round(head["mape"], 2),
              "headline_within_20": round(head["within_20"], 1),
              "headline_spearman": round(head["spearman"], 3),
              "all_groups_mape": round(res.predictor.metrics["overall"]["mape"], 2),
              "swiftformer_error_pct": presets, "swiftformer_ms": preset_ms,
              "seconds": round(time.perf_counter() - t)}
    print(record, flush=True)
    cv_dir.mkdir(parents=True, exist_ok=True)
    (cv_dir / f"{name}.json").write_text(json.dumps([
        {"model": m.model, "timm_name": m.timm_name, "group": m.group,
         "family": m.family_name, "fallback": m.fallback, "latency_ms": m.latency_ms,
         "cv_ms": cv} for m, cv in zip(res.rows, res.cv_predictions, strict=True)]))
    lines = [line for line in (out.read_text().splitlines() if out.exists() else [])
             if json.loads(line)["variant"] != name] + [json.dumps(record)]
    out.write_text("\n".join(lines) + "\n")
    return record


def run_variants(variants: dict[str, dict[str, Any]], *, out: Path, cv_dir: Path,
                 cache: Any = None) -> dict[str, dict[str, Any]]:
    """``fit_and_record`` each variant (name -> ``fit_predictor`` options) not yet in ``out``,
    on the shipped calibration file; returns every record in ``out`` by name. Features come
    from ``cache`` (a ``FeatureCache`` of its own, saved after each fit, for variants that trace
    differently) or else the shipped calibration features."""
    from latency_models import FeatureCache, calibration_csv, read_measurements
    from latency_models.defaults import CALIBRATION_FEATURES_PATH

    own_cache = cache is not None
    cache = cache if own_cache else FeatureCache(preload=CALIBRATION_FEATURES_PATH)
    rows = read_measurements(calibration_csv())
    done = {json.loads(line)["variant"] for line in
            (out.read_text().splitlines() if out.exists() else [])}
    for name, fit_options in variants.items():
        if name not in done:
            fit_and_record(name, rows, cache, out=out, cv_dir=cv_dir, **fit_options)
            if own_cache:
                cache.save()
    return {r["variant"]: r for r in map(json.loads, out.read_text().splitlines())}


def main() -> None:
    _add_roofline_measure()
    from latency_models import FeatureCache, calibration_csv
    from latency_models.measurements import read_measurements

    CACHE.parent.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache(CACHE)
    rows = read_measurements(calibration_csv())
    recorded = [json.loads(line)["variant"] for line in
                (OUT.read_text().splitlines() if OUT.exists() else [])]
    done = {v for v in recorded if (CV_DIR / f"{v}.json").exists()}
    for name, measures, weight_bytes in variants():
        if name in done or (sys.argv[1:] and name not in sys.argv[1:]):
            continue
        patch_predictor("MODEL_MEASURES", measures)
        patch_predictor("model_feature_names", lambda m=measures, w=weight_bytes: (
            [f"{c}.{x}" for c in fs.CATEGORIES for x in m] + (["weight_bytes"] if w else [])))
        fit_and_record(name, rows, cache, out=OUT, cv_dir=CV_DIR)
        cache.save()

if __name__ == "__main__":
    main()
