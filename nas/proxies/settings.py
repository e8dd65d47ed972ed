"""Proxy settings and errors: the part of the proxies that the CLI, the search specs and the
read-only views need, importable without torch (``swiftnas studies`` must not load torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from search_spaces.errors import SwiftNASError


class ProxyError(SwiftNASError, ValueError):
    """A proxy name is unknown, or a proxy could not produce a finite score."""


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

# The default accuracy score, ``sum_i w_i * log(proxy_i)`` (``nas.proxies.score``). Kept here,
# torch-free, because a study's identity records it and keeps it: a study resumes with the
# definition it was started with (``EvaluationSettings.score_weights``). Chosen by what a
# budgeted search decides (the regret of the best candidate under a latency budget, and the rank
# correlation at fixed latency) on folds of the trained SwiftFormer-space candidates:
# ``python -m benchmarks.default_score``, docs in the README's "Default score".
DEFAULT_SCORE_WEIGHTS: dict[str, float] = {"grad_norm": 0.9, "params": 0.1}
# The default of swiftnas 0.x before it (chosen by global Spearman over three benchmarks).
PREVIOUS_SCORE_WEIGHTS: dict[str, float] = {"swap": 1.0, "grad_norm": 0.3, "params": 0.35,
                                            "macs": 0.5}
# What every study created before the identity recorded the score was scored with.
LEGACY_SCORE_WEIGHTS: dict[str, float] = {"swap": 1.0, "grad_norm": 0.35}


def describe_score(weights: dict[str, float]) -> str:
    """``log(swap) + 0.35 * log(grad_norm)``-style text for messages and help."""
    return " + ".join(f"log({name})" if w == 1 else f"{w:g} * log({name})"
                      for name, w in weights.items())


def combine_score(weights: dict[str, float], values: dict[str, float]) -> float:
    """``sum_i w_i * log(values_i)`` (torch-free: read-only views rescore stored proxies)."""
    total = 0.0
    for name, weight in weights.items():
        value = values[name]
        if value <= 0:
            raise ValueError(f"proxy {name!r} gave {value}, which has no logarithm")
        total += weight * math.log(value)
    return total
