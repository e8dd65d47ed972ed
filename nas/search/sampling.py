"""The study's sampler, told the search space up front.

Optuna's NSGA-II and multivariate TPE infer the space each ask as the intersection of every
complete trial's distributions (``IntersectionSearchSpace``). A new sampler (every driver start)
scans the whole study once for it, comparing 20 distributions per trial: 7.7 s at 10,000 trials,
and every ask re-reads the trial list. swiftnas knows the space: it is the study's identity,
refused on resume when it differs, and every trial of a swiftnas study asks for all of its
parameters. So the samplers here return it directly; the sampling itself is Optuna's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from search_spaces import SwiftFormerSpace

    from .spec import StudySpec


def space_distributions(space: SwiftFormerSpace) -> dict[str, BaseDistribution]:
    """The Optuna distributions ``space.sample`` suggests, sorted by name as Optuna sorts the
    inferred space (the order the samplers draw in, so seeded runs stay reproducible). Single
    choices are never suggested (``SwiftFormerSpace.sample``), so none is single here."""
    return {name: CategoricalDistribution(choices)
            for name, choices in sorted(space.parameters().items())}


class _KnownSpace:
    """The relative search space is the given one (set ``_known_space``), not inferred."""

    _known_space: dict[str, BaseDistribution]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial,
                                    ) -> dict[str, BaseDistribution]:
        return dict(self._known_space)


class KnownSpaceNSGAIISampler(_KnownSpace, optuna.samplers.NSGAIISampler):
    """NSGA-II over a given search space instead of the inferred intersection, and without
    rescanning the study on every ask: Optuna's ``get_trial_generation`` walks every complete
    trial to find the newest generation (27 ms per ask at 10,000 trials); here the count per
    generation is kept and only trials that are new, or were unfinished at the last look, are
    read. The parents of a generation are picked from the ask's cached trial list, as the
    generation lookup already does, instead of a second full read."""

    def __init__(self, search_space: dict[str, BaseDistribution], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._known_space = dict(search_space)
        self._tally: _GenerationTally | None = None
        self._parents: tuple[int, int, list[FrozenTrial]] | None = None  # study, generation

    def get_trial_generation(self, study: optuna.Study, trial: FrozenTrial) -> int:
        key = self._get_generation_key()
        generation = trial.system_attrs.get(key)
        if generation is not None:
            return int(generation)
        trials = study._get_trials(deepcopy=False, use_cache=True)
        if trials and trials[-1].number != len(trials) - 1:  # not one entry per number
            return super().get_trial_generation(study, trial)
        if self._tally is None or self._tally.study_id != study._study_id:
            self._tally = _GenerationTally(study._study_id, key)
        newest, count = self._tally.update(trials)
        assert self._population_size is not None, "Population size must be set."
        generation = newest if count < self._population_size else newest + 1
        study._storage.set_trial_system_attr(trial._trial_id, key, generation)
        return generation

    def get_parent_population(self, study: optuna.Study, generation: int,
                              ) -> list[FrozenTrial]:
        if generation == 0:
            return []
        # a generation's parents are complete trials, fixed once the first driver to reach the
        # generation chose them: look them up once per generation, not once per ask
        if self._parents is not None and self._parents[:2] == (study._study_id, generation):
            return self._parents[2]
        key = self._get_parent_cache_key_prefix() + str(generation)
        storage = study._storage
        cached = (storage.get_study_system_attr(study._study_id, key)
                  if hasattr(storage, "get_study_system_attr")  # one row (OrderedCachedStorage)
                  else storage.get_study_system_attrs(study._study_id).get(key))
        if cached is None:  # the first driver here chooses them, as Optuna's sampler does
            # (in selection order; later calls return them in number order, as Optuna's do)
            parents = self.select_parent(study, generation)
            storage.set_study_system_attr(study._study_id, key, [t._trial_id for t in parents])
            return parents
        ids = set(cached)
        parents = [t for t in study._get_trials(deepcopy=False, use_cache=True)
                   if t._trial_id in ids]
        self._parents = (study._study_id, generation, parents)
        return parents


# Optuna names these attributes after the sampler's class; keep NSGA-II's names, so a study
# resumes the generations whichever of the two wrote them, and Optuna's tools read them.
KnownSpaceNSGAIISampler._GENERATION_KEY = optuna.samplers.NSGAIISampler._GENERATION_KEY
KnownSpaceNSGAIISampler._PARENT_CACHE_KEY_PREFIX = \
    optuna.samplers.NSGAIISampler._PARENT_CACHE_KEY_PREFIX


class _GenerationTally:
    """Complete trials per NSGA-II generation, updated incrementally from a number-indexed
    trial list. A trial is counted once, when first seen COMPLETE; one still unfinished is
    looked at again next time (trials finish out of order when several run at once)."""

    def __init__(self, study_id: int, key: str) -> None:
        self.study_id, self._key = study_id, key
        self._counts: dict[int, int] = {}
        self._seen = 0  # trials[:_seen] were looked at
        self._unfinished: set[int] = set()  # their numbers, to look at again

    def update(self, trials: list[FrozenTrial]) -> tuple[int, int]:
        """(newest generation, its complete trials) as Optuna computes them: generation 0 and
        0 trials before any complete trial has one."""
        fresh = [*self._unfinished, *range(self._seen, len(trials))]
        self._seen = len(trials)
        for number in fresh:
            t = trials[number]
            if t.state == TrialState.COMPLETE:
                self._unfinished.discard(number)
                g = t.system_attrs.get(self._key, -1)
                self._counts[g] = self._counts.get(g, 0) + 1
            elif t.state.is_finished():
                self._unfinished.discard(number)
            else:
                self._unfinished.add(number)
        newest = max([0, *self._counts])
        return newest, self._counts.get(newest, 0)


class KnownSpaceTPESampler(_KnownSpace, optuna.samplers.TPESampler):
    """Multivariate TPE over a given search space instead of the inferred intersection."""

    def __init__(self, search_space: dict[str, BaseDistribution], **kwargs: Any) -> None:
        super().__init__(multivariate=True, **kwargs)
        self._known_space = dict(search_space)


def make_sampler(spec: StudySpec, offset: int) -> optuna.samplers.BaseSampler:
    """The sampler of ``spec``. A resumed study must not replay the first run's random numbers:
    the seed is shifted by the number of trials already in the study (still deterministic for a
    given history)."""
    seed = None if spec.seed is None else spec.seed + offset
    if spec.sampler == "nsga2":
        return KnownSpaceNSGAIISampler(space_distributions(spec.space),
                                       population_size=spec.population_size, seed=seed)
    if spec.sampler == "tpe":
        return KnownSpaceTPESampler(space_distributions(spec.space), seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)
