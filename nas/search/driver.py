"""The search driver: one ``Driver`` per run of a study, asking Optuna for trials, sampling an
architecture per trial, evaluating it (from the SQL cache, in process, or on Ray workers) and
telling the result.

Contract: only the driver writes, in this order: the evaluation's rows (one transaction), then
the trial's attributes, its constraint and its tell (one transaction). A driver killed between
the two leaves a RUNNING trial whose heartbeat stops; the next run fails it and re-enqueues its
parameters, and the cached evaluation makes the retry instant. Several drivers may run one
study: they count and ask under one lock (``AskLock``) and together stop at exactly
``n_trials`` complete trials. A first Ctrl-C stops at the next safe point.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import fail_stale_trials
from optuna.trial import Trial, TrialState

from nas.storage import Storage
from nas.storage.storage import one_line
from search_spaces import ArchConfig

from .accuracy import objective, with_accuracy
from .cache import cached_evaluation, register_predictor, save_evaluation
from .coordination import AskLock, HeartbeatThread, SwiftNASRDBStorage, trial_counts, trial_total
from .evaluation import Evaluation, EvaluationSettings
from .executors import InlineExecutor, RayExecutor
from .pareto import add_to_front, nondominated
from .spec import ATTR, SearchError, StudySpec
from .trial_cache import OrderedCachedStorage

# Predicted latency - budget, stored as the one-element list under the system attribute
# "constraints": the format Optuna's own samplers write for a `constraints_func`, which Optuna 5
# reads back as `trial.constraints` and optuna-dashboard reads to mark infeasible trials. (Optuna
# 5's `set_constraint` key, "constraints:<name>", is invisible to optuna-dashboard.)
CONSTRAINTS_SYSTEM_ATTR = "constraints"


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Optuna's rule: feasible when every constraint value is <= 0."""
    return all(v <= 0 for v in trial.constraints.values())


def flat_user_attrs(summary: dict[str, Any]) -> dict[str, float]:
    """Scalar copies of a trial's headline metrics, so that outside tools (optuna-dashboard's
    trial table, ``optuna trials``, pandas via ``trials_dataframe``) can sort and filter on them.
    The full record stays in the nested ``swiftnas`` attribute."""
    flat = {
        "params_m": round(summary["params"] / 1e6, 4),
        "macs_g": round(summary["macs"] / 1e9, 4),
        "latency_ms": summary["latency_ms"],
        "latency_low_ms": summary["latency_low_ms"],
        "latency_high_ms": summary["latency_high_ms"],
    }
    flat.update({f"proxy_{name}": v for name, v in sorted(summary["proxy_scores"].items())})
    accuracy = summary.get("accuracy")
    if accuracy:
        flat.update(accuracy_top1=accuracy["top1"], accuracy_low=accuracy["low"],
                    accuracy_high=accuracy["high"])
    return {k: float(v) for k, v in flat.items()}


@dataclass
class SearchProgress:
    """What the progress bar shows; passed to the callback after every finished trial."""

    target: int
    complete: int = 0
    failed: int = 0  # FAIL trials in the study (every run's, every driver's)
    failed_this_run: int = 0  # of those, the ones this run failed
    feasible: int = 0
    best_feasible: float | None = None  # highest accuracy objective within the budget
    pareto_size: int = 0
    cache_hits: int = 0
    evaluated: int = 0  # evaluations run in this session (not from the cache)
    eval_seconds: float = 0.0  # proxy + predictor time of those evaluations
    started: float = field(default_factory=time.perf_counter)
    completed_this_run: int = 0
    interrupted: bool = False
    # "name vX" when a resumed study keeps the predictor it started with, not the shipped one
    resumed_with: str | None = None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def trials_per_minute(self) -> float:
        return 60.0 * self.completed_this_run / self.elapsed if self.elapsed > 0 else 0.0

    def note_feasible(self, accuracy: float) -> None:
        if self.best_feasible is None or accuracy > self.best_feasible:
            self.best_feasible = accuracy

    @property
    def eta_seconds(self) -> float | None:
        """Time to the target at this run's rate (None before the first trial of this run)."""
        rate = self.trials_per_minute / 60.0
        return max(0, self.target - self.complete) / rate if rate > 0 else None


# The heartbeat is used with ask/tell here (Optuna documents it for Study.optimize): the driver
# records it for every trial in flight. These warnings say only that.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


class StopOnCtrlC:
    """Turns the first Ctrl-C into a stop request that the driver acts on between steps, so it
    never lands between a trial's ask and tell or inside a storage write (which left a RUNNING
    trial behind). A second Ctrl-C interrupts at once with ``KeyboardInterrupt``.

    Only the main thread can own signal handlers; elsewhere, and where SIGINT is ignored (a
    background job), the handler is left as it is.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Callable[[int, FrameType | None], object] | int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


@dataclass
class StudyHandles:
    """One study's storage, as one object: the Optuna study (its writes go through the ordered
    write-through cache), swiftnas's tables, and Optuna's RDB storage read directly (counts by
    state, heartbeats, stale trials)."""

    study: optuna.Study
    store: Storage
    ostore: SwiftNASRDBStorage

    @property
    def cache(self) -> OrderedCachedStorage:
        storage = self.study._storage
        assert isinstance(storage, OrderedCachedStorage)
        return storage

    @property
    def study_id(self) -> int:
        return self.study._study_id


INTERRUPTED = "interrupted (Ctrl-C); rerun the same command to resume"


class Driver:
    """Runs a study until it holds ``n_trials`` complete trials (see the module docstring).

    State that lives for the run: ``progress`` (what the callbacks see), the running feasible
    ``front``, and the trials in flight: ``waiting`` (executor handle -> architecture key and the
    trials waiting for that evaluation), ``handle_of_key`` and ``asked`` (every trial between its
    ask and its tell)."""

    def __init__(self, spec: StudySpec, handles: StudyHandles,
                 executor: InlineExecutor | RayExecutor, ask_lock: AskLock,
                 settings: EvaluationSettings, surrogate: Any | None, n_trials: int, *,
                 heartbeat_interval: int, resumed_with: str | None = None,
                 on_start: Callable[[SearchProgress], None] | None = None,
                 on_progress: Callable[[SearchProgress], None] | None = None,
                 on_evaluation: Callable[[Evaluation], None] | None = None) -> None:
        self.spec, self.handles, self.executor, self.ask_lock = spec, handles, executor, ask_lock
        self.settings, self.surrogate, self.n_trials = settings, surrogate, n_trials
        self.heartbeat_interval = heartbeat_interval
        self.on_start, self.on_progress, self.on_evaluation = on_start, on_progress, on_evaluation
        self.progress = SearchProgress(target=n_trials, resumed_with=resumed_with)
        # feasible (score, latency) by architecture, for the Pareto size (one point per arch,
        # as in `swiftnas pareto`)
        self.points: dict[str, tuple[float, float]] = {}
        self.front: list[tuple[float, float]] = []
        self.waiting: dict[int, tuple[str, list[Trial]]] = {}
        self.handle_of_key: dict[str, int] = {}
        self.asked: dict[int, Trial] = {}
        self.failures_this_run = 0
        self.counted = time.monotonic()  # when _counts() last ran
        self.beats = HeartbeatThread(handles.ostore, heartbeat_interval / 2)

    # ------------------------------------------------------------------ the run
    def run(self) -> SearchProgress:
        study, ostore = self.handles.study, self.handles.ostore
        # the study's predictor artifact, stored once by digest: `pareto`, `export` and the
        # dashboard read the study's settings back from it
        register_predictor(self.handles.store, self.settings.predictor)
        fail_stale_trials(study)
        self._load_progress()
        if self.on_start:
            self.on_start(self.progress)
        if self.progress.complete >= self.n_trials:
            return self.progress
        poll_s = min(self.heartbeat_interval / 2, 1.0)  # how soon Ctrl-C acts with Ray workers
        last_check = time.monotonic()
        with StopOnCtrlC() as stop, self.beats:
            try:
                while not stop.requested:
                    self._fill(stop)
                    if not self.waiting and not stop.requested:
                        if self._counts()[0] >= self.n_trials:
                            break
                        # other drivers hold the last trials: wait, in case they fail or die
                        time.sleep(poll_s)
                    for handle, result in self.executor.wait(timeout=poll_s):
                        self._collect(handle, result, stop.requested)
                    if time.monotonic() - last_check >= self.heartbeat_interval / 2:
                        fail_stale_trials(study)  # a driver killed meanwhile left RUNNING trials
                        last_check = time.monotonic()
            except KeyboardInterrupt:  # a second Ctrl-C: stop without waiting for a safe point
                stop.requested = True
            if stop.requested:
                self._stop()
        # the study's own count: stale trials of a killed run, failed by any driver meanwhile
        self.progress.failed = trial_counts(ostore, self.handles.study_id)[TrialState.FAIL]
        return self.progress

    def _load_progress(self) -> None:
        progress = self.progress
        for t in self.handles.study.get_trials(deepcopy=False):
            if t.state == TrialState.COMPLETE:
                progress.complete += 1
                if is_feasible(t) and t.values:
                    progress.feasible += 1
                    key = ArchConfig.from_dict(t.user_attrs[ATTR]["arch"]).key() if ATTR in \
                        t.user_attrs else str(t.number)
                    self.points.setdefault(key, (t.values[0], t.values[1]))
                    progress.note_feasible(t.values[0])
            elif t.state == TrialState.FAIL:
                progress.failed += 1
        seen = list(self.points.values())
        self.front = [seen[i] for i in nondominated(seen)]
        progress.pareto_size = len(self.front)

    def _fill(self, stop: StopOnCtrlC) -> None:
        """Ask trials and start their evaluations until the executor is full (a cached
        architecture finishes its trial at once; one already being evaluated waits for it)."""
        cache = self.handles.cache
        while len(self.waiting) < self.executor.capacity and not stop.requested:
            trial = self._ask()
            if trial is None:
                break
            arch = self.spec.space.sample(trial)
            cache.flush(trial._trial_id)  # parameters and generation: one transaction
            key = arch.key()
            ev = cached_evaluation(self.handles.store, arch, self.settings)
            if ev is not None:
                self.progress.cache_hits += 1
                self._finish(trial, ev)
            elif key in self.handle_of_key:  # the same architecture is being evaluated
                self.waiting[self.handle_of_key[key]][1].append(trial)
            else:
                handle = self.executor.submit(arch)
                self.waiting[handle] = (key, [trial])
                self.handle_of_key[key] = handle

    def _collect(self, handle: int, result: Evaluation | BaseException,
                 stopping: bool) -> None:
        """One evaluation came back: store it and finish its trials, or fail them."""
        key, trials = self.waiting.pop(handle)
        del self.handle_of_key[key]
        if isinstance(result, Evaluation):  # kept even after a Ctrl-C: it is done
            save_evaluation(self.handles.store, result, self.settings)
            self.progress.evaluated += 1
            self.progress.eval_seconds += result.proxy_seconds + result.latency_seconds
            if self.on_evaluation:
                self.on_evaluation(result)
            for trial in trials:
                self._finish(trial, result)
        elif stopping:  # Ctrl-C reached the workers too
            for trial in trials:
                self._fail(trial, INTERRUPTED)
        else:
            self.failures_this_run += len(trials)
            for trial in trials:
                self._fail(trial, f"{type(result).__name__}: {result}")
            if self.failures_this_run > max(10, min(self.n_trials, 1000)):
                raise SearchError(
                    f"{self.failures_this_run} evaluations failed in this run (last: "
                    f"{type(result).__name__}: {one_line(result)[:300]}); see the trials' "
                    "fail_reason")

    def _stop(self) -> None:
        self.executor.close()
        self.progress.interrupted = True
        for trial in list(self.asked.values()):
            # a second Ctrl-C may have landed inside this trial's tell
            if self.handles.ostore.get_trial(trial._trial_id).state == TrialState.RUNNING:
                self._fail(trial, INTERRUPTED)

    # ------------------------------------------------------------------ trials
    def _counts(self) -> tuple[int, int]:
        """(complete, running) trials of the study in the storage, every driver's."""
        by_state = trial_counts(self.handles.ostore, self.handles.study_id)
        self.progress.complete = by_state[TrialState.COMPLETE]
        return by_state[TrialState.COMPLETE], by_state[TrialState.RUNNING]

    def _ask(self) -> Trial | None:
        """A new trial, or None when complete + running trials already reach ``n_trials``."""
        with self.ask_lock.held():
            # complete + running <= all trials: count by state (a scan of the study) only
            # near the end, or once a second for the progress bar
            if trial_total(self.handles.ostore, self.handles.study_id) >= self.n_trials or \
                    time.monotonic() - self.counted >= 1.0:
                complete, running = self._counts()
                self.counted = time.monotonic()
                if complete + running >= self.n_trials:
                    return None
            trial = self.handles.study.ask()
            self.asked[trial.number] = trial
        # the heartbeat thread beats within heartbeat_interval / 2; until then the trial
        # counts as alive by its start time (SwiftNASRDBStorage._get_stale_trial_ids)
        self.beats.track(trial._trial_id)
        return trial

    def _settle(self, trial: Trial, write: Callable[[], None]) -> bool:
        """Run ``write`` (the trial's tell); False when another driver had already failed the
        trial as stale (its evaluation is cached, so its retry is instant): dropped quietly."""
        try:
            write()
            return True
        except UpdateFinishedTrialError:
            return False
        finally:
            self.asked.pop(trial.number, None)
            self.beats.untrack(trial._trial_id)

    def _finish(self, trial: Trial, ev: Evaluation) -> None:
        summary = with_accuracy(ev.summary(), self.surrogate)
        accuracy = objective(summary)
        objectives = self.spec.study_objectives
        values = [accuracy if o.metric == "accuracy_score" else float(summary[o.metric])
                  for o in objectives]
        constraints = tuple(v - o.budget for o, v in zip(objectives, values, strict=True)
                            if o.budget is not None)

        def write() -> None:
            # the attributes, the constraints and the tell: one transaction
            self.handles.cache.set_trial_attrs(
                trial._trial_id, {**flat_user_attrs(summary), ATTR: summary},
                {CONSTRAINTS_SYSTEM_ATTR: constraints})
            self.handles.study.tell(trial, values)

        if not self._settle(trial, write):
            return
        progress = self.progress
        progress.complete += 1
        progress.completed_this_run += 1
        if all(c <= 0 for c in constraints):  # Optuna's rule (is_feasible)
            progress.feasible += 1
            progress.note_feasible(accuracy)
            if ev.arch.key() not in self.points:
                self.points[ev.arch.key()] = (accuracy, ev.latency_ms)
                add_to_front(self.front, (accuracy, ev.latency_ms))
                progress.pareto_size = len(self.front)
        if self.on_progress:
            self.on_progress(progress)

    def _fail(self, trial: Trial, reason: str) -> None:
        def write() -> None:
            trial.set_user_attr("fail_reason", reason[:2000])
            self.handles.study.tell(trial, state=TrialState.FAIL)

        if self._settle(trial, write):
            self.progress.failed += 1
            self.progress.failed_this_run += 1
            if self.on_progress:
                self.on_progress(self.progress)
