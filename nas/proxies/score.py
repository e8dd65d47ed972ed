"""The accuracy score the search maximises: a log-linear combination of proxies.

Default (``DEFAULT_SCORE_WEIGHTS`` in ``settings``): ``log(swap) + 0.3 log(grad_norm) +
0.35 log(params) + 0.5 log(macs)``. Evidence (``benchmarks/default_score.py``, README "Default
score"): no combination of these proxies ties the best free baseline on all three benchmarks
with trained accuracies (NAS-Bench-Macro CNNs, the trained SwiftFormer space, timm vision
transformers), so the weights minimise the largest shortfall. Working in logs makes the
combination independent of each proxy's scale (a constant factor in a proxy only shifts the
score), so it transfers between search spaces and batch sizes better than z-scores fitted to one
population.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._base import ProxyContext, get_proxy, register_proxy
from .settings import DEFAULT_SCORE_WEIGHTS, combine_score, describe_score


@dataclass(frozen=True)
class LogLinearScore:
    """``sum_i weight_i * log(proxy_i)``; every proxy must be positive."""

    weights: Mapping[str, float]

    def __call__(self, ctx: ProxyContext) -> float:
        return self.combine({name: get_proxy(name).fn(ctx) for name in self.weights})

    def combine(self, values: Mapping[str, float]) -> float:
        """The score from already computed proxy values (e.g. stored benchmark results)."""
        return combine_score(dict(self.weights), dict(values))


DEFAULT_SCORE = LogLinearScore(DEFAULT_SCORE_WEIGHTS)

register_proxy(
    "score",
    description=f"Default accuracy score: {describe_score(DEFAULT_SCORE_WEIGHTS)} (one "
    "forward-backward pass).",
    needs_backward=True,
)(DEFAULT_SCORE)
