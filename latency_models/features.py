"""Latency features of any ``nn.Module``: per-operation-type costs of one batch-1 forward pass.

The model runs once on PyTorch's ``meta`` device (shapes only, no arithmetic) under a
``TorchDispatchMode`` that sees every ATen operation with its input and output shapes. Each
operation falls into one category (dense conv, depthwise conv, pointwise conv, linear, matmul
between activations, normalisation, activation, elementwise, ...) and adds to that category's
multiply-accumulates, activation bytes moved (inputs + outputs, FP16 as Core ML runs it), weight
bytes and operation count. Because the features describe operations rather than architectures, a
predictor fitted on published timm models applies to SwiftFormer candidates it has never seen.

What Core ML folds away is left out: operations on weights only (``weight.t()``, attention-bias
lookups) are constant-folded by the converter, metadata-only views cost nothing, and batch norms
that follow a convolution fold into it (they are still counted, in their own category).
Reparameterisable models (MobileOne, FastViT, RepViT, ...) are measured in their deployed,
reparameterised form.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# Bump when categories, measures or op rules change: predictors record the version they were
# fitted with and refuse features of another version.
FEATURE_SET_VERSION = 1

BYTES_PER_ELEMENT = 2  # Core ML ML Programs run in FP16 on the Neural Engine

CATEGORIES: tuple[str, ...] = (
    "conv",  # dense k x k convolution (k > 1)
    "depthwise",  # groups == input channels
    "pointwise",  # 1 x 1 dense convolution
    "grouped",  # other grouped convolutions
    "linear",  # matrix product with a weight (nn.Linear)
    "matmul",  # matrix product between two activations (attention)
    "norm",  # layer / group / instance norm (runs at inference)
    "batchnorm",  # batch norm (usually folded into the preceding conv)
    "activation",  # relu, gelu, hardswish, sigmoid, silu, ...
    "softmax",
    "elementwise",  # add, mul, div, sub, sqrt, ...
    "reduce",  # mean, sum, amax, norm over an axis
    "pool",  # avg / max pooling, upsampling
    "reshape",  # view / reshape that changes the layout Core ML keeps (not free on the ANE)
    "transpose",  # permute / transpose: real data movement
    "copy",  # cat, clone, pad, index, slice copies
)
MEASURES: tuple[str, ...] = ("macs", "act_bytes", "weight_bytes", "count")

# ATen op families by category (overload packet names).
_OPS: dict[str, str] = {}
for _cat, _names in {
    "linear": ("mm", "addmm", "linear"),
    "matmul": ("bmm", "baddbmm", "_scaled_dot_product_flash_attention_for_cpu"),
    "norm": ("native_layer_norm", "native_group_norm", "layer_norm", "group_norm"),
    "batchnorm": ("native_batch_norm", "_native_batch_norm_legit_no_training", "batch_norm"),
    "activation": (
        "relu", "relu_", "relu6", "gelu", "gelu_", "hardswish", "hardswish_", "hardsigmoid",
        "hardsigmoid_", "sigmoid", "sigmoid_", "silu", "silu_", "tanh", "tanh_", "hardtanh",
        "hardtanh_", "leaky_relu", "leaky_relu_", "elu", "elu_", "mish", "mish_", "erf",
    ),
    "softmax": ("_softmax", "_safe_softmax", "softmax", "_log_softmax"),
    "elementwise": (
        "add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "sqrt", "rsqrt", "pow",
        "exp", "log", "neg", "abs", "clamp", "clamp_", "clamp_min", "clamp_max", "maximum",
        "minimum", "where", "reciprocal", "addcmul", "lerp", "sign", "floor", "round", "fill_",
        "masked_fill", "masked_fill_", "square",
    ),
    "reduce": ("mean", "sum", "amax", "amin", "max", "min", "linalg_vector_norm", "norm", "var",
               "std", "var_mean", "argmax", "prod", "cumsum"),
    "pool": ("avg_pool2d", "max_pool2d_with_indices", "max_pool2d", "adaptive_avg_pool2d",
             "_adaptive_avg_pool2d", "adaptive_max_pool2d", "upsample_nearest2d",
             "upsample_bilinear2d", "_upsample_bilinear2d_aa", "pixel_shuffle", "roll"),
    "reshape": ("view", "_unsafe_view", "reshape"),
    "transpose": ("permute", "transpose", "t", "_reshape_alias"),
    "copy": ("cat", "clone", "constant_pad_nd", "index", "index_select", "gather", "stack",
             "copy_", "contiguous", "repeat", "flip", "_to_copy", "slice_scatter"),
}.items():
    for _name in _names:
        _OPS.setdefault(_name, _cat)
# Metadata only: they never move data in Core ML's graph (or are consumed by the next op).
_FREE = frozenset({
    "alias", "expand", "unsqueeze", "squeeze", "split", "split_with_sizes", "unbind", "slice",
    "select", "detach", "as_strided", "empty", "empty_like", "zeros", "zeros_like", "ones",
    "ones_like", "full", "arange", "lift_fresh", "new_empty", "new_zeros", "scalar_tensor",
    "_local_scalar_dense", "empty_strided", "new_ones", "_assert_tensor_metadata", "sym_size",
    "dropout", "native_dropout",
})


class FeatureExtractionError(RuntimeError):
    """A model could not be traced for features (it says which model and why)."""


@dataclass(frozen=True)
class LatencyFeatures:
    """Per-category costs of one batch-1 forward pass at ``resolution``."""

    values: Mapping[str, float]  # "{category}.{measure}" -> value, every pair present
    resolution: int
    params: int
    version: int = FEATURE_SET_VERSION

    def vector(self) -> list[float]:
        return [self.values[name] for name in feature_names()]

    def total(self, measure: str) -> float:
        return sum(self.values[f"{cat}.{measure}"] for cat in CATEGORIES)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "resolution": self.resolution, "params": self.params,
                "values": dict(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyFeatures:
        return cls(values=dict(data["values"]), resolution=int(data["resolution"]),
                   params=int(data["params"]), version=int(data["version"]))


def feature_names() -> list[str]:
    return [f"{cat}.{measure}" for cat in CATEGORIES for measure in MEASURES]


def _numel(t: torch.Tensor) -> int:
    return math.prod(t.shape)


class _OpRecorder(TorchDispatchMode):
    """Adds every dispatched ATen op to its category. Weight-only ops are constant-folded."""

    def __init__(self, weights: list[torch.Tensor]) -> None:
        super().__init__()
        self.totals = {f"{c}.{m}": 0.0 for c in CATEGORIES for m in MEASURES}
        self.unknown: dict[str, int] = {}
        # Tensors derived only from weights; the list keeps them alive so ids stay unique.
        self._constant_ids = {id(w) for w in weights}
        self._keep: list[torch.Tensor] = list(weights)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        inputs = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        outputs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        activations = [t for t in inputs if id(t) not in self._constant_ids]
        if inputs and not activations:  # folded by the converter: weights in, constants out
            for o in outputs:
                self._constant_ids.add(id(o))
                self._keep.append(o)
            return out
        if name in _FREE or not outputs:
            return out
        category = self._category(name, args)
        if category is None:
            self.unknown[name] = self.unknown.get(name, 0) + 1
            category = "elementwise"
        weight_elems = sum(_numel(t) for t in inputs if id(t) in self._constant_ids)
        act_elems = sum(_numel(t) for t in activations) + _numel(outputs[0])
        t = self.totals
        t[f"{category}.macs"] += self._macs(name, category, args, outputs[0])
        t[f"{category}.act_bytes"] += act_elems * BYTES_PER_ELEMENT
        t[f"{category}.weight_bytes"] += weight_elems * BYTES_PER_ELEMENT
        t[f"{category}.count"] += 1
        return out

    @staticmethod
    def _category(name: str, args: tuple[Any, ...]) -> str | None:
        if name in ("convolution", "_convolution", "conv2d"):
            x, w = args[0], args[1]
            groups = int(args[8]) if len(args) > 8 else 1
            if groups > 1:
                return "depthwise" if groups == x.shape[1] and w.shape[1] == 1 else "grouped"
            return "pointwise" if all(k == 1 for k in w.shape[2:]) else "conv"
        return _OPS.get(name)

    @staticmethod
    def _macs(name: str, category: str, args: tuple[Any, ...], out: torch.Tensor) -> float:
        if category in ("conv", "depthwise", "pointwise", "grouped"):
            w = args[1]  # (C_out, C_in / groups, kh, kw): each output element costs one filter
            return float(_numel(out) * math.prod(w.shape[1:]))
        if name in ("mm", "addmm", "bmm", "baddbmm"):
            a = args[-2] if name in ("addmm", "baddbmm") else args[0]
            return float(_numel(out) * a.shape[-1])
        if category == "matmul":  # fused attention: q @ k^T and attn @ v
            q, k = args[0], args[1]
            return float(2 * _numel(q) * k.shape[-2])
        return 0.0


_trace_lock = threading.Lock()  # dispatch modes are per thread, but keep traces serial anyway


def extract_features(model: nn.Module, resolution: int, *, name: str = "model") -> LatencyFeatures:
    """Features of ``model`` (any module taking ``(1, 3, R, R)`` images) at ``resolution``.

    The model may live on any device; it is traced on ``meta`` when it already is there, else on
    its own device with an empty input (batch 1, so CPU cost stays small).
    """
    try:
        param = next(model.parameters())
        device = param.device
    except StopIteration:
        device = torch.device("cpu")
    weights = [*model.parameters(), *model.buffers()]
    recorder = _OpRecorder(weights)
    was_training = model.training
    model.eval()
    try:
        with _trace_lock, torch.no_grad(), recorder:
            model(torch.empty((1, 3, resolution, resolution), device=device))
    except Exception as exc:
        raise FeatureExtractionError(
            f"could not trace {name} at {resolution} px for latency features: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return LatencyFeatures(values=recorder.totals, resolution=resolution, params=params)
