"""The search driver: an Optuna multi-objective study run with ask/tell.

The driver asks Optuna for trials, samples an architecture per trial, evaluates it (from the SQL
cache, in process, or on Ray workers) and tells the result. Only the driver writes, in this
order: evaluation rows (one transaction), then the trial's attributes and its tell. A driver
killed between the two leaves a RUNNING trial whose heartbeat stops; the next run fails it and
re-enqueues its parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``), and the cached
evaluation makes the retry instant.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.study import StudyDirection
from optuna.trial import Trial, TrialState

from latency_models import LatencyPredictor, PredictorError
from latency_models.defaults import load_predictor
from nas.evaluators import digest
from nas.evaluators.cluster import check_reachable
from nas.proxies.settings import LEGACY_SCORE_WEIGHTS
from nas.storage import Storage, StorageError, open_storage
from nas.storage.storage import connect_problem, engine_kwargs, one_line
from search_spaces import PRESETS, ArchConfig, SwiftFormerSpace
from search_spaces.text import masked_url

from .accuracy import SURROGATE_ATTR, objective, with_accuracy
from .cache import cached_evaluation, register_predictor, save_evaluation, stored_predictor
from .coordination import (
    AskLock,
    HeartbeatThread,
    SwiftNASRDBStorage,
    trial_counts,
    trial_total,
)
from .evaluation import Evaluation, EvaluationSettings
from .executors import InlineExecutor, RayExecutor, make_executor
from .pareto import add_to_front, nondominated
from .sampling import make_sampler
from .spec import ATTR, SearchError, StudySpec, check_identity
from .trial_cache import OrderedCachedStorage

DIRECTIONS = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
METRIC_NAMES = ("accuracy_score", "latency_ms")
# Predicted latency - budget, stored as the one-element list under the system attribute
# "constraints": the format Optuna's own samplers write for a `constraints_func`, which Optuna 5
# reads back as `trial.constraints` and optuna-dashboard reads to mark infeasible trials. (Optuna
# 5's `set_constraint` key, "constraints:<name>", is invisible to optuna-dashboard.)
CONSTRAINTS_SYSTEM_ATTR = "constraints"
DEFAULT_HEARTBEAT_S = 10
# `make demo`'s study (iPhone 14, 1.2 ms, NSGA-II population 10, from the presets): median trials
# until a trial first dominated each preset within the budget, over 5 seeds of 150 trials
# (`python -m benchmarks.search demo`, benchmarks/results/search.json "demo"). `swiftnas
# search` quotes it when its front beats no preset yet.
# Re-measured with latency v3 (under which L1 fits the budget too) and the default score of
# 2026-12-07 (`0.9 log(grad_norm) + 0.1 log(params)`).
DEMO_TRIALS_TO_DOMINATE: dict[str, float] = {"SwiftFormer-XS": 10, "SwiftFormer-S": 26,
                                             "SwiftFormer-L1": 47}


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


def optuna_storage(url: str, heartbeat_interval: int = DEFAULT_HEARTBEAT_S, *,
                   create: bool = True) -> SwiftNASRDBStorage:
    """Optuna's storage on ``url``; a RUNNING trial whose heartbeat is older than twice
    ``heartbeat_interval`` is failed and re-enqueued once with the same parameters."""
    # Two drivers on a new database may both create Optuna's tables; the loser sees "already
    # exists" and simply retries (`swiftnas db upgrade` beforehand avoids the race).
    for attempt in range(3):
        try:
            return SwiftNASRDBStorage(
                url, engine_kwargs=engine_kwargs(url),
                heartbeat_interval=heartbeat_interval, grace_period=2 * heartbeat_interval,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                skip_table_creation=not create,
            )
        except Exception as exc:  # Optuna wraps connection errors in several types
            if isinstance(exc, StorageError):
                raise
            if attempt < 2 and "already exists" in str(exc):
                time.sleep(0.5 + attempt)
                continue
            raise StorageError(f"cannot open storage {masked_url(url)} for Optuna: "
                               f"{connect_problem(exc)}; check "
                               "the URL, that the server runs and that you may connect") from exc
    raise AssertionError("unreachable")


def _load_predictor(path: str | None) -> LatencyPredictor:
    try:
        return load_predictor(path)
    except (OSError, ValueError) as exc:
        raise SearchError(f"cannot load latency predictor {path!r}: {exc}") from exc


def prepare_settings(spec: StudySpec) -> EvaluationSettings:
    """Validate everything that needs no database (device, predictor) before anything is
    written."""
    predictor = _load_predictor(spec.predictor_path)
    try:
        predictor.resolve_group(spec.device)
    except PredictorError as exc:
        raise SearchError(str(exc)) from None
    return EvaluationSettings(device=spec.device, predictor=predictor.to_dict(), proxy=spec.proxy,
                              proxies=spec.proxies)


def open_storages(storage_url: str, heartbeat_interval: int = DEFAULT_HEARTBEAT_S,
                  ) -> tuple[Storage, SwiftNASRDBStorage]:
    """swiftnas's and Optuna's storage on ``storage_url`` (creating their tables, no study)."""
    return open_storage(storage_url), optuna_storage(storage_url, heartbeat_interval)


def load_surrogate(spec: StudySpec) -> Any | None:
    """The accuracy surrogate of ``spec`` (None: the objective is the proxy score)."""
    if spec.surrogate_path is None:
        return None
    from nas.evaluators.surrogate import AccuracySurrogate

    return AccuracySurrogate.load(spec.surrogate_path)


def own_predictor(spec: StudySpec, settings: EvaluationSettings, store: Storage,
                  ostore: SwiftNASRDBStorage) -> tuple[EvaluationSettings, str | None]:
    """A resumed study keeps the predictor it was started with when none is named: the
    predictor is part of its identity, so the shipped one of a newer swiftnas (v3) never
    replaces its own (v2.4) silently, and resuming is not refused either. Returns the settings
    to run with and, when they changed, "name vVERSION" of the study's own predictor."""
    if spec.predictor_path is not None:
        return settings, None  # named: it must match, as every identity field (check_identity)
    existing = next((s for s in ostore.get_all_studies() if s.study_name == spec.name), None)
    digest = ((existing.user_attrs.get(ATTR) or {}).get("predictor_digest")
              if existing is not None else None)
    if digest is None or digest == settings.predictor_digest:
        return settings, None
    artifact = stored_predictor(store, digest)
    if artifact is None:
        return settings, None  # check_identity then says which predictor the study needs
    own = dataclasses.replace(settings, predictor=artifact)
    return own, f"{artifact.get('name', '')} v{artifact.get('version', '?')}"


def own_score(spec: StudySpec, settings: EvaluationSettings, ostore: SwiftNASRDBStorage,
              surrogate: Any | None) -> EvaluationSettings:
    """The score definition a run uses: a resumed study's own (its identity records it; studies
    from before the record used the legacy one), else the surrogate's (its "score" feature was
    computed with it), else this swiftnas's default. A new default never stops a study from
    resuming."""
    existing = next((s for s in ostore.get_all_studies() if s.study_name == spec.name), None)
    identity = (existing.user_attrs.get(ATTR) if existing is not None else None)
    if isinstance(identity, dict):
        weights = identity.get("score", LEGACY_SCORE_WEIGHTS)
    elif surrogate is not None:
        weights = surrogate.score_weights
    else:
        return settings
    if not (isinstance(weights, dict) and weights
            and all(isinstance(v, int | float) for v in weights.values())):
        return settings  # a damaged record: check_identity refuses it with its own message
    return dataclasses.replace(settings, score_weights=dict(weights))


def open_study(spec: StudySpec, settings: EvaluationSettings, storage_url: str, *,
               heartbeat_interval: int = DEFAULT_HEARTBEAT_S, n_trials: int | None = None,
               storages: tuple[Storage, SwiftNASRDBStorage] | None = None,
               surrogate: Any | None = None,
               ) -> tuple[optuna.Study, Storage, SwiftNASRDBStorage]:
    """Create study ``spec.name`` or load it for resuming (refusing a different identity)."""
    store, ostore = storages or open_storages(storage_url, heartbeat_interval)
    artifact = surrogate.to_dict() if surrogate is not None else None
    wanted = spec.identity(settings.predictor_digest,
                           digest(artifact) if artifact is not None else None,
                           score_weights=settings.score_weights)
    # not optuna.get_all_study_summaries: it loads and deep-copies every trial of every study
    existing = {s.study_name: s for s in ostore.get_all_studies()}
    # one COUNT query: Optuna's get_n_trials reads every trial (6 s at 10,000 trials)
    n_existing = (sum(trial_counts(ostore, ostore.get_study_id_from_name(spec.name)).values())
                  if spec.name in existing else 0)
    fresh = spec.name not in existing or (
        # a run killed between creating the study and labelling it: adopt the empty study
        n_existing == 0 and ATTR not in existing[spec.name].user_attrs)
    if not fresh:
        summary = existing[spec.name]
        if list(summary.directions) != DIRECTIONS:
            raise SearchError(
                f"study {spec.name!r} in {store.url} exists with other objectives "
                f"({', '.join(d.name.lower() for d in summary.directions)}); choose a new "
                "--study name"
            )
        check_identity(spec.name, summary.user_attrs.get(ATTR), wanted, store.url)
    study = optuna.create_study(
        study_name=spec.name, storage=OrderedCachedStorage(ostore),
        directions=["maximize", "minimize"], sampler=make_sampler(spec, n_existing),
        load_if_exists=True,
    )
    if fresh:
        if artifact is not None:  # first: a study with the identity always has its surrogate
            study.set_user_attr(SURROGATE_ATTR, artifact)
        study.set_user_attr(ATTR, wanted)
        # after the identity: another driver that sees trials in a study adopts it only when
        # it is labelled (a killed run in between leaves a study without presets, no harm)
        if spec.start_from_presets:
            enqueue_presets(study, spec.space, limit=n_trials)
    if study.metric_names != list(METRIC_NAMES):  # labels Optuna's plots, CLI, dashboard
        study.set_metric_names(list(METRIC_NAMES))
    study.set_user_attr("sampler", spec.sampler)  # the latest run's (may change on resume)
    study.set_user_attr("seed", spec.seed)
    # `swiftnas studies` judges stale trials by the grace period of the latest run
    study.set_user_attr("heartbeat_interval", heartbeat_interval)
    return study, store, ostore


def enqueue_presets(study: optuna.Study, space: SwiftFormerSpace, *,
                    limit: int | None = None) -> list[str]:
    """Queue SwiftFormer's presets that ``space`` contains (at most ``limit``, so a short
    study leaves none waiting) as the study's first trials (Optuna's ``enqueue_trial``): the
    search starts from the hand designs, and its front includes or dominates each of them that
    fits the budget. Returns the names queued."""
    queued: list[str] = []
    for name, arch in PRESETS.items():
        params = space.params_of(arch)
        if params is not None and (limit is None or len(queued) < limit):
            study.enqueue_trial(params, skip_if_exists=True)
            queued.append(name)
    return queued


def check_run_options(n_trials: int, workers: int, heartbeat_interval: int,
                      ray_address: str | None = None) -> None:
    if n_trials <= 0:
        raise SearchError(f"--trials must be a positive number, but got {n_trials}")
    if workers < 0:
        raise SearchError(f"--workers must be >= 0, but got {workers}; 0 evaluates in this "
                          "process, K >= 1 on K Ray workers")
    if heartbeat_interval < 1:
        raise SearchError(f"--heartbeat-interval must be a whole number of seconds >= 1, but got "
                          f"{heartbeat_interval}")
    if ray_address is not None:
        if workers == 0:
            raise SearchError("--ray-address needs --workers K >= 1 (the number of evaluations "
                              "to run at once on the cluster)")
        check_reachable(ray_address)


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """A database that fails mid-run (read-only, full disk, server gone) becomes one line;
    completed trials are already stored, and the next run fails what was left RUNNING."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.DatabaseError,
            optuna.exceptions.StorageInternalError) as exc:
        cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else (exc.__cause__ or exc)
        if isinstance(cause, sa.exc.DBAPIError):
            cause = cause.orig
        raise StorageError(
            f"storage {url} failed during the search: {one_line(cause)[:300]}; completed trials "
            "are kept: fix the database (disk space, permissions, server) and rerun the same "
            "command to resume") from exc


def run_study(
    spec: StudySpec, storage_url: str, n_trials: int, *, workers: int = 0,
    ray_address: str | None = None, heartbeat_interval: int = DEFAULT_HEARTBEAT_S,
    on_start: Callable[[SearchProgress], None] | None = None,
    on_progress: Callable[[SearchProgress], None] | None = None,
    on_evaluation: Callable[[Evaluation], None] | None = None,
) -> SearchProgress:
    """Run ``spec`` until the study holds ``n_trials`` complete trials (resuming it when it
    exists). Several drivers may run the same study at once: together they stop at exactly
    ``n_trials`` complete (see ``coordination``). Ctrl-C stops at the next safe point (see
    ``StopOnCtrlC``): results already computed are kept, the trials still in flight are failed,
    and ``interrupted`` is set.

    Everything is validated, and the executor started, before the study is created or changed.
    ``on_start`` is called once the study is open, ``on_progress`` after every finished trial,
    ``on_evaluation`` after every new (not cached) evaluation.
    """
    check_run_options(n_trials, workers, heartbeat_interval, ray_address)
    settings = prepare_settings(spec)
    surrogate = load_surrogate(spec)
    storages = open_storages(storage_url, heartbeat_interval)
    settings, resumed_with = own_predictor(spec, settings, *storages)
    settings = own_score(spec, settings, storages[1], surrogate)
    executor = make_executor(settings, workers=workers, ray_address=ray_address)
    ask_lock = AskLock(storages[0].engine, spec.name)
    try:
        with storage_errors(storages[0].url):
            study, store, ostore = open_study(spec, settings, storage_url,
                                              heartbeat_interval=heartbeat_interval,
                                              n_trials=n_trials,
                                              storages=storages, surrogate=surrogate)
            return _drive(spec, study, store, ostore, executor, ask_lock, settings, surrogate,
                          n_trials, resumed_with=resumed_with,
                          heartbeat_interval=heartbeat_interval, on_start=on_start,
                          on_progress=on_progress, on_evaluation=on_evaluation)
    finally:
        executor.close()
        ask_lock.close()


def _drive(
    spec: StudySpec, study: optuna.Study, store: Storage, ostore: SwiftNASRDBStorage,
    executor: InlineExecutor | RayExecutor, ask_lock: AskLock, settings: EvaluationSettings,
    surrogate: Any | None, n_trials: int, *, heartbeat_interval: int,
    resumed_with: str | None = None,
    on_start: Callable[[SearchProgress], None] | None,
    on_progress: Callable[[SearchProgress], None] | None,
    on_evaluation: Callable[[Evaluation], None] | None,
) -> SearchProgress:
    predictor_id = register_predictor(store, settings.predictor)
    cache = study._storage
    assert isinstance(cache, OrderedCachedStorage)
    fail_stale_trials(study)

    progress = SearchProgress(target=n_trials, resumed_with=resumed_with)
    # feasible (score, latency) by architecture, for the Pareto size (one point per arch, as in
    # `swiftnas pareto`)
    points: dict[str, tuple[float, float]] = {}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            progress.complete += 1
            if is_feasible(t) and t.values:
                progress.feasible += 1
                key = ArchConfig.from_dict(t.user_attrs[ATTR]["arch"]).key() if ATTR in \
                    t.user_attrs else str(t.number)
                points.setdefault(key, (t.values[0], t.values[1]))
                progress.note_feasible(t.values[0])
        elif t.state == TrialState.FAIL:
            progress.failed += 1
    seen = list(points.values())
    front = [seen[i] for i in nondominated(seen)]
    progress.pareto_size = len(front)
    if on_start:
        on_start(progress)
    if progress.complete >= n_trials:
        return progress

    # executor handle -> (arch key, trials waiting for that evaluation)
    waiting: dict[int, tuple[str, list[Trial]]] = {}
    handle_of_key: dict[str, int] = {}
    asked: dict[int, Trial] = {}  # every trial between its ask and its tell
    poll_s = min(heartbeat_interval / 2, 1.0)  # how soon a Ctrl-C is acted on with Ray workers
    last_check = time.monotonic()
    failures_this_run = 0
    beats = HeartbeatThread(ostore, heartbeat_interval / 2)

    counted = [time.monotonic()]  # when counts() last ran

    def counts() -> tuple[int, int]:
        """(complete, running) trials of the study in the storage, every driver's."""
        by_state = trial_counts(ostore, study._study_id)
        progress.complete = by_state[TrialState.COMPLETE]
        return by_state[TrialState.COMPLETE], by_state[TrialState.RUNNING]

    def ask() -> Trial | None:
        """A new trial, or None when complete + running trials already reach ``n_trials``."""
        with ask_lock.held():
            # complete + running <= all trials: count by state (a scan of the study) only
            # near the end, or once a second for the progress bar
            if trial_total(ostore, study._study_id) >= n_trials or \
                    time.monotonic() - counted[0] >= 1.0:
                complete, running = counts()
                counted[0] = time.monotonic()
                if complete + running >= n_trials:
                    return None
            trial = study.ask()
            asked[trial.number] = trial
        # the heartbeat thread beats within heartbeat_interval / 2; until then the trial
        # counts as alive by its start time (SwiftNASRDBStorage._get_stale_trial_ids)
        beats.track(trial._trial_id)
        return trial

    def settle(trial: Trial, write: Callable[[], None]) -> bool:
        """Run ``write`` (the trial's tell); False when another driver had already failed the
        trial as stale (its evaluation is cached, so its retry is instant): dropped quietly."""
        try:
            write()
            return True
        except UpdateFinishedTrialError:
            return False
        finally:
            asked.pop(trial.number, None)
            beats.untrack(trial._trial_id)

    def finish(trial: Trial, ev: Evaluation) -> None:
        summary = with_accuracy(ev.summary(), surrogate)
        accuracy = objective(summary)

        def write() -> None:
            # the attributes, the constraint and the tell: one transaction
            cache.set_trial_attrs(
                trial._trial_id, {**flat_user_attrs(summary), ATTR: summary},
                {CONSTRAINTS_SYSTEM_ATTR: (ev.latency_ms - spec.latency_budget_ms,)})
            study.tell(trial, [accuracy, ev.latency_ms])

        if not settle(trial, write):
            return
        progress.complete += 1
        progress.completed_this_run += 1
        if ev.latency_ms <= spec.latency_budget_ms:
            progress.feasible += 1
            progress.note_feasible(accuracy)
            if ev.arch.key() not in points:
                points[ev.arch.key()] = (accuracy, ev.latency_ms)
                add_to_front(front, (accuracy, ev.latency_ms))
                progress.pareto_size = len(front)
        if on_progress:
            on_progress(progress)

    def fail(trial: Trial, reason: str) -> None:
        def write() -> None:
            trial.set_user_attr("fail_reason", reason[:2000])
            study.tell(trial, state=TrialState.FAIL)

        if settle(trial, write):
            progress.failed += 1
            progress.failed_this_run += 1
            if on_progress:
                on_progress(progress)

    interrupted = "interrupted (Ctrl-C); rerun the same command to resume"
    with StopOnCtrlC() as stop, beats:
        try:
            while not stop.requested:
                while len(waiting) < executor.capacity and not stop.requested:
                    trial = ask()
                    if trial is None:
                        break
                    arch = spec.space.sample(trial)
                    cache.flush(trial._trial_id)  # parameters and generation: one transaction
                    key = arch.key()
                    ev = cached_evaluation(store, arch, settings, predictor_id)
                    if ev is not None:
                        progress.cache_hits += 1
                        finish(trial, ev)
                    elif key in handle_of_key:  # the same architecture is being evaluated
                        waiting[handle_of_key[key]][1].append(trial)
                    else:
                        handle = executor.submit(arch)
                        waiting[handle] = (key, [trial])
                        handle_of_key[key] = handle
                if not waiting and not stop.requested:
                    if counts()[0] >= n_trials:
                        break
                    # other drivers hold the last trials: wait, in case they fail or die
                    time.sleep(poll_s)
                for handle, result in executor.wait(timeout=poll_s):
                    key, trials = waiting.pop(handle)
                    del handle_of_key[key]
                    if isinstance(result, Evaluation):  # kept even after a Ctrl-C: it is done
                        save_evaluation(store, result, settings, predictor_id)
                        progress.evaluated += 1
                        progress.eval_seconds += result.proxy_seconds + result.latency_seconds
                        if on_evaluation:
                            on_evaluation(result)
                        for trial in trials:
                            finish(trial, result)
                    elif stop.requested:  # Ctrl-C reached the workers too
                        for trial in trials:
                            fail(trial, interrupted)
                    else:
                        failures_this_run += len(trials)
                        for trial in trials:
                            fail(trial, f"{type(result).__name__}: {result}")
                        if failures_this_run > max(10, min(n_trials, 1000)):
                            raise SearchError(
                                f"{failures_this_run} evaluations failed in this run (last: "
                                f"{type(result).__name__}: {one_line(result)[:300]}); see the "
                                "trials' fail_reason"
                            )
                if time.monotonic() - last_check >= heartbeat_interval / 2:
                    fail_stale_trials(study)  # a driver killed meanwhile left RUNNING trials
                    last_check = time.monotonic()
        except KeyboardInterrupt:  # a second Ctrl-C: stop without waiting for a safe point
            stop.requested = True
        if stop.requested:
            executor.close()
            progress.interrupted = True
            for trial in list(asked.values()):
                # a second Ctrl-C may have landed inside this trial's tell
                if ostore.get_trial(trial._trial_id).state == TrialState.RUNNING:
                    fail(trial, interrupted)
    # the study's own count: stale trials of a killed run, failed by any driver meanwhile
    progress.failed = trial_counts(ostore, study._study_id)[TrialState.FAIL]
    return progress
