"""Zero-cost proxies (``nas.proxies``) as an evaluator: one forward-backward pass on random
weights, deterministic for a proxy seed."""

from __future__ import annotations

import time
from collections.abc import Mapping

from nas.proxies import DEFAULT_SCORE_WEIGHTS, DEFAULT_SETTINGS, ProxySettings
from search_spaces import ArchConfig

from .base import Evaluator, Fidelity, Metric, digest

# The objective is "score"; swap and grad_norm come from the same forward-backward pass, so they
# are stored for free and shown beside it (dashboard, model card).
DEFAULT_PROXIES: tuple[str, ...] = ("score", "swap", "grad_norm")


class ProxyEvaluator(Evaluator):
    """The proxies in ``proxies``; ``score`` as ``score_weights`` define it."""

    name = "proxy"
    fidelity = Fidelity.ZERO_COST

    def __init__(self, settings: ProxySettings = DEFAULT_SETTINGS,
                 proxies: tuple[str, ...] = DEFAULT_PROXIES,
                 score_weights: Mapping[str, float] | None = None) -> None:
        self.settings = settings
        self.metrics = tuple(proxies)
        self.score_weights = dict(score_weights or DEFAULT_SCORE_WEIGHTS)

    def key(self) -> str:
        p = self.settings
        setting = f"res{p.resolution}-b{p.batch_size}-seed{p.seed}-c{p.num_classes}"
        setting += f"-img:{p.image_folder}" if p.image_folder else ""
        return f"proxy:{setting}:{','.join(self.metrics)}:{digest(self.score_weights)[:12]}"

    def evaluate(self, arch: ArchConfig, inputs: Mapping[str, Metric]) -> dict[str, Metric]:
        from nas.proxies import score_arch  # torch: only where a candidate is really scored

        t0 = time.perf_counter()
        scores = score_arch(arch, proxies=self.metrics, settings=self.settings,
                            score_weights=self.score_weights)
        seconds = time.perf_counter() - t0
        return {name: Metric(value, seconds=seconds) for name, value in scores.items()}
