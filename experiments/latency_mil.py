"""Experiment (issue #15): latency features counted on Core ML's MIL program, not on ATen ops.

    python -m experiments.latency_mil extract        # convert every calibration model (resumable)
    python -m experiments.latency_mil fit [VARIANT]  # -> results/latency_mil.jsonl
    python -m experiments.latency_mil compare        # per-model op counts, ATen against MIL

Each calibration model (and each SwiftFormer preset, to score) is exported with ``torch.export``
and converted by coremltools to an ML Program in FP16 for iOS 16, stopped at the MIL program
after the default pass pipeline (``convert_to="milinternal"``, works on Linux). That is what the
Neural Engine compiler receives: batch norms folded into convolutions, ``nn.Linear`` on 4-D
tensors as ``linear`` or ``conv``, normalisations expanded into their elementwise passes,
transposes Core ML inserts or removes. Every remaining op adds to the same categories and
measures as the ATen features (:mod:`latency_models.featureset`): MACs, activation bytes
(non-constant inputs plus outputs, FP16), weight bytes (constant inputs) and op count. ``const``,
``cast`` (FP16 at the model's edges), ``squeeze`` and ``expand_dims`` are free, as their ATen
counterparts are.

Features go to ``benchmarks/work/mil_features.json`` (the FeatureCache format, so the shipped
fit and leave-one-family-out code run on them unchanged), with conversion seconds per model in
``benchmarks/work/mil_seconds.json``. Variants, scored like ``latency_roofline.py``:

- ``mil``: every measure from the MIL program;
- ``aten+milcount``: ATen MACs and bytes (today's), MIL op counts;
- ``aten``: today's features (the baseline, same run).

Measured first with v2's fit (ridge 0.3, loss scale 0.3): MIL 22.44% against ATen 22.43% on all
groups. Re-measured with v2.4's fit (the ``(v2.4 fit)`` records), because the loss, the ridge and
the calibration pull have changed which rows the costs are learned from: MIL 24.02% against
ATen 19.43% (headline 16.17 / 15.99%), MIL op counts on ATen MACs and bytes 19.49%. Not adopted.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import search_spaces  # noqa: F401  (before timm)
from latency_models.featureset import (
    BYTES_PER_ELEMENT,
    CATEGORIES,
    FEATURE_SET_VERSION,
    MEASURES,
    LatencyFeatures,
)

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work"
MIL_CACHE = WORK / "mil_features.json"
SECONDS = WORK / "mil_seconds.json"
OUT = ROOT / "benchmarks" / "results" / "latency_mil.jsonl"
CV_DIR = WORK / "mil_cv"

_MIL_OPS: dict[str, str] = {}
for _cat, _names in {
    "linear": ("linear",),
    "matmul": ("matmul", "einsum"),
    "norm": ("layer_norm", "instance_norm", "l2_norm", "local_response_norm"),
    "batchnorm": ("batch_norm",),
    "activation": ("relu", "relu6", "gelu", "silu", "sigmoid", "sigmoid_hard", "tanh", "erf",
                   "clip", "leaky_relu", "elu", "softplus", "thresholded_relu", "prelu",
                   "scaled_tanh", "softsign", "linear_activation", "clamped_relu"),
    "softmax": ("softmax",),
    "reduce": ("reduce_mean", "reduce_sum", "reduce_max", "reduce_min", "reduce_l2_norm",
               "reduce_l1_norm", "reduce_prod", "reduce_argmax", "reduce_sum_square",
               "reduce_log_sum", "reduce_log_sum_exp", "cumsum"),
    "pool": ("avg_pool", "max_pool", "l2_pool", "upsample_nearest_neighbor",
             "upsample_bilinear", "resize_bilinear", "resize", "pixel_shuffle",
             "pixel_unshuffle", "space_to_depth", "depth_to_space", "crop_resize"),
    "reshape": ("reshape",),
    "transpose": ("transpose",),
    "copy": ("concat", "slice_by_index", "slice_by_size", "gather", "gather_nd",
             "gather_along_axis", "pad", "tile", "split", "stack", "reverse", "band_part",
             "scatter", "scatter_nd", "sliding_windows"),
}.items():
    for _name in _names:
        _MIL_OPS[_name] = _cat
_MIL_FREE = frozenset({"const", "cast", "squeeze", "expand_dims", "identity", "shape"})


def _numel(var: Any) -> int:
    return math.prod(int(s) for s in var.shape) if var.shape else 1


def _is_const(var: Any) -> bool:
    return var.op is None or var.op.op_type == "const" or var.val is not None


def _operations(block: Any) -> Any:
    for op in block.operations:
        yield op
        for inner in getattr(op, "blocks", ()):
            yield from _operations(inner)


def _mil_category(op: Any) -> str:
    kind = op.op_type
    if kind in ("conv", "conv_transpose"):
        x, w = op.inputs["x"], op.inputs["weight"]
        groups = int(op.inputs["groups"].val) if "groups" in op.inputs else 1
        if groups > 1:
            return "depthwise" if groups == x.shape[1] and w.shape[1] == 1 else "grouped"
        return "pointwise" if all(int(k) == 1 for k in w.shape[2:]) else "conv"
    if kind == "matmul" and (_is_const(op.inputs["x"]) or _is_const(op.inputs["y"])):
        return "linear"
    return _MIL_OPS.get(kind, "elementwise")


def _mil_macs(op: Any, category: str) -> float:
    out = op.outputs[0]
    if category in ("conv", "depthwise", "pointwise", "grouped"):
        return float(_numel(out) * math.prod(int(s) for s in op.inputs["weight"].shape[1:]))
    if op.op_type == "linear":
        return float(_numel(out) * int(op.inputs["weight"].shape[-1]))
    if op.op_type == "matmul":
        x = op.inputs["x"]
        transpose_x = "transpose_x" in op.inputs and bool(op.inputs["transpose_x"].val)
        return float(_numel(out) * int(x.shape[-2] if transpose_x else x.shape[-1]))
    return 0.0


def program_features(prog: Any, resolution: int, params: int) -> tuple[LatencyFeatures,
                                                                         dict[str, int]]:
    """Features of a MIL program, and its op types with counts (free ops included)."""
    totals = {f"{c}.{m}": 0.0 for c in CATEGORIES for m in MEASURES}
    types: dict[str, int] = {}
    for op in _operations(prog.functions["main"]):
        types[op.op_type] = types.get(op.op_type, 0) + 1
        if op.op_type in _MIL_FREE:
            continue
        category = _mil_category(op)
        inputs = [v for v in op.inputs.values() if not isinstance(v, (list, tuple))]
        inputs += [v for vs in op.inputs.values() if isinstance(vs, (list, tuple)) for v in vs]
        weights = [v for v in inputs if _is_const(v)]
        acts = [v for v in inputs if not _is_const(v)]
        totals[f"{category}.macs"] += _mil_macs(op, category)
        totals[f"{category}.act_bytes"] += BYTES_PER_ELEMENT * (
            sum(_numel(v) for v in acts) + sum(_numel(o) for o in op.outputs))
        totals[f"{category}.weight_bytes"] += BYTES_PER_ELEMENT * sum(
            _numel(v) for v in weights if v.shape and _numel(v) > 16)  # not scalars or shapes
        totals[f"{category}.count"] += 1
    return LatencyFeatures(values=totals, resolution=resolution, params=params), types


def convert_to_mil(model: Any, resolution: int) -> Any:
    import torch

    from latency_models.coreml import _coremltools, export_program

    ct = _coremltools()
    example = torch.rand(1, 3, resolution, resolution)
    return ct.convert(export_program(model.eval(), example),
                      inputs=[ct.TensorType(name="image", shape=example.shape)],
                      convert_to="milinternal", minimum_deployment_target=ct.target.iOS16,
                      compute_precision=ct.precision.FLOAT16)


def _keys() -> list[tuple[str, str, Any, int]]:
    """(cache key, name, ArchConfig or None, resolution) of every calibration model + preset."""
    from latency_models import calibration_csv, read_measurements
    from latency_models.architectures import default_resolution
    from latency_models.predictor import usable
    from search_spaces import ModelRef, get_preset

    rows, _ = usable(read_measurements(calibration_csv()))
    out: dict[str, tuple[str, str, Any, int]] = {}
    for m in rows:
        res = m.input_resolution or (m.arch.resolution if m.arch else
                                     default_resolution(m.timm_name))
        key = f"{'arch:' if m.arch else ''}{m.ref.key}@{res}"
        out[key] = (key, m.timm_name or m.arch.key(), m.arch, res)
    for preset in ("xs", "s", "l1", "l3"):
        arch = get_preset(preset)
        key = f"arch:{ModelRef(arch=arch).key}@{arch.resolution}"
        out[key] = (key, preset, arch, arch.resolution)
    return sorted(out.values(), key=lambda k: k[0])


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def extract() -> None:
    import timm
    import torch
    from timm.utils.model import reparameterize_model

    from search_spaces import build_model
    from search_spaces.files import atomic_write_text

    cache = _load(MIL_CACHE) or {"version": FEATURE_SET_VERSION, "items": {}}
    seconds = _load(SECONDS)
    todo = [k for k in _keys() if k[0] not in cache["items"]]
    print(f"{len(todo)} models to convert", flush=True)
    for key, name, arch, res in todo:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = (build_model(arch) if arch is not None
                     else timm.create_model(name, pretrained=False))
            model = reparameterize_model(model.eval())
            params = sum(p.numel() for p in model.parameters())
            try:
                with torch.no_grad():
                    prog = convert_to_mil(model, res)
            except Exception as exc:  # recorded, not fatal: the report names what failed
                print(f"FAILED {key}: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                continue
        features, types = program_features(prog, res, params)
        seconds[key] = round(time.perf_counter() - t, 2)
        item = features.to_dict()
        item["mil_op_types"] = types
        cache["items"][key] = item
        atomic_write_text(MIL_CACHE, json.dumps(cache))
        atomic_write_text(SECONDS, json.dumps(seconds, indent=1))
        print(f"{key}: {seconds[key]} s, {int(features.total('count'))} ops", flush=True)


def compare() -> None:
    """ATen against MIL op counts per category, for a few models that tell the story."""
    aten = json.loads((ROOT / "latency_models" / "data" / "calibration_features.json")
                      .read_text())["items"]
    mil = _load(MIL_CACHE)["items"]
    for key in sorted(set(aten) & set(mil)):
        a, m = aten[key]["values"], mil[key]["values"]
        cats = [c for c in CATEGORIES if a[f"{c}.count"] or m[f"{c}.count"]]
        print(key, " ".join(f"{c}:{int(a[f'{c}.count'])}/{int(m[f'{c}.count'])}" for c in cats))


def fit(selected: list[str]) -> None:
    from experiments.latency_roofline import fit_and_record
    from latency_models import FeatureCache, calibration_csv, read_measurements
    from latency_models.defaults import CALIBRATION_FEATURES_PATH

    aten = FeatureCache(preload=CALIBRATION_FEATURES_PATH)
    mil_items = {k: LatencyFeatures.from_dict(v) for k, v in _load(MIL_CACHE)["items"].items()}
    keys = _keys()
    missing = [k for k, *_ in keys if k not in mil_items]
    if missing:
        raise SystemExit(f"no MIL features for {len(missing)} models (run extract): {missing}")
    aten_items = {k: aten.get(arch if arch else name, res) for k, name, arch, res in keys}

    def with_mil_counts(f: LatencyFeatures, k: str) -> LatencyFeatures:
        values = dict(f.values) | {f"{c}.count": mil_items[k].values[f"{c}.count"]
                                   for c in CATEGORIES}
        return LatencyFeatures(values=values, resolution=f.resolution, params=f.params)

    # named for the fit they ran with: the records without a suffix were measured with v2's
    # (ridge 0.3, loss scale 0.3, code since changed); the shipped fit is v2.4's
    fit_name = " (v2.4 fit)"
    variants = {"aten" + fit_name: aten_items, "mil" + fit_name: mil_items,
                "aten+milcount" + fit_name: {k: with_mil_counts(f, k)
                                             for k, f in aten_items.items()}}
    rows = read_measurements(calibration_csv())
    done = {json.loads(line)["variant"] for line in
            (OUT.read_text().splitlines() if OUT.exists() else [])}
    for name, items in variants.items():
        if (selected and name not in selected) or (not selected and name in done):
            continue
        cache = FeatureCache()
        cache._items.update(items)  # every model's features from this variant, none traced
        fit_and_record(name, rows, cache, out=OUT, cv_dir=CV_DIR)


def main() -> None:
    command, *rest = sys.argv[1:] or ["extract"]
    {"extract": extract, "compare": compare, "fit": lambda: fit(rest)}[command]()


if __name__ == "__main__":
    main()
