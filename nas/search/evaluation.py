"""Evaluating one candidate: proxy scores, predicted latency, size. Runs in the driver or in a
Ray worker; it touches no storage (only the driver writes, so a killed worker loses nothing).
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from nas.evaluators import DEFAULT_PROXIES, digest
from nas.proxies import DEFAULT_SCORE_WEIGHTS, DEFAULT_SETTINGS, ProxySettings
from search_spaces import ArchConfig

OBJECTIVE_PROXY = "score"  # the accuracy objective among DEFAULT_PROXIES


@dataclass(frozen=True)
class EvaluationSettings:
    """Everything that decides a candidate's scores, shipped once to every worker."""

    device: str
    predictor: dict[str, Any]  # the artifact itself (LatencyPredictor.to_dict), not a path
    proxy: ProxySettings = DEFAULT_SETTINGS
    proxies: tuple[str, ...] = DEFAULT_PROXIES
    # what "score" means: the study's own definition (its identity records it), so a study
    # started under an older default resumes with it
    score_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SCORE_WEIGHTS))
    # not None: the torch-free ``SyntheticEvaluator`` with this seed replaces the proxies and
    # the predictor (driver tests and driver benchmarks measure the search machinery)
    synthetic_seed: int | None = None

    @cached_property
    def predictor_digest(self) -> str:
        return digest(self.predictor)

    @cached_property
    def evaluator_keys(self) -> tuple[str, str]:
        """The cache keys of the two evaluations a trial needs: (proxies, latency)."""
        from nas.evaluators import SyntheticEvaluator

        if self.synthetic_seed is not None:
            key = SyntheticEvaluator(self.synthetic_seed).key()
            return (f"{key}:proxy", f"{key}:latency")
        latency, proxy = _new_evaluators(self)  # cheap: the predictor loads on first use
        return proxy.key(), latency.key()


@dataclass(frozen=True)
class Evaluation:
    """One candidate's results; ``cached`` when they came from the storage, not a new run."""

    arch: ArchConfig
    params: int
    macs: int
    proxy_scores: dict[str, float]
    latency_ms: float
    latency_low_ms: float
    latency_high_ms: float
    latency_sigma_log: float
    latency_group: str
    proxy_seconds: float
    latency_seconds: float
    worker: str = ""
    cached: bool = False

    @property
    def accuracy_score(self) -> float:
        return self.proxy_scores[OBJECTIVE_PROXY]

    def summary(self) -> dict[str, Any]:
        """JSON-able summary stored on the Optuna trial (one attribute, one write)."""
        out = asdict(self)
        out["arch"] = self.arch.to_dict()
        return out


# A worker keeps its evaluators (the predictor and its feature cache) between tasks
_EVALUATORS: dict[tuple[str, ...], tuple[Any, Any]] = {}


def _new_evaluators(settings: EvaluationSettings) -> tuple[Any, Any]:
    """(LatencyEvaluator, ProxyEvaluator) of ``settings``: the one place that makes them."""
    from nas.evaluators import LatencyEvaluator, ProxyEvaluator

    return (LatencyEvaluator(settings.predictor, settings.device,
                             artifact_digest=settings.predictor_digest),
            ProxyEvaluator(settings.proxy, settings.proxies, settings.score_weights))


def _evaluators(settings: EvaluationSettings) -> tuple[Any, Any]:
    """The evaluators of ``settings``, kept while the settings stay (their keys name them)."""
    key = settings.evaluator_keys
    if key not in _EVALUATORS:
        _EVALUATORS.clear()
        _EVALUATORS[key] = _new_evaluators(settings)
    return _EVALUATORS[key]


def evaluate_arch(arch: ArchConfig, settings: EvaluationSettings) -> Evaluation:
    """Score ``arch`` with the two evaluators of ``settings`` (``nas.evaluators``): proxies on
    random weights seeded by the proxy seed (deterministic), and the predicted latency on
    ``settings.device``."""
    if settings.synthetic_seed is not None:
        return _synthetic(arch, settings.synthetic_seed)
    latency_evaluator, proxy_evaluator = _evaluators(settings)
    t0 = time.perf_counter()
    latency, params, macs = latency_evaluator.predict(arch)
    t1 = time.perf_counter()
    scores = proxy_evaluator.evaluate(arch, {})  # torch: only where a candidate is scored
    t2 = time.perf_counter()
    return Evaluation(
        arch=arch, params=params, macs=macs,
        proxy_scores={name: m.value for name, m in scores.items()},
        latency_ms=latency.latency_ms, latency_low_ms=latency.low_ms,
        latency_high_ms=latency.high_ms, latency_sigma_log=latency.sigma_log,
        latency_group=latency.group, proxy_seconds=t2 - t1, latency_seconds=t1 - t0,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )


def _synthetic(arch: ArchConfig, seed: int) -> Evaluation:
    """The synthetic evaluator's metrics in an Evaluation (a 10% latency interval)."""
    from nas.evaluators import SyntheticEvaluator

    m = SyntheticEvaluator(seed).evaluate(arch, {})
    latency = m["latency_ms"].value
    return Evaluation(
        arch=arch, params=int(m["params"].value), macs=int(m["macs"].value),
        proxy_scores={"score": m["score"].value}, latency_ms=latency,
        latency_low_ms=latency / 1.1, latency_high_ms=latency * 1.1,
        latency_sigma_log=math.log(1.1) / 1.6449, latency_group="synthetic", proxy_seconds=0.0,
        latency_seconds=0.0, worker=f"{socket.gethostname()}:{os.getpid()}")


def worker_evaluate(arch_json: str, settings: EvaluationSettings) -> Evaluation:
    """Entry point of a Ray task: one torch thread per worker (workers share the cores)."""
    if settings.synthetic_seed is None:
        import torch

        torch.set_num_threads(1)
    return evaluate_arch(ArchConfig.from_json(arch_json), settings)
