"""Pareto fronts of a study (accuracy score up, predicted latency down) and the SwiftFormer
presets scored the same way for reference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from search_spaces import ArchConfig

from .accuracy import objective
from .spec import ATTR
from .trials import complete_values, read_trials


def nondominated(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (score to maximise, latency to minimise) that no other point
    dominates. Ties (equal in both) are all kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    front: list[int] = []
    best = float("-inf")
    last: tuple[float, float] | None = None
    for i in order:
        score, _ = points[i]
        if score > best or (last is not None and points[i] == last):
            front.append(i)
            best = max(best, score)
            last = points[i]
    return sorted(front)


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` (score, latency) is at least as good as ``b`` in both and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def add_to_front(front: list[tuple[float, float]], point: tuple[float, float]) -> None:
    """Update ``front`` (the nondominated points so far, ties kept as in ``nondominated``) in
    place with one more point: a search's front in O(front) per trial, not O(n log n)."""
    if any(dominates(q, point) for q in front):
        return
    front[:] = [q for q in front if not dominates(point, q)]
    front.append(point)


@dataclass
class Candidate:
    """One evaluated architecture of a study (or a preset, with ``trial`` None)."""

    name: str
    arch: ArchConfig
    accuracy_score: float
    latency_ms: float
    latency_low_ms: float
    latency_high_ms: float
    params: int
    macs: int
    proxy_scores: dict[str, float]
    feasible: bool
    trial: int | None = None
    dominates: list[str] = field(default_factory=list)  # presets this candidate dominates
    # with an accuracy surrogate: accuracy_score is its predicted top-1, this its 90% interval
    accuracy_low: float | None = None
    accuracy_high: float | None = None
    latency_group: str = ""  # the predictor's calibration group (source | device | unit)

    @property
    def point(self) -> tuple[float, float]:
        return (self.accuracy_score, self.latency_ms)

    def mixers(self, *, short: bool = False) -> str:
        """Each stage's token mixer (``additive separable mhsa4 -``; ``-``: no attention);
        ``short``: ``A S M4 -`` for a narrow table."""
        labels = [s.mixer_label() for s in self.arch.stages]
        if short:  # "mhsa4" -> "M4", "additive" -> "A", "-" stays
            labels = [lab if lab == "-" else lab[0].upper() + lab.removeprefix("mhsa")
                      if lab.startswith("mhsa") else lab[0].upper() for lab in labels]
        return " ".join(labels)

    def to_row(self) -> dict[str, Any]:
        return {
            "name": self.name, "trial": self.trial, "accuracy_score": self.accuracy_score,
            "latency_ms": self.latency_ms, "latency_low_ms": self.latency_low_ms,
            "latency_high_ms": self.latency_high_ms, "params": self.params, "macs": self.macs,
            "attn_blocks": self.arch.num_attn_blocks, "feasible": self.feasible,
            "dominates": self.dominates, "arch_key": self.arch.key(),
            "latency_group": self.latency_group,
            **({"accuracy_low": self.accuracy_low, "accuracy_high": self.accuracy_high}
               if self.accuracy_low is not None else {}),
            **{f"proxy_{k}": v for k, v in self.proxy_scores.items()},
        }


def from_summary(name: str, summary: dict[str, Any], budget_ms: float,
                 trial: int | None = None, arch: ArchConfig | None = None) -> Candidate:
    """A stored evaluation summary as a Candidate (``arch``: its architecture, already parsed)."""
    acc = summary.get("accuracy") or {}
    return Candidate(
        name=name, arch=arch if arch is not None else ArchConfig.from_dict(summary["arch"]),
        accuracy_score=objective(summary), latency_ms=summary["latency_ms"],
        latency_low_ms=summary["latency_low_ms"], latency_high_ms=summary["latency_high_ms"],
        params=summary["params"], macs=summary["macs"], proxy_scores=summary["proxy_scores"],
        feasible=summary["latency_ms"] <= budget_ms, trial=trial,
        accuracy_low=acc.get("low"), accuracy_high=acc.get("high"),
        latency_group=summary.get("latency_group", ""),
    )


def study_candidates(study: optuna.Study) -> list[Candidate]:
    """Every complete trial of a swiftnas study, in trial order."""
    budget = study.user_attrs[ATTR]["latency_budget_ms"]
    return [
        from_summary(f"trial {t.number}", t.user_attrs[ATTR], budget, trial=t.number)
        for t in read_trials(study, states=(TrialState.COMPLETE,))
        if ATTR in t.user_attrs
    ]


def pareto_front(candidates: Sequence[Candidate], *, feasible_only: bool = True,
                 references: Sequence[Candidate] = ()) -> list[Candidate]:
    """The non-dominated candidates, one per architecture (its first trial), sorted by latency;
    each lists the ``references`` it dominates."""
    seen: set[str] = set()
    unique = []
    for c in candidates:
        if (c.feasible or not feasible_only) and c.arch.key() not in seen:
            seen.add(c.arch.key())
            unique.append(c)
    front = [unique[i] for i in nondominated([c.point for c in unique])]
    for c in front:
        c.dominates = [r.name for r in references if dominates(c.point, r.point)]
    return sorted(front, key=lambda c: c.latency_ms)



def study_front(study: optuna.Study, *, feasible_only: bool = True,
                references: Sequence[Candidate] = ()) -> list[Candidate]:
    """``pareto_front(study_candidates(study))``, reading only the front's trials: the front is
    found from the objective values (accuracy, latency) alone, so a 10,000-trial study costs
    one narrow query plus a few dozen trials, not 10,000 parsed records."""
    budget = study.user_attrs[ATTR]["latency_budget_ms"]
    values = complete_values(study)
    numbers = [n for n, v in values.items()
               if len(v) == 2 and (not feasible_only or v[1] <= budget)]
    keep = [numbers[i] for i in nondominated([(values[n][0], values[n][1]) for n in numbers])]
    trials = read_trials(study, states=(TrialState.COMPLETE,), numbers=keep)
    if any(ATTR not in t.user_attrs for t in trials):  # not all written by swiftnas: read all
        return pareto_front(study_candidates(study), feasible_only=feasible_only,
                            references=references)
    # duplicates of one architecture carry identical values (cached evaluation), so all of
    # them are on the front together and pareto_front keeps the first, as for the full list
    return pareto_front([from_summary(f"trial {t.number}", t.user_attrs[ATTR], budget,
                                      trial=t.number) for t in trials],
                        feasible_only=feasible_only, references=references)
