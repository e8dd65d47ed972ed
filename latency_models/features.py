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
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .featureset import (  # noqa: F401  (re-exported: the feature set's public names)
    _FREE,
    _OPS,
    BYTES_PER_ELEMENT,
    CATEGORIES,
    FEATURE_SET_VERSION,
    MEASURES,
    FeatureExtractionError,
    LatencyFeatures,
    feature_names,
)


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


def _trace(fn: Callable[[torch.Tensor], Any], x: torch.Tensor,
           weights: list[torch.Tensor]) -> tuple[dict[str, float], Any]:
    """Op totals of ``fn(x)`` (weights: the tensors Core ML holds as constants), and its output."""
    recorder = _OpRecorder(weights)
    with _trace_lock, torch.no_grad(), recorder:
        out = fn(x)
    return recorder.totals, out


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
    was_training = model.training
    model.eval()
    try:
        totals, _ = _trace(model, torch.empty((1, 3, resolution, resolution), device=device),
                           [*model.parameters(), *model.buffers()])
    except Exception as exc:
        raise FeatureExtractionError(
            f"could not trace {name} at {resolution} px for latency features: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return LatencyFeatures(values=totals, resolution=resolution, params=params)


# Part (its repr, which names every layer size, and input shape) -> op totals and output shape.
# Candidates of one space share most of their blocks, so a search traces each block once.
_PART_TOTALS: OrderedDict[tuple[str, tuple[int, ...]],
                          tuple[dict[str, float], tuple[int, ...]]] = OrderedDict()
PART_MEMO_SIZE = 4096
_memo_lock = threading.Lock()


def _part_totals(key: str, fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...],
                 weights: list[torch.Tensor]) -> tuple[dict[str, float], tuple[int, ...]]:
    memo_key = (key, shape)
    with _memo_lock:
        hit = _PART_TOTALS.get(memo_key)
    if hit is None:
        totals, out = _trace(fn, torch.empty(shape, device="meta"), weights)
        hit = (totals, tuple(out.shape))
        with _memo_lock:
            _PART_TOTALS[memo_key] = hit
            if len(_PART_TOTALS) > PART_MEMO_SIZE:
                _PART_TOTALS.popitem(last=False)
    return hit


def extract_swiftformer_features(model: nn.Module, resolution: int, *,
                                 name: str = "model") -> LatencyFeatures:
    """:func:`extract_features` of a timm ``SwiftFormer`` (or swiftnas's subclass) on ``meta``,
    traced part by part (stem, each stage's downsampling and blocks, norm and head) with each
    part's totals kept for the next candidate. Features are sums over ops, and the model's
    forward is exactly these parts in sequence, so the result is the same (a test checks it)."""
    sf: Any = model  # a SwiftFormer; its submodules are typed Tensor | Module by nn.Module
    model.eval()
    totals = dict.fromkeys(feature_names(), 0.0)
    shape: tuple[int, ...] = (1, 3, resolution, resolution)

    def add(key: str, fn: Callable[[torch.Tensor], torch.Tensor], modules: list[nn.Module]) -> None:
        nonlocal shape
        weights = [t for m in modules for t in (*m.parameters(), *m.buffers())]
        part, shape = _part_totals(key, fn, shape, weights)
        for k, v in part.items():
            totals[k] += v

    try:
        add(repr(sf.stem), sf.stem, [sf.stem])
        for stage in sf.stages:
            if not isinstance(stage.downsample, nn.Identity):
                add(repr(stage.downsample), stage.downsample, [stage.downsample])
            for block in stage.blocks:
                add(repr(block), block, [block])
        tail = [sf.norm, sf.head_drop, sf.head, sf.head_dist]
        add(f"{sf.global_pool}|{'|'.join(map(repr, tail))}",
            lambda x: sf.forward_head(sf.norm(x)), tail)
    except Exception as exc:
        raise FeatureExtractionError(
            f"could not trace {name} at {resolution} px for latency features: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    params = sum(p.numel() for p in model.parameters())
    return LatencyFeatures(values=totals, resolution=resolution, params=params)
