"""Optuna's trial cache (``_CachedStorage``), with the trial list kept in order.

Optuna's cache re-reads only new and unfinished trials, but every ``get_all_trials`` then sorts
all cached trials by number with a Python key function; a sampler calls it several times per
ask, so at 10,000 trials sorting was the largest cost of an ask left in the driver. Trial numbers
are 0..n-1 in each study, so the list is kept indexed by number and updated in place as trials
arrive; anything unexpected (a gap) falls back to Optuna's sort.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Container

from optuna.storages import RDBStorage, _CachedStorage
from optuna.trial import FrozenTrial, TrialState


class OrderedCachedStorage(_CachedStorage):
    """``_CachedStorage`` whose ``get_all_trials`` reads a maintained, number-ordered list."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._ordered: dict[int, list[FrozenTrial]] = {}  # study id -> trials, index = number

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        super()._add_trials_to_cache(study_id, trials)  # called with self._lock held
        ordered = self._ordered.get(study_id)
        if ordered is None:
            return
        for trial in trials:
            if trial.number < len(ordered):
                ordered[trial.number] = trial
            elif trial.number == len(ordered):
                ordered.append(trial)
            else:  # a gap: rebuild from Optuna's dict on the next read
                del self._ordered[study_id]
                return

    def delete_study(self, study_id: int) -> None:
        with self._lock:
            self._ordered.pop(study_id, None)
        super().delete_study(study_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            ordered = self._ordered.get(study_id)
            cached = self._studies[study_id].trials
            if ordered is None or len(ordered) != len(cached):
                ordered = self._ordered[study_id] = sorted(
                    cached.values(), key=operator.attrgetter("number"))
            trials = list(ordered) if states is None else \
                [t for t in ordered if t.state in states]
            return copy.deepcopy(trials) if deepcopy else trials
