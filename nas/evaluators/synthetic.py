"""A deterministic synthetic evaluator that needs no torch: a score and a latency from the
architecture's shape plus noise seeded by its key. For driver tests and driver benchmarks,
which measure the search machinery, not the models."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

from search_spaces import ArchConfig

from .base import Evaluator, Fidelity, Metric


class SyntheticEvaluator(Evaluator):
    """``score`` grows with capacity, ``latency_ms`` with work; both carry +-5% noise that is a
    function of (``seed``, architecture key) only."""

    name = "synthetic"
    metrics = ("score", "latency_ms", "params", "macs")
    fidelity = Fidelity.SYNTHETIC

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def key(self) -> str:
        return f"synthetic:{self.seed}"

    def evaluate(self, arch: ArchConfig, inputs: Mapping[str, Metric]) -> dict[str, Metric]:
        tokens = (arch.resolution / 4) ** 2
        params = macs = 0.0
        for i, s in enumerate(arch.stages):
            block = s.width * s.width * (2 + 2 * s.mlp_ratio)
            params += s.depth * block
            macs += s.depth * block * tokens / 4 ** i
        h = hashlib.sha256(f"{self.seed}:{arch.key()}".encode()).digest()
        noise = [(b / 255 - 0.5) * 0.1 for b in h[:2]]
        score = math.log(params) * (1 + noise[0])
        latency = 0.2 + macs / 2e9 * (1 + noise[1]) + 0.02 * arch.num_attn_blocks
        return {"score": Metric(score), "latency_ms": Metric(latency),
                "params": Metric(params), "macs": Metric(macs)}
