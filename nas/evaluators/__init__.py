"""What a candidate is worth and what it costs: one interface (``base.Evaluator``) for every
fidelity, from a zero-cost proxy to a real training's stored result.

- ``ProxyEvaluator`` (zero-cost), ``LatencyEvaluator`` (predicted), ``SurrogateEvaluator``
  (surrogate; depends on proxy and latency), ``TrainedLookup`` (trained, a storage read),
  ``SyntheticEvaluator`` (no torch, for tests and driver benchmarks);
- ``evaluate_all`` runs a set in dependency order.
"""

from .base import Evaluator, Fidelity, Metric, NotEvaluated, digest, evaluate_all
from .errors import TrainingError
from .latency import LatencyEvaluator
from .proxy import DEFAULT_PROXIES, ProxyEvaluator
from .surrogate import AccuracySurrogate, SurrogateEvaluator
from .synthetic import SyntheticEvaluator
from .trained import TrainedLookup

__all__ = ["DEFAULT_PROXIES", "AccuracySurrogate", "Evaluator", "Fidelity", "LatencyEvaluator",
           "Metric", "NotEvaluated", "ProxyEvaluator", "SurrogateEvaluator",
           "SyntheticEvaluator", "TrainedLookup", "TrainingError", "digest", "evaluate_all"]
