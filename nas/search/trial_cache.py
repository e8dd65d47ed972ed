"""Optuna's trial cache (``_CachedStorage``) for the search driver: ordered, and aware of the
trials this process runs.

- Order. Optuna's cache re-reads only new and unfinished trials, but every ``get_all_trials``
  then sorts all cached trials by number with a Python key function; a sampler calls it several
  times per ask, so at 10,000 trials sorting was the largest cost of an ask left in the driver.
  Trial numbers are 0..n-1 in each study, so the list is kept indexed by number and updated in
  place as trials arrive; anything unexpected (a gap) falls back to Optuna's sort.
- Own trials. Optuna's cache re-reads every unfinished trial from the database on every read
  (twice per ask) and on every ``get_trial`` (three times per tell), although the driver wrote
  all of it itself. Here a trial this process created (or took from the queue) is kept in
  memory with every write this process makes to it, and read from there until it finishes. The
  database still decides every write: a trial another driver failed as stale refuses the tell
  (``UpdateFinishedTrialError``) and is then re-read. A trial this process finished is put into
  the cache as the database now holds it (the completion time is the one it wrote), so it is not
  read back either.
"""

from __future__ import annotations

import copy
import json
import operator
from collections.abc import Container, Sequence
from datetime import datetime
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.storages import _CachedStorage
from optuna.storages._cached_storage import _StudyInfo
from optuna.trial import FrozenTrial, TrialState

from .coordination import SwiftNASRDBStorage


def _detached(trial: FrozenTrial) -> FrozenTrial:
    """A copy whose dictionaries the caller may change (``Trial`` adds its suggestions to
    the one it holds); the values themselves are shared, as Optuna's cache shares them."""
    return FrozenTrial(
        number=trial.number, state=trial.state, value=None, values=trial.values,
        datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete,
        params=dict(trial.params), distributions=dict(trial.distributions),
        user_attrs=dict(trial.user_attrs), system_attrs=dict(trial.system_attrs),
        intermediate_values=dict(trial.intermediate_values), trial_id=trial._trial_id)


class OrderedCachedStorage(_CachedStorage):
    """``_CachedStorage`` with a number-ordered trial list and this process's running trials
    kept in memory (module docstring)."""

    def __init__(self, backend: SwiftNASRDBStorage) -> None:
        super().__init__(backend)
        self._backend: SwiftNASRDBStorage = backend
        self._ordered: dict[int, list[FrozenTrial]] = {}  # study id -> trials, index = number
        # running trials of this process, by trial id; the same objects as in the cache
        self._own: dict[int, FrozenTrial] = {}
        # study id -> trials this process finished since the last read of that study
        self._told: dict[int, set[int]] = {}

    def get_study_system_attr(self, study_id: int, key: str) -> Any:
        return self._backend.get_study_system_attr(study_id, key)

    # ---- order ----

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
            self._told.pop(study_id, None)
        super().delete_study(study_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            study = self._studies[study_id]
            if states is not None and all(not s.is_finished() for s in states):  # type: ignore[attr-defined]
                # every unfinished cached trial is in unfinished_trial_ids (Optuna's invariant):
                # the ask's look for WAITING trials need not scan the whole study
                numbers = sorted(self._trial_id_to_study_id_and_number[i][1]
                                 for i in study.unfinished_trial_ids)
                trials = [t for t in (study.trials[n] for n in numbers) if t.state in states]
            else:
                ordered = self._ordered.get(study_id)
                if ordered is None or len(ordered) != len(study.trials):
                    ordered = self._ordered[study_id] = sorted(
                        study.trials.values(), key=operator.attrgetter("number"))
                trials = list(ordered) if states is None else \
                    [t for t in ordered if t.state in states]
            return copy.deepcopy(trials) if deepcopy else trials

    # ---- own trials ----

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        # Optuna's, leaving out the trials this process knows (running or just finished here)
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            study = self._studies[study_id]
            told = self._told.pop(study_id, set())
            known = told | {i for i in self._own
                            if self._trial_id_to_study_id_and_number[i][0] == study_id}
            trials = self._backend._get_trials(
                study_id, states=None, included_trial_ids=study.unfinished_trial_ids - known,
                trial_id_greater_than=study.last_finished_trial_id, excluded_trial_ids=known)
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial._trial_id)
                study.unfinished_trial_ids.discard(trial._trial_id)
            # every trial up to here was read now or is known: finished here, or running here
            # (and so in unfinished_trial_ids)
            study.last_finished_trial_id = max([study.last_finished_trial_id, *told])

    def _adopt(self, trial: FrozenTrial) -> None:  # with self._lock held
        study_id, _ = self._trial_id_to_study_id_and_number[trial._trial_id]
        self._own[trial._trial_id] = trial
        self._studies[study_id].unfinished_trial_ids.add(trial._trial_id)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        with self._lock:
            _, number = self._trial_id_to_study_id_and_number[trial_id]
            trial = self._studies[study_id].trials[number]
            if trial.state == TrialState.RUNNING:
                self._adopt(trial)
        return trial_id

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            own = self._own.get(trial_id)
            if own is not None:
                return _detached(own)
        return super().get_trial(trial_id)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        with self._lock:
            own = self._own.get(trial_id)
            if own is not None:
                own._params[param_name] = distribution.to_external_repr(param_value_internal)
                own._distributions[param_name] = distribution

    def set_trial_attrs(self, trial_id: int, user_attrs: dict[str, Any],
                        system_attrs: dict[str, Any]) -> None:
        """Several attributes at once (``SwiftNASRDBStorage.set_trial_attrs``)."""
        user, system = self._backend.set_trial_attrs(trial_id, user_attrs, system_attrs)
        with self._lock:
            own = self._own.get(trial_id)
            if own is not None:
                # decoded from the stored text: what a read from the database gives (tuples
                # become lists)
                own._user_attrs.update({k: json.loads(v) for k, v in user.items()})
                own._system_attrs.update({k: json.loads(v) for k, v in system.items()})

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.set_trial_attrs(trial_id, {key: value}, {})

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.set_trial_attrs(trial_id, {}, {key: value})

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        try:
            if state.is_finished():
                completed: datetime | None = self._backend.finish_trial(trial_id, state, values)
                changed = True
            else:
                completed = None
                changed = self._backend.set_trial_state_values(trial_id, state, values)
        except BaseException:
            with self._lock:  # e.g. another driver failed it: the database's copy wins
                self._own.pop(trial_id, None)
            raise
        if state.is_finished():
            with self._lock:
                own = self._own.pop(trial_id, None)
                if own is not None:
                    own.state = state
                    if values is not None:
                        own.values = [float(v) for v in values]
                    own.datetime_complete = completed
                    study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
                    self._studies[study_id].unfinished_trial_ids.discard(trial_id)
                    self._told.setdefault(study_id, set()).add(trial_id)
        elif changed and state == TrialState.RUNNING:  # taken from the queue: ours now
            trial = self._backend.get_trial(trial_id)
            with self._lock:
                if trial_id in self._trial_id_to_study_id_and_number:
                    study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
                    self._add_trials_to_cache(study_id, [trial])
                    self._adopt(trial)
        return changed

    def flush(self, trial_id: int) -> None:
        """Write the trial's buffered parameters and attributes now (one transaction)."""
        self._backend.flush(trial_id)
