"""The latency feature set: categories, measures and :class:`LatencyFeatures` (pure Python).

Kept apart from the tracer (:mod:`latency_models.features`, which needs torch) so that a
prediction from cached features imports neither torch nor timm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def feature_names(measures: Sequence[str] = MEASURES) -> list[str]:
    """``category.measure`` for every category and each of ``measures`` (default: all)."""
    return [f"{cat}.{measure}" for cat in CATEGORIES for measure in measures]
