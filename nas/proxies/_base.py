"""Proxy registry: training-free scores of an untrained ``nn.Module`` classifier.

A proxy is a function ``fn(ctx: ProxyContext) -> float`` registered under a name.
:class:`ProxyBatch` holds what it may use: Gaussian inputs (or images from a folder) and random
labels, drawn from a seed so every score is deterministic. Higher is better for every proxy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .settings import ProxyError


@dataclass(frozen=True)
class ProxyBatch:
    """Inputs and labels a proxy sees. Build with :meth:`gaussian`."""

    inputs: torch.Tensor  # (N, C, H, W)
    targets: torch.Tensor  # (N,) class indices
    num_classes: int
    seed: int

    @classmethod
    def gaussian(
        cls, *, input_size: tuple[int, int, int], num_classes: int, batch_size: int = 64,
        seed: int = 0,
    ) -> ProxyBatch:
        gen = torch.Generator().manual_seed(seed)
        inputs = torch.randn(batch_size, *input_size, generator=gen)
        targets = torch.randint(0, num_classes, (batch_size,), generator=gen)
        return cls(inputs=inputs, targets=targets, num_classes=num_classes, seed=seed)

    @classmethod
    def from_image_folder(
        cls, folder: str | Path, *, resolution: int, num_classes: int, batch_size: int = 64,
        seed: int = 0,
    ) -> ProxyBatch:
        """``batch_size`` images (seeded choice) from ``folder`` and its subfolders, resized to
        ``resolution`` and normalised with ImageNet statistics; labels stay random."""
        import random

        import numpy as np
        from PIL import Image

        folder = Path(folder)
        if not folder.is_dir():
            what = "is a file" if folder.exists() else "does not exist"
            raise ProxyError(f"Image folder {str(folder)!r} {what}; pass a folder of images "
                             f"({', '.join(sorted(_IMAGE_SUFFIXES))}), searched recursively")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        if len(files) < batch_size:
            raise ProxyError(
                f"Image folder {str(folder)!r} has {len(files)} images "
                f"({', '.join(sorted(_IMAGE_SUFFIXES))}); the batch needs {batch_size}. Add "
                "images or lower the batch size."
            )
        chosen = random.Random(seed).sample(files, batch_size)
        mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
        std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
        arrays = []
        for path in chosen:
            with Image.open(path) as img:
                rgb = img.convert("RGB").resize((resolution, resolution), Image.Resampling.BILINEAR)
                arrays.append((np.asarray(rgb, dtype=np.float32) / 255.0 - mean) / std)
        inputs = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        gen = torch.Generator().manual_seed(seed)
        targets = torch.randint(0, num_classes, (batch_size,), generator=gen)
        return cls(inputs=inputs, targets=targets, num_classes=num_classes, seed=seed)


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class ProxyContext:
    """One model and one batch, with the passes several proxies share computed once.

    ``binary_codes()`` and ``weight_gradients()`` come from the same train-mode forward (and one
    backward), so SWAP, NASWOT and grad_norm together cost one forward-backward pass.
    """

    def __init__(self, model: nn.Module, batch: ProxyBatch) -> None:
        self.model = model
        self.batch = batch
        self._codes: list[torch.Tensor] | None = None
        self._grads: dict[str, torch.Tensor] | None = None

    def binary_codes(self) -> list[torch.Tensor]:
        """Per activation call, the (N, units) boolean pattern of positive pre-activations."""
        if self._codes is None:
            self._train_pass()
        assert self._codes is not None
        if not self._codes:
            raise ValueError("the model has no activation modules (ReLU, GELU, ...) to observe")
        return self._codes

    def weight_gradients(self) -> dict[str, torch.Tensor]:
        """Gradients of cross-entropy on the batch's random labels, by parameter name."""
        if self._grads is None:
            self._train_pass()
        assert self._grads is not None
        return self._grads

    def _train_pass(self) -> None:
        from ._hooks import on_activation_inputs, per_sample

        codes: list[torch.Tensor] = []
        n = self.batch.inputs.shape[0]

        def record(x: torch.Tensor) -> None:
            units = per_sample(x, n)
            if units is not None:
                codes.append(units > 0)

        model = self.model
        model.train()
        model.zero_grad(set_to_none=True)
        with on_activation_inputs(model, record):
            logits = model(self.batch.inputs)
        if isinstance(logits, tuple):  # distillation heads in training mode
            logits = logits[0]
        torch.nn.functional.cross_entropy(logits, self.batch.targets).backward()
        self._grads = {
            name: p.grad.detach().clone() for name, p in model.named_parameters()
            if p.grad is not None
        }
        model.zero_grad(set_to_none=True)
        self._codes = codes


ProxyFn = Callable[[ProxyContext], float]


@dataclass(frozen=True)
class Proxy:
    name: str
    fn: ProxyFn
    description: str
    needs_backward: bool = False
    free: bool = False  # computable from the architecture alone (no data, no gradients)


_REGISTRY: dict[str, Proxy] = {}


def register_proxy(
    name: str, *, description: str, needs_backward: bool = False, free: bool = False,
) -> Callable[[ProxyFn], ProxyFn]:
    def decorator(fn: ProxyFn) -> ProxyFn:
        _REGISTRY[name] = Proxy(name, fn, description, needs_backward, free)
        return fn

    return decorator


def _register_builtins() -> None:
    """Import the modules that register the built-in proxies (the package imports lazily, so
    a caller that imported only this module still sees them)."""
    from . import score, zero_cost  # noqa: F401


def available_proxies() -> list[str]:
    _register_builtins()
    return list(_REGISTRY)


def get_proxy(name: str) -> Proxy:
    _register_builtins()
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ProxyError(
            f"Unknown proxy {name!r}. Available proxies: {', '.join(_REGISTRY)}."
        ) from None


def compute_proxies(
    names: Iterable[str], model: nn.Module, batch: ProxyBatch, *, model_name: str = "",
    timings: dict[str, float] | None = None,
) -> dict[str, float]:
    """Score ``model`` with each proxy in ``names``, sharing passes between them.

    A failing forward or a NaN/inf score raises :class:`ProxyError` naming the model and the
    proxy; scores are never NaN. ``timings``, if given, receives seconds per proxy.
    """
    proxies = [get_proxy(n) for n in names]  # unknown names fail before any work
    label = model_name or type(model).__name__
    ctx = ProxyContext(model, batch)
    was_training = model.training
    scores: dict[str, float] = {}
    try:
        for proxy in proxies:
            torch.manual_seed(batch.seed)  # proxies that draw random numbers draw the same ones
            start = time.perf_counter()
            try:
                value = float(proxy.fn(ctx))
            except ProxyError:
                raise
            except Exception as exc:  # the model's own forward failed: name model and proxy
                raise ProxyError(
                    f"Proxy {proxy.name!r} failed on model {label!r}: {type(exc).__name__}: "
                    f"{exc}. Check that the model runs on inputs of shape "
                    f"{tuple(batch.inputs.shape)} and returns class logits."
                ) from exc
            if timings is not None:
                timings[proxy.name] = time.perf_counter() - start
            if not math.isfinite(value):
                raise ProxyError(
                    f"Proxy {proxy.name!r} gave a non-finite score ({value}) on model {label!r}; "
                    "it is reported as a failure, not stored. Try another seed or a smaller "
                    "input resolution."
                )
            scores[proxy.name] = value
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return scores


def compute_proxy(name: str, model: nn.Module, batch: ProxyBatch, *, model_name: str = "") -> float:
    """Score ``model`` with one proxy (see :func:`compute_proxies`)."""
    return compute_proxies([name], model, batch, model_name=model_name)[get_proxy(name).name]
