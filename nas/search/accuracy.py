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
