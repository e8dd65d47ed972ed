"""The learned iPhone latency predictor (``latency_models``) as an evaluator; params and MACs
come with its features."""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from latency_models import FeatureCache, Latency, LatencyPredictor
from search_spaces import ArchConfig

from .base import Evaluator, Fidelity, Metric, digest


class LatencyEvaluator(Evaluator):
    """Predicted latency on ``device`` with its 90% interval, and the size."""

    name = "latency"
    metrics = ("latency_ms", "params", "macs")
    fidelity = Fidelity.PREDICTED

    def __init__(self, predictor: dict[str, Any], device: str, *,
                 artifact_digest: str | None = None) -> None:
        self.artifact, self.device = predictor, device
        self._digest = artifact_digest  # known already (a study's), or computed once

    @cached_property
    def predictor(self) -> LatencyPredictor:
        return LatencyPredictor.from_dict(self.artifact)

    @cached_property
    def _features(self) -> FeatureCache:
        return FeatureCache()

    def key(self) -> str:
        if self._digest is None:
            self._digest = digest(self.artifact)
        return f"latency:{self._digest[:16]}:{self.device}"

    def predict(self, arch: ArchConfig) -> tuple[Latency, int, int]:
        """The full prediction (with its group and log-space spread), params and MACs."""
        latency = self.predictor.predict(arch, device=self.device, cache=self._features)
        features = self._features.get(arch)  # params and MACs come with the features (cached)
        return latency, features.params, int(features.total("macs"))

    def evaluate(self, arch: ArchConfig, inputs: Mapping[str, Metric]) -> dict[str, Metric]:
        t0 = time.perf_counter()
        p, params, macs = self.predict(arch)
        seconds = time.perf_counter() - t0
        return {"latency_ms": Metric(p.latency_ms, p.low_ms, p.high_ms, seconds),
                "params": Metric(float(params)), "macs": Metric(float(macs))}
