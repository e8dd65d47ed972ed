"""The accuracy score the search maximises: a log-linear combination of proxies.

Default (``DEFAULT_SCORE_WEIGHTS`` in ``settings``): ``0.9 log(grad_norm) + 0.1 log(params)``.
Evidence (``python -m benchmarks.default_score``, README "Default score"): chosen on folds of the
trained SwiftFormer-space candidates by the decision a search makes, the best candidate under a
latency budget (budgeted regret, then rank correlation at fixed latency). Working in logs makes the
combination independent of each proxy's scale (a constant factor in a proxy only shifts the
score), so it transfers between search spaces and batch sizes better than z-scores fitted to one
population.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._base import ProxyContext, register_proxy, registered
from .settings import DEFAULT_SCORE_WEIGHTS, combine_score, describe_score


@dataclass(frozen=True)
class LogLinearScore:
    """``sum_i weight_i * log(proxy_i)``; every proxy must be positive."""

    weights: Mapping[str, float]

    def __call__(self, ctx: ProxyContext) -> float:
        return self.combine({name: registered(name).fn(ctx) for name in self.weights})

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
