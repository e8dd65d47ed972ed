"""The accuracy objective of a study: the proxy ``score`` (default), or a learned surrogate's
predicted top-1 (``swiftnas search --accuracy surrogate --surrogate FILE``).

A surrogate study keeps its artifact on the study (user attribute ``swiftnas_surrogate``), so
`pareto`, `export` and the dashboard score the SwiftFormer presets with the same surrogate.
"""

from __future__ import annotations

from typing import Any

SURROGATE_ATTR = "swiftnas_surrogate"


def with_accuracy(summary: dict[str, Any], surrogate: Any | None) -> dict[str, Any]:
    """``summary`` plus the surrogate's prediction under ``accuracy`` (unchanged without a
    surrogate: the objective is then the proxy score)."""
    if surrogate is None:
        return summary
    from search_spaces import ArchConfig

    arch = ArchConfig.from_dict(summary["arch"])
    top1, low, high = surrogate.predict(arch, summary["params"], summary["macs"],
                                        summary["proxy_scores"])
    return {**summary, "accuracy": {"source": "surrogate", "top1": top1, "low": low,
                                    "high": high, "dataset": surrogate.dataset}}


def objective(summary: dict[str, Any]) -> float:
    """The accuracy objective stored in a trial summary."""
    acc = summary.get("accuracy")
    return float(acc["top1"]) if acc else float(summary["proxy_scores"]["score"])


def study_surrogate(study_user_attrs: dict[str, Any]) -> Any | None:
    artifact = study_user_attrs.get(SURROGATE_ATTR)
    if artifact is None:
        return None
    from nas.evaluators.surrogate import AccuracySurrogate

    return AccuracySurrogate.from_dict(artifact)


# ------------------------------------------------------------------ a study that trains its front
# (``nas.multifidelity`` trains; these read what it stored, through the evaluators)
TRAINING_ATTR = "swiftnas_training"  # dataset, its digest and the recipe the study trains with
CLAIMS_ATTR = "swiftnas_training_claims"  # arch key -> "host:pid" of the driver training it
FRONT_SURROGATE_ATTR = "swiftnas_front_surrogate"  # refitted after every training


def measured_top1(lookup: Any, cands: list[Any]) -> dict[int, float]:
    """Index -> stored top-1 of the candidates ``lookup`` (a ``TrainedLookup``) has."""
    from nas.evaluators import NotEvaluated

    out: dict[int, float] = {}
    for i, c in enumerate(cands):
        try:
            out[i] = lookup.evaluate(c.arch, {})["top1"].value
        except NotEvaluated:
            continue
    return out


def trained_top1(loaded: Any, candidates: list[Any]) -> dict[str, tuple[str, float, float | None,
                                                                          float | None]]:
    """arch key -> ("measured", top1, None, None) for a trained candidate of a multi-fidelity
    study, ("predicted", mean, low, high) from the study's front surrogate elsewhere; empty for
    a study without training. The two fidelities are evaluators: ``TrainedLookup`` and
    ``SurrogateEvaluator``."""
    spec = loaded.study.user_attrs.get(TRAINING_ATTR)
    if spec is None:
        return {}
    from nas.evaluators import AccuracySurrogate, Metric, SurrogateEvaluator, TrainedLookup

    lookup = TrainedLookup(loaded.storage, dataset=spec["dataset"],
                           dataset_digest=spec["dataset_digest"], recipe_key=spec["recipe_key"])
    measured = measured_top1(lookup, candidates)
    artifact = loaded.study.user_attrs.get(FRONT_SURROGATE_ATTR)
    predict = (SurrogateEvaluator(AccuracySurrogate.from_dict(artifact))
               if artifact is not None else None)
    out: dict[str, tuple[str, float, float | None, float | None]] = {}
    for i, c in enumerate(candidates):
        if i in measured:
            out[c.arch.key()] = ("measured", measured[i], None, None)
        elif predict is not None:
            inputs = {"params": Metric(c.params), "macs": Metric(c.macs),
                      **{p: Metric(v) for p, v in c.proxy_scores.items()}}
            m = predict.evaluate(c.arch, inputs)["top1"]
            out[c.arch.key()] = ("predicted", m.value, m.low, m.high)
    return out
