"""Scoring SwiftFormer candidates (or any timm model) for the search.

Proxies run at a reduced input resolution: ranking candidates needs the right order, not
ImageNet-resolution numbers, and the order barely changes while the time drops several-fold
(``benchmarks/proxy_quality.py swiftformer``, README). :data:`DEFAULT_SETTINGS` is chosen from
that measurement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from search_spaces import ArchConfig, build_model

from ._base import ProxyBatch
from .catalog import compute_proxies
from .settings import DEFAULT_SETTINGS, ProxySettings, combine_score


def score_model(
    model: nn.Module, *, proxies: Sequence[str] = ("score",),
    settings: ProxySettings = DEFAULT_SETTINGS, model_name: str = "",
    score_weights: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Proxy scores of ``model``. ``score_weights`` defines ``score`` (default: the registered
    default score): a study keeps the definition it was started with."""
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
    if score_weights is None or "score" not in proxies:
        return compute_proxies(proxies, model, batch, model_name=model_name)
    # the score's parts share their passes with the other proxies; only the asked ones return
    parts = list(dict.fromkeys([p for p in proxies if p != "score"] + list(score_weights)))
    values = compute_proxies(parts, model, batch, model_name=model_name)
    values["score"] = combine_score(dict(score_weights), values)
    return {p: values[p] for p in proxies}


def score_arch(
    arch: ArchConfig, *, proxies: Sequence[str] = ("score",),
    settings: ProxySettings = DEFAULT_SETTINGS,
    score_weights: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Proxy scores of ``arch`` with weights drawn from ``settings.seed`` (deterministic)."""
    torch.manual_seed(settings.seed)
    model = build_model(arch, num_classes=settings.num_classes)
    return score_model(model, proxies=proxies, settings=settings, model_name=arch.key(),
                       score_weights=score_weights)
