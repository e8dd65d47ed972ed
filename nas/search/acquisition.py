"""Which candidate to train next, in a multi-fidelity search (pure numpy, no storage).

Every candidate has the cheap fidelity (its accuracy score, or a surrogate's prediction) and a
predicted latency; a few are trained. A training is worth most where it can move the *measured*
front: the rule picks the untrained feasible candidate whose upper confidence bound (surrogate
mean + ``kappa`` std) exceeds, by the most, the best measured top-1 at its latency or below.

Before a surrogate can be fitted (``MIN_TRAINED`` results), the first picks spread over the
cheap fidelity's own front: its nondominated (score, latency) points at evenly spaced latencies,
so the surrogate starts from the region the search cares about, at every budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .pareto import nondominated

MIN_TRAINED = 5  # an AccuracySurrogate needs 5 trained architectures
KAPPA = 1.0  # the upper confidence bound's width, in surrogate standard deviations


def spread_front_picks(latency: Sequence[float], score: Sequence[float], k: int,
                       exclude: Sequence[int] = ()) -> list[int]:
    """Up to ``k`` indices from the (score up, latency down) front of the candidates not in
    ``exclude``, at evenly spaced positions along latency (the front's ends first), then the
    next fronts when the first is too small."""
    left = [i for i in range(len(latency)) if i not in set(exclude)]
    picks: list[int] = []
    while left and len(picks) < k:
        points = [(float(score[i]), float(latency[i])) for i in left]
        front = sorted((left[j] for j in nondominated(points)), key=lambda i: latency[i])
        need = k - len(picks)
        if len(front) <= need:
            chosen = front
        else:
            spots = np.linspace(0, len(front) - 1, need)
            chosen = list(dict.fromkeys(front[round(s)] for s in spots))
        picks += chosen
        left = [i for i in left if i not in set(chosen)]
    return picks[:k]


def ucb_pick(latency: Sequence[float], mean: Sequence[float] | np.ndarray,
             std: Sequence[float] | np.ndarray,
             measured: dict[int, float], *, kappa: float = KAPPA) -> int | None:
    """The untrained candidate (index not in ``measured``) whose upper confidence bound exceeds
    the best measured top-1 at its latency or below by the most (ties: the faster); None when
    every candidate is trained."""
    lat = np.asarray(latency, float)
    ucb = np.asarray(mean, float) + kappa * np.asarray(std, float)
    # faster than every measured candidate: compared with the worst measurement, so the fast
    # end is explored when it looks good, not merely because nothing there is measured yet
    floor = min(measured.values()) if measured else 0.0
    best_gain, best = -np.inf, None
    for i in np.argsort(lat, kind="stable"):
        if int(i) in measured:
            continue
        below = [top1 for j, top1 in measured.items() if lat[j] <= lat[i]]
        gain = ucb[i] - (max(below) if below else floor)
        if gain > best_gain:
            best_gain, best = gain, int(i)
    return best
