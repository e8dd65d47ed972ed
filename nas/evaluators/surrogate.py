"""A learned accuracy surrogate: trained top-1 from the architecture encoding and proxy scores.
An evaluator (:class:`SurrogateEvaluator`, fidelity ``surrogate``).

Fitted on the trained accuracies in storage (``swiftnas accuracy fit``), it predicts a
candidate's accuracy with an uncertainty, and ``swiftnas search --accuracy surrogate`` uses
that prediction as the accuracy objective.

Two scikit-learn models are candidates, both with a predictive standard deviation: a Gaussian
process (Matern 5/2 with one length scale per feature plus a noise term) and Bayesian ridge
regression. Which one is saved is decided by the evidence: leave-one-out (n <= 40) or 5-fold
cross-validated Spearman on the stored points, reported with the artifact.

The artifact is JSON (versioned, like the latency predictor): the training points and the
fitted hyper-parameters, refitted deterministically at load.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latency_models.predictor import Z90  # the one 90% interval constant
from nas.proxies.settings import DEFAULT_SCORE_WEIGHTS, LEGACY_SCORE_WEIGHTS

from .base import Evaluator, Fidelity, Metric, digest
from .errors import TrainingError

SURROGATE_VERSION = 1
ARTIFACT_NAME = "swiftnas-accuracy-surrogate"
PROXY_FEATURES = ("score",)  # computed by every search evaluation, so always available
MODELS = ("gp", "bayes_ridge")


def arch_features(arch: Any, params: int, macs: int, proxy_scores: dict[str, float]) -> list[float]:
    """The encoding: per stage depth, log2 width, MLP ratio and attention blocks; log params,
    log MACs; the proxies in ``PROXY_FEATURES``."""
    row: list[float] = []
    for s in arch.stages:
        row += [float(s.depth), math.log2(s.width), float(s.mlp_ratio),
                float(sum(k == "attn" for k in s.block_kinds()))]
    row += [math.log(max(params, 1)), math.log(max(macs, 1))]
    row += [float(proxy_scores[p]) for p in PROXY_FEATURES]
    return row


def feature_names(num_stages: int) -> list[str]:
    names = [f"s{i}_{f}" for i in range(num_stages)
             for f in ("depth", "log2_width", "mlp_ratio", "attn")]
    return [*names, "log_params", "log_macs", *PROXY_FEATURES]


def _build(kind: str, n_features: int, params: dict[str, Any] | None = None, *,
           restarts: int = 2):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
    from sklearn.linear_model import BayesianRidge

    if kind == "gp":
        kernel = (ConstantKernel(1.0, (1e-2, 1e2)) *
                  Matern(length_scale=np.full(n_features, 3.0), length_scale_bounds=(1e-1, 1e3),
                         nu=2.5) + WhiteKernel(0.1, (1e-4, 1e1)))
        if params is not None:  # the fitted kernel, no re-optimisation: deterministic
            from sklearn.gaussian_process.kernels import Kernel

            kernel = Kernel.clone_with_theta(kernel, np.array(params["theta"]))
            return GaussianProcessRegressor(kernel=kernel, normalize_y=True, optimizer=None)
        return GaussianProcessRegressor(kernel=kernel, normalize_y=True,
                                        n_restarts_optimizer=restarts, random_state=0)
    if kind == "bayes_ridge":
        return BayesianRidge()
    raise TrainingError(f"unknown surrogate model {kind!r}; choose one of {', '.join(MODELS)}")


def _fit(model: Any, X: np.ndarray, y: np.ndarray) -> Any:
    """Fit quietly: a length scale at its bound only means that feature does not matter."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def _predict(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = model.predict(x, return_std=True)
    return np.asarray(mean, float), np.asarray(std, float)


@dataclass
class AccuracySurrogate:
    kind: str
    feature_names: list[str]
    x_mean: list[float]
    x_std: list[float]
    X: list[list[float]]  # standardised training features
    y: list[float]  # trained top-1, percent
    params: dict[str, Any] = field(default_factory=dict)
    dataset: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    version: int = SURROGATE_VERSION
    # the default score's definition its "score" feature was computed with
    score_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SCORE_WEIGHTS))

    def __post_init__(self) -> None:
        self._model = _build(self.kind, len(self.feature_names), self.params or None)
        _fit(self._model, np.array(self.X), np.array(self.y))

    # ---------------------------------------------------------------- fitting
    @classmethod
    def fit(cls, rows: Sequence[list[float]], y: Sequence[float], *, names: list[str],
            dataset: str = "", kind: str | None = None) -> AccuracySurrogate:
        """Fit on (features, top-1) rows; ``kind=None`` picks the model with the best
        cross-validated Spearman (see the module docstring)."""
        X = np.asarray(rows, float)
        t = np.asarray(y, float)
        if len(t) < 5:
            raise TrainingError(f"an accuracy surrogate needs at least 5 trained architectures, "
                                f"but got {len(t)}; train more with `swiftnas train`")
        if not np.isfinite(X).all() or not np.isfinite(t).all():
            raise TrainingError("a feature or an accuracy is not finite; check the stored rows")
        mean, std = X.mean(0), X.std(0)
        std[std == 0] = 1.0
        Z = (X - mean) / std
        cv = {k: cross_validate(Z, t, k) for k in MODELS}
        chosen = kind or max(MODELS, key=lambda k: cv[k]["spearman"])
        model = _build(chosen, Z.shape[1])
        _fit(model, Z, t)
        params = {"theta": model.kernel_.theta.tolist()} if chosen == "gp" else {}
        return cls(kind=chosen, feature_names=names, x_mean=mean.tolist(), x_std=std.tolist(),
                   X=Z.tolist(), y=t.tolist(), params=params, dataset=dataset,
                   metrics={"n": len(t), "cv": cv, "chosen_by": "cv_spearman" if kind is None
                            else "user"})

    # ---------------------------------------------------------------- prediction
    def predict_rows(self, rows: Sequence[list[float]]) -> tuple[np.ndarray, np.ndarray]:
        """Mean top-1 and its standard deviation for feature rows."""
        Z = (np.asarray(rows, float) - np.array(self.x_mean)) / np.array(self.x_std)
        return _predict(self._model, Z)

    def predict(self, arch: Any, params: int, macs: int,
                proxy_scores: dict[str, float]) -> tuple[float, float, float]:
        """(top-1, low, high): the prediction and its 90% interval, in percent."""
        mean, std = self.predict_rows([arch_features(arch, params, macs, proxy_scores)])
        m, s = float(mean[0]), float(std[0])
        return m, m - Z90 * s, m + Z90 * s

    def predict_arch(self, arch: Any) -> tuple[float, float, float]:
        """(top-1, low, high) of an architecture, its proxy score computed as a search does
        (``nas.proxies.DEFAULT_SETTINGS``, the setting a surrogate is fitted with)."""
        from latency_models import FeatureCache
        from nas.proxies import DEFAULT_SETTINGS, score_arch

        feats = FeatureCache().get(arch)
        scores = score_arch(arch, proxies=PROXY_FEATURES, settings=DEFAULT_SETTINGS,
                            score_weights=self.score_weights)
        return self.predict(arch, feats.params, int(feats.total("macs")), scores)

    # ---------------------------------------------------------------- artifact
    def to_dict(self) -> dict[str, Any]:
        return {"name": ARTIFACT_NAME, "version": self.version, "kind": self.kind,
                "feature_names": self.feature_names, "x_mean": self.x_mean,
                "x_std": self.x_std, "X": self.X, "y": self.y, "params": self.params,
                "dataset": self.dataset, "metrics": self.metrics,
                "score_weights": self.score_weights}

    def save(self, path: str | Path) -> None:
        from search_spaces.files import atomic_write

        target = Path(path)
        atomic_write(target, lambda p: p.write_text(json.dumps(self.to_dict(), indent=1)))

    @classmethod
    def from_dict(cls, data: Any) -> AccuracySurrogate:
        if not isinstance(data, dict) or data.get("name") != ARTIFACT_NAME:
            raise TrainingError("not a swiftnas accuracy surrogate (make one with `swiftnas "
                                "accuracy fit`)")
        if data.get("version") != SURROGATE_VERSION:
            raise TrainingError(f"accuracy surrogate version {data.get('version')!r} is not "
                                f"supported (this swiftnas reads {SURROGATE_VERSION}); refit it")
        try:
            names = [str(n) for n in data["feature_names"]]
            X = np.asarray(data["X"], float)
            y = np.asarray(data["y"], float)
            mean = np.asarray(data["x_mean"], float)
            std = np.asarray(data["x_std"], float)
        except (KeyError, TypeError, ValueError):
            raise TrainingError("accuracy surrogate is damaged (missing or non-numeric "
                                "fields); refit it with `swiftnas accuracy fit`") from None
        if names != feature_names(4) or X.ndim != 2 or X.shape != (len(y), len(names)) or \
                mean.shape != (len(names),) or std.shape != (len(names),) or len(y) < 5:
            raise TrainingError("accuracy surrogate is damaged (its shapes do not match its "
                                "feature set); refit it with `swiftnas accuracy fit`")
        if not all(np.isfinite(a).all() for a in (X, y, mean, std)) or (std <= 0).any():
            raise TrainingError("accuracy surrogate holds non-finite numbers; refit it")
        # older files: the legacy score. A study run with this surrogate scores with the same
        # definition (its "score" feature), so any stored definition stays usable.
        weights = data.get("score_weights", LEGACY_SCORE_WEIGHTS)
        if not (isinstance(weights, dict) and weights and all(
                isinstance(k, str) and isinstance(v, int | float) for k, v in weights.items())):
            raise TrainingError("accuracy surrogate is damaged (field 'score_weights' is not a "
                                "table of proxy weights); refit it with `swiftnas accuracy fit`")
        return cls(kind=str(data["kind"]), feature_names=names, x_mean=mean.tolist(),
                   x_std=std.tolist(), X=X.tolist(), y=y.tolist(),
                   params=dict(data.get("params") or {}), dataset=str(data.get("dataset", "")),
                   metrics=dict(data.get("metrics") or {}), score_weights=dict(weights))

    @classmethod
    def load(cls, path: str | Path) -> AccuracySurrogate:
        p = Path(path)
        if not p.is_file():
            raise TrainingError(f"no accuracy surrogate at {str(p)!r}; fit one with `swiftnas "
                                "accuracy fit --out FILE`")
        if p.stat().st_size > 64 * 1024 * 1024:
            raise TrainingError(f"{str(p)!r} is too large to be an accuracy surrogate")
        try:
            data = json.loads(p.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise TrainingError(f"{str(p)!r} is not an accuracy surrogate (not JSON)") from None
        return cls.from_dict(data)


def cross_validate(Z: np.ndarray, y: np.ndarray, kind: str, *, folds: int = 5) -> dict[str, float]:
    """Spearman and Kendall of out-of-fold predictions, and the share of points inside their
    90% interval. Leave-one-out up to 40 points, else ``folds``-fold (fixed split)."""
    from scipy.stats import kendalltau, spearmanr

    n = len(y)
    k = n if n <= 40 else folds
    order = np.random.default_rng(0).permutation(n)
    pred, sd = np.zeros(n), np.zeros(n)
    for f in range(k):
        test = order[f::k]
        train = np.setdiff1d(order, test)
        model = _build(kind, Z.shape[1], restarts=0)  # the final fit restarts; folds need not
        _fit(model, Z[train], y[train])
        pred[test], sd[test] = _predict(model, Z[test])
    inside = float(np.mean(np.abs(pred - y) <= Z90 * sd))
    return {"spearman": float(spearmanr(pred, y)[0]), "kendall": float(kendalltau(pred, y)[0]),
            "mae": float(np.mean(np.abs(pred - y))), "coverage90": inside, "folds": k}


class SurrogateEvaluator(Evaluator):
    """Predicted top-1 with its 90% interval; reads the proxy score and the size."""

    name = "surrogate"
    metrics = ("top1",)
    fidelity = Fidelity.SURROGATE
    depends_on = ("proxy", "latency")

    def __init__(self, surrogate: AccuracySurrogate) -> None:
        self.surrogate = surrogate

    def key(self) -> str:
        return f"surrogate:{digest(self.surrogate.to_dict())[:16]}"

    def evaluate(self, arch: Any, inputs: Mapping[str, Metric]) -> dict[str, Metric]:
        t0 = time.perf_counter()
        top1, low, high = self.surrogate.predict(
            arch, int(inputs["params"].value), int(inputs["macs"].value),
            {p: inputs[p].value for p in PROXY_FEATURES})
        return {"top1": Metric(top1, low, high, time.perf_counter() - t0)}
