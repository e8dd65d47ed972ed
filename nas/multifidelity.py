"""Multi-fidelity search (above both the search and the training layers, which it joins):
after the cheap fidelity (proxy score or surrogate) has scored a
study's candidates, train the ones the acquisition rule picks (``acquisition``), refitting the
accuracy surrogate after every training, until the study holds ``budget`` trained candidates.

``swiftnas search --accuracy trained --train-data DATA --train-budget N`` runs it after the
search's trials. Trainings use ``swiftnas train``'s loop and land in the trained-results table
(the cache: an experiment already stored is never trained again, by any driver or command).
Each candidate trains into its own folder under ``out`` (checkpoint every epoch), so a killed
driver resumes the training it was in. Drivers of one study pick under the study's lock and
claim the candidate (study attribute ``swiftnas_training_claims``), so two drivers never train
the same candidate; a claim whose process is gone (same host) is taken over and resumed.

The study records what it trains with (attribute ``swiftnas_training``: dataset, its digest and
the recipe): a later run with another dataset or recipe is refused, not mixed into one front.
After every training the refitted surrogate is stored on the study (``swiftnas_front_surrogate``),
so ``pareto``, ``export`` and the dashboard show measured top-1 where a candidate was trained
and the surrogate's prediction with its 90% interval elsewhere.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.search.accuracy import (
    CLAIMS_ATTR,
    FRONT_SURROGATE_ATTR,
    TRAINING_ATTR,
    measured_top1,
)
from nas.search.acquisition import KAPPA, MIN_TRAINED, spread_front_picks, ucb_pick
from nas.search.spec import SearchError

# the trained-space recipe (benchmarks/trained_space.py): minutes per candidate on 2 CPU cores
DEFAULT_RECIPE = {"epochs": 2, "resolution": 64, "batch_size": 128, "lr": 2e-3,
                  "train_subset": 5000, "val_subset": 5000}


@dataclass
class TrainingEvent:
    kind: str  # "start" (a training begins) or "done" (its result is stored)
    trial: int
    arch_key: str
    trained: int  # trained candidates of the study so far
    budget: int
    top1: float | None = None


@dataclass
class FrontTrainingReport:
    trained: int  # trained candidates of the study (any driver, any run)
    new: int  # trained by this call
    budget: int


def check_train_options(budget: int, minutes: float | None = None, workers: int = 0) -> None:
    """The loop's options, checked once (the CLI calls this before the search's trials)."""
    if budget < 1:
        raise SearchError(f"--train-budget must be at least 1 training, but got {budget}; "
                          "e.g. --train-budget 12")
    if minutes is not None and not minutes > 0:
        raise SearchError(f"--train-minutes must be a positive number of minutes, but got "
                          f"{minutes}; e.g. --train-minutes 90")
    if workers < 0:
        raise SearchError(f"--workers must be >= 0, but got {workers}")


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim_is_live(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's driver: trust its claim
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_training_identity(study: Any, wanted: dict[str, Any]) -> None:
    """Refuse a run whose dataset or recipe differs from the study's recorded one."""
    stored = study.user_attrs.get(TRAINING_ATTR)
    if stored is None:
        return
    for key, label in (("dataset", "--train-data"), ("dataset_digest", "--train-data (its "
                       "contents)"), ("recipe_key", "training recipe")):
        if stored.get(key) != wanted[key]:
            raise SearchError(
                f"study {study.study_name!r} trains with another {label} "
                f"({str(stored.get('dataset', '?'))[:80]!r}, recipe {stored.get('recipe_key')}); "
                "rerun with the study's own training options, or choose a new --study")


def _features(c: Any) -> list[float]:
    from nas.evaluators.surrogate import arch_features

    return arch_features(c.arch, c.params, c.macs, c.proxy_scores)


_LAST_FIT: dict[tuple[Any, ...], Any] = {}  # the latest fit: the pick after a refit reuses it


def fit_front_surrogate(cands: list[Any], measured: dict[int, float]) -> Any | None:
    """The accuracy surrogate on the trained candidates (None below ``MIN_TRAINED``)."""
    if len(measured) < MIN_TRAINED:
        return None
    from nas.evaluators.surrogate import AccuracySurrogate, feature_names

    idx = sorted(measured)
    key = tuple((cands[i].arch.key(), measured[i]) for i in idx)
    if key not in _LAST_FIT:
        _LAST_FIT.clear()
        _LAST_FIT[key] = AccuracySurrogate.fit([_features(cands[i]) for i in idx],
                                               [measured[i] for i in idx],
                                               names=feature_names(4), kind="gp")
    return _LAST_FIT[key]


class _InlineTrainer:
    """Trains in this process, one candidate at a time (``--workers 0``)."""

    def __init__(self, dataset: Any, recipe: Any, device: str) -> None:
        self.dataset, self.recipe, self.device = dataset, recipe, device
        self._queue: list[tuple[int, Any, Path, dict[str, str]]] = []

    def submit(self, key: int, arch: Any, out: Path, ident: dict[str, str]) -> None:
        self._queue.append((key, arch, out, ident))

    def wait_one(self) -> tuple[int, Any]:
        from nas.training.trainer import TrainTarget, train

        key, arch, out, ident = self._queue.pop(0)
        return key, train(TrainTarget(arch=arch), self.dataset, self.recipe, out,
                          device=self.device, identity=ident)

    def close(self) -> None:
        pass


class _RayTrainer:
    """Trains on Ray tasks (``nas.training.batch.TrainingTasks``, ``train-batch``'s)."""

    def __init__(self, data: str, recipe: Any, workers: int, ray_address: str | None) -> None:
        from nas.training.batch import TrainingTasks

        self.tasks = TrainingTasks(data, recipe, workers=workers, ray_address=ray_address)
        self.pending: dict[Any, int] = {}

    def submit(self, key: int, arch: Any, out: Path, ident: dict[str, str]) -> None:
        self.pending[self.tasks.submit(arch.to_json(indent=None), out)] = key

    def wait_one(self) -> tuple[int, Any]:
        ref = self.tasks.wait_one(list(self.pending))
        key = self.pending.pop(ref)
        result, _, _ = self.tasks.result(ref)
        return key, result

    def close(self) -> None:
        self.tasks.close()


def train_front(storage_url: str, study_name: str, *, data: str, budget: int, out: Path,
                recipe: Any | None = None, kappa: float = KAPPA, device: str = "auto",
                workers: int = 0, ray_address: str | None = None,
                time_budget_s: float | None = None,
                on_event: Callable[[TrainingEvent], None] | None = None) -> FrontTrainingReport:
    """Train the study's candidates the acquisition rule picks until ``budget`` of its feasible
    candidates are trained, or ``time_budget_s`` has passed (trainings under way finish); on
    ``workers`` Ray tasks at once, or in this process with ``workers=0`` (see the module
    docstring)."""
    import time

    from nas.evaluators import TrainedLookup
    from nas.search.coordination import AskLock
    from nas.search.pareto import study_candidates
    from nas.search.results import load_study
    from nas.training import TrainRecipe
    from nas.training.data import load_data
    from nas.training.results import experiment_identity, record_training
    from nas.training.trainer import TrainTarget, versions

    check_train_options(budget, None if time_budget_s is None else time_budget_s / 60, workers)
    recipe = recipe or TrainRecipe(**DEFAULT_RECIPE)  # type: ignore[arg-type]
    dataset = load_data(data, recipe.resolution, train_subset=recipe.train_subset,
                        val_subset=recipe.val_subset)
    loaded = load_study(storage_url, study_name)
    study, store = loaded.study, loaded.storage
    wanted = {"dataset": dataset.name, "dataset_digest": dataset.digest,
              "recipe_key": recipe.key(), "recipe": recipe.to_dict()}
    check_training_identity(study, wanted)
    if TRAINING_ATTR not in study.user_attrs:
        study.set_user_attr(TRAINING_ATTR, wanted)

    # one candidate per architecture, feasible only (the front the user asked for)
    seen: set[str] = set()
    cands = []
    for c in study_candidates(study):
        if c.feasible and c.arch.key() not in seen:
            seen.add(c.arch.key())
            cands.append(c)
    if not cands:
        raise SearchError(f"study {study_name!r} has no feasible candidate to train yet; run "
                          "more trials or raise --latency-budget-ms")
    latency = [c.latency_ms for c in cands]

    def ident(c: Any) -> dict[str, str]:
        return experiment_identity(c.arch.key(), dataset.name, dataset.digest, recipe)

    lookup = TrainedLookup(store, dataset=dataset.name, dataset_digest=dataset.digest,
                           recipe_key=recipe.key())

    def measured_now() -> dict[int, float]:
        return measured_top1(lookup, cands)

    def claim_next() -> tuple[int | None, int]:
        """Under the lock: the next pick, claimed (None when the budget is met or taken), and
        how many candidates are trained."""
        measured = measured_now()
        claims = dict(study_attrs(study).get(CLAIMS_ATTR) or {})
        live = {k for k, owner in claims.items() if _claim_is_live(str(owner))}
        busy = set(measured) | {i for i, c in enumerate(cands) if c.arch.key() in live}
        if len(measured) + len(live - {cands[i].arch.key() for i in measured}) >= budget:
            return None, len(measured)  # met, or the rest of the budget is being trained
        pick = _pick(cands, latency, measured, busy, kappa)
        if pick is not None:
            claims[cands[pick].arch.key()] = _me()
            study.set_user_attr(CLAIMS_ATTR, claims)
        return pick, len(measured)

    runner: Any = (_RayTrainer(data, recipe, workers, ray_address) if workers
                   else _InlineTrainer(dataset, recipe, device))
    lock = AskLock(store.engine, f"{study_name}/training")
    started, new, in_flight = time.monotonic(), 0, 0
    try:
        while True:
            while in_flight < max(1, workers) and (
                    time_budget_s is None or time.monotonic() - started < time_budget_s):
                with lock.held():
                    pick, n_trained = claim_next()
                if pick is None:
                    break
                c = cands[pick]
                if on_event:
                    on_event(TrainingEvent("start", c.trial or 0, c.arch.key(), n_trained,
                                           budget))
                runner.submit(pick, c.arch, out / c.arch.key(), ident(c))
                in_flight += 1
            if not in_flight:
                break
            pick, result = runner.wait_one()
            in_flight -= 1
            c = cands[pick]
            stored = record_training(store, ident(c), arch_json=TrainTarget(arch=c.arch).arch_json,
                                     outcome=result, recipe=recipe,
                                     origin=str((out / c.arch.key()).resolve()),
                                     versions=versions())
            new += 1
            with lock.held():
                claims = dict(study_attrs(study).get(CLAIMS_ATTR) or {})
                claims.pop(c.arch.key(), None)
                study.set_user_attr(CLAIMS_ATTR, claims)
                measured = measured_now()
                sur = fit_front_surrogate(cands, measured)
                if sur is not None:
                    study.set_user_attr(FRONT_SURROGATE_ATTR, sur.to_dict())
            if on_event:
                on_event(TrainingEvent("done", c.trial or 0, c.arch.key(), len(measured),
                                       budget, top1=stored.top1))
    finally:
        runner.close()
        lock.close()
    return FrontTrainingReport(trained=len(measured_now()), new=new, budget=budget)


def study_attrs(study: Any) -> dict[str, Any]:
    """The study's user attributes, read fresh from storage (another driver may have written)."""
    storage = study._storage
    return dict(storage.get_study_user_attrs(study._study_id))


def _pick(cands: list[Any], latency: list[float], measured: dict[int, float], busy: set[int],
          kappa: float) -> int | None:
    if len(measured) < MIN_TRAINED:  # the first picks spread over the cheap front
        score = [c.accuracy_score for c in cands]
        first = [i for i in spread_front_picks(latency, score, MIN_TRAINED) if i not in busy]
        if first:
            return first[0]
        rest = spread_front_picks(latency, score, 1, exclude=sorted(busy))
        return rest[0] if rest else None
    sur = fit_front_surrogate(cands, measured)
    assert sur is not None
    mean, std = sur.predict_rows([_features(c) for c in cands])
    std = std.copy()
    for i in busy:
        std[i] = 0.0
    known = {**measured, **{i: float(mean[i]) for i in busy if i not in measured}}
    return ucb_pick(latency, mean, std, known, kappa=kappa)
