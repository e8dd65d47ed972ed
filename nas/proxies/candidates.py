"""Scoring SwiftFormer candidates (or any timm model) for the search.

Proxies run at a reduced input resolution: ranking candidates needs the right order, not
ImageNet-resolution numbers, and the order barely changes while the time drops several-fold
(``benchmarks/proxy_quality.py swiftformer``, README). :data:`DEFAULT_SETTINGS` is chosen from
that measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from search_spaces import ArchConfig, build_model

from ._base import ProxyBatch, ProxyError, compute_proxies


@dataclass(frozen=True)
class ProxySettings:
    resolution: int = 64  # proxy input side in pixels (not the candidate's deployment resolution)
    batch_size: int = 32  # Gaussian inputs per pass; SWAP needs >= 32 to avoid saturating
    seed: int = 0  # seeds the weights, inputs and labels: same seed, same score
    num_classes: int = 1000
    image_folder: str | None = None  # real images instead of Gaussian noise (labels stay random)

    def __post_init__(self) -> None:
        if self.resolution < 32 or self.resolution % 32:
            raise ProxyError(f"Proxy resolution must be a positive multiple of 32, but got "
                             f"{self.resolution}. Use 64, 96 or 128.")
        if self.batch_size < 2:
            raise ProxyError(f"Proxy batch size must be >= 2 (BatchNorm in train mode needs two "
                             f"samples), but got {self.batch_size}.")


DEFAULT_SETTINGS = ProxySettings()


def score_model(
    model: nn.Module, *, proxies: Sequence[str] = ("score",),
    settings: ProxySettings = DEFAULT_SETTINGS, model_name: str = "",
) -> dict[str, float]:
    if settings.image_folder:
        batch = ProxyBatch.from_image_folder(
            settings.image_folder, resolution=settings.resolution,
            num_classes=settings.num_classes, batch_size=settings.batch_size, seed=settings.seed,
        )
    else:
        batch = ProxyBatch.gaussian(
            input_size=(3, settings.resolution, settings.resolution),
            num_classes=settings.num_classes, batch_size=settings.batch_size, seed=settings.seed,
        )
    return compute_proxies(proxies, model, batch, model_name=model_name)


def score_arch(
    arch: ArchConfig, *, proxies: Sequence[str] = ("score",),
    settings: ProxySettings = DEFAULT_SETTINGS,
) -> dict[str, float]:
    """Proxy scores of ``arch`` with weights drawn from ``settings.seed`` (deterministic)."""
    torch.manual_seed(settings.seed)
    model = build_model(arch, num_classes=settings.num_classes)
    return score_model(model, proxies=proxies, settings=settings, model_name=arch.key())
