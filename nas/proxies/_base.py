"""Proxy registry: training-free scores of an untrained ``nn.Module`` classifier.

A proxy is a function ``fn(ctx: ProxyContext) -> float`` registered under a name.
:class:`ProxyBatch` holds what it may use: Gaussian inputs (or images from a folder) and random
labels, drawn from a seed so every score is deterministic. Higher is better for every proxy.
"""

from __future__ import annotations

from collections.abc import Callable
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


def registered(name: str) -> Proxy:
    """A registered proxy by name, without loading the built-ins (``catalog.get_proxy`` does):
    for the built-ins themselves (the score reads its parts), which are registered by then."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ProxyError(f"Unknown proxy {name!r}. Available proxies: "
                         f"{', '.join(_REGISTRY)}.") from None
