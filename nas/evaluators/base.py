"""The evaluation interface: what a candidate is worth and what it costs.

An :class:`Evaluator` produces named metrics for an architecture at one fidelity (a zero-cost
proxy, a latency prediction, a surrogate's prediction, a stored training, or the synthetic
stand-in for tests). It may read the metrics of the evaluators it ``depends_on`` (the surrogate
reads the proxy score and the size). Its ``key()`` names its settings and artifact: two
evaluators with one key give the same metrics for the same architecture, so the key is both a
cache key and part of a study's identity.

Contract:
- ``evaluate(arch, inputs)`` returns one :class:`Metric` per name in ``metrics`` (never NaN),
  reading only ``inputs`` (the metrics of ``depends_on``) besides ``arch``;
- it touches no storage unless its fidelity is ``TRAINED`` (a lookup), and raises
  :class:`NotEvaluated` when it has nothing for this architecture (an untrained candidate);
- same key, same architecture, same metrics (deterministic).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from search_spaces import ArchConfig


class Fidelity(StrEnum):
    ZERO_COST = "zero-cost"  # proxies on random weights: a second per candidate
    PREDICTED = "predicted"  # a learned cost model (latency)
    SURROGATE = "surrogate"  # a model fitted on trained accuracies
    TRAINED = "trained"  # a real training's measurement
    SYNTHETIC = "synthetic"  # deterministic stand-in for tests and driver benchmarks


@dataclass(frozen=True)
class Metric:
    """One value; ``low``/``high`` bound its 90% interval where the evaluator knows one;
    ``seconds`` is what producing it cost."""

    value: float
    low: float | None = None
    high: float | None = None
    seconds: float = 0.0


class NotEvaluated(LookupError):
    """The evaluator has no value for this architecture (e.g. it was never trained)."""


def digest(obj: Any) -> str:
    """SHA-256 of an artifact's canonical JSON: what identifies a predictor or a surrogate."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


class Evaluator(ABC):
    name: str
    metrics: tuple[str, ...]
    fidelity: Fidelity
    depends_on: tuple[str, ...] = ()

    @abstractmethod
    def key(self) -> str:
        """Identifies this evaluator's settings and artifact (cache key, study identity)."""

    @abstractmethod
    def evaluate(self, arch: ArchConfig, inputs: Mapping[str, Metric]) -> dict[str, Metric]:
        """The metrics of ``arch``; ``inputs`` holds the metrics of ``depends_on``."""


def evaluate_all(arch: ArchConfig, evaluators: Sequence[Evaluator]) -> dict[str, Metric]:
    """Run ``evaluators`` on ``arch`` in dependency order; every metric, by name."""
    by_name = {e.name: e for e in evaluators}
    for e in evaluators:
        missing = [d for d in e.depends_on if d not in by_name]
        if missing:
            raise ValueError(f"evaluator {e.name!r} depends on {', '.join(missing)}, which "
                             "is not among the evaluators given")
    done: dict[str, dict[str, Metric]] = {}

    def run(e: Evaluator, path: tuple[str, ...]) -> None:
        if e.name in done:
            return
        if e.name in path:
            raise ValueError(f"evaluators depend on each other in a cycle: "
                             f"{' -> '.join((*path, e.name))}")
        inputs: dict[str, Metric] = {}
        for dep in e.depends_on:
            run(by_name[dep], (*path, e.name))
            inputs.update(done[dep])
        done[e.name] = e.evaluate(arch, inputs)

    for e in evaluators:
        run(e, ())
    return {m: v for out in done.values() for m, v in out.items()}
