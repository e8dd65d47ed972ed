"""Scoring SwiftFormer candidates (or any timm model) for the search.

Proxies run at a reduced input resolution: ranking candidates needs the right order, not
ImageNet-resolution numbers, and the order barely changes while the time drops several-fold
(``benchmarks/proxy_quality.py swiftformer``, README). :data:`DEFAULT_SETTINGS` is chosen from
that measurement.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from search_spaces import ArchConfig, build_model

from ._base import ProxyBatch, compute_proxies
from .settings import DEFAULT_SETTINGS, ProxySettings


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
