"""Opening and running a search study: everything validated before anything is written
(device, predictor, surrogate, options), the study created or resumed under its identity (its
predictor and score definition kept), then one ``driver.Driver`` run. Optuna's storage fails a
killed run's trials once their heartbeat is stale and re-enqueues their parameters
(``RetryHeartbeatStaleTrialCallback``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.study import StudyDirection

from latency_models import LatencyPredictor, PredictorError
from latency_models.defaults import load_predictor
from nas.evaluators import digest
from nas.evaluators.cluster import check_reachable
from nas.proxies.settings import LEGACY_SCORE_WEIGHTS
from nas.storage import Storage, StorageError, open_storage
from nas.storage.storage import connect_problem, engine_kwargs, one_line
from search_spaces import PRESETS, SwiftFormerSpace
from search_spaces.text import masked_url

from .accuracy import SURROGATE_ATTR
from .cache import stored_predictor
from .coordination import (
    AskLock,
    SwiftNASRDBStorage,
    trial_counts,
)
from .driver import (
    Driver,
    SearchProgress,
    StudyHandles,
)
from .evaluation import Evaluation, EvaluationSettings
from .executors import make_executor
from .sampling import make_sampler
from .spec import ATTR, FORMAT, SearchError, StudySpec, check_identity
from .trial_cache import OrderedCachedStorage

DEFAULT_HEARTBEAT_S = 10
# `make demo`'s study (iPhone 14, 1.2 ms, NSGA-II population 10, from the presets): median trials
# until a trial first dominated each preset within the budget, over 5 seeds of 150 trials
# (`python -m benchmarks.search demo`, benchmarks/results/search.json "demo"). `swiftnas
# search` quotes it when its front beats no preset yet.
# Re-measured with latency v3 (under which L1 fits the budget too) and the default score of
# 2026-12-07 (`0.9 log(grad_norm) + 0.1 log(params)`).
DEMO_TRIALS_TO_DOMINATE: dict[str, float] = {"SwiftFormer-XS": 10, "SwiftFormer-S": 26,
                                             "SwiftFormer-L1": 47}


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
    synthetic = spec.synthetic_seed is not None
    return EvaluationSettings(device=spec.device, predictor=predictor.to_dict(), proxy=spec.proxy,
                              proxies=("score",) if synthetic else spec.proxies,
                              synthetic_seed=spec.synthetic_seed)


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


def stored_identity(ostore: SwiftNASRDBStorage, name: str) -> dict[str, Any] | None:
    """The identity of study ``name`` when it exists and has one (a resumed study)."""
    existing = next((s for s in ostore.get_all_studies() if s.study_name == name), None)
    identity = existing.user_attrs.get(ATTR) if existing is not None else None
    return identity if isinstance(identity, dict) else None


def own_predictor(spec: StudySpec, settings: EvaluationSettings, store: Storage,
                  identity: dict[str, Any] | None) -> tuple[EvaluationSettings, str | None]:
    """A resumed study keeps the predictor it was started with when none is named: the
    predictor is part of its identity, so the shipped one of a newer swiftnas (v3) never
    replaces its own (v2.4) silently, and resuming is not refused either. Returns the settings
    to run with and, when they changed, "name vVERSION" of the study's own predictor."""
    if spec.predictor_path is not None:
        return settings, None  # named: it must match, as every identity field (check_identity)
    digest = (identity or {}).get("predictor_digest")
    if digest is None or digest == settings.predictor_digest:
        return settings, None
    artifact = stored_predictor(store, digest)
    if artifact is None:
        return settings, None  # check_identity then says which predictor the study needs
    own = dataclasses.replace(settings, predictor=artifact)
    return own, f"{artifact.get('name', '')} v{artifact.get('version', '?')}"


def own_score(settings: EvaluationSettings, identity: dict[str, Any] | None,
              surrogate: Any | None) -> EvaluationSettings:
    """The score definition a run uses: a resumed study's own (its identity records it; studies
    from before the record used the legacy one), else the surrogate's (its "score" feature was
    computed with it), else this swiftnas's default. A new default never stops a study from
    resuming."""
    if identity is not None:
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
    # not optuna.get_all_study_summaries: it loads and deep-copies every trial of every study
    existing = {s.study_name: s for s in ostore.get_all_studies()}
    stored = existing[spec.name].user_attrs.get(ATTR) if spec.name in existing else None
    # a study keeps the identity format it was created with (format 1: before objectives
    # were data), so that it resumes
    fmt = stored.get("format", FORMAT) if isinstance(stored, dict) else FORMAT
    wanted = spec.identity(settings.predictor_digest,
                           digest(artifact) if artifact is not None else None,
                           score_weights=settings.score_weights,
                           format=fmt if fmt in (1, FORMAT) else FORMAT)
    objectives = spec.study_objectives
    directions = [StudyDirection.MAXIMIZE if o.direction == "maximize"
                  else StudyDirection.MINIMIZE for o in objectives]
    # one COUNT query: Optuna's get_n_trials reads every trial (6 s at 10,000 trials)
    n_existing = (sum(trial_counts(ostore, ostore.get_study_id_from_name(spec.name)).values())
                  if spec.name in existing else 0)
    fresh = spec.name not in existing or (
        # a run killed between creating the study and labelling it: adopt the empty study
        n_existing == 0 and ATTR not in existing[spec.name].user_attrs)
    if not fresh:
        summary = existing[spec.name]
        if list(summary.directions) != directions:
            raise SearchError(
                f"study {spec.name!r} in {store.url} exists with other objectives "
                f"({', '.join(d.name.lower() for d in summary.directions)}); choose a new "
                "--study name"
            )
        check_identity(spec.name, summary.user_attrs.get(ATTR), wanted, store.url)
    study = optuna.create_study(
        study_name=spec.name, storage=OrderedCachedStorage(ostore),
        directions=directions, sampler=make_sampler(spec, n_existing),
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
    for arch in spec.start_archs:  # checked against the space by StudySpec
        study.enqueue_trial(spec.space.params_of(arch) or {}, skip_if_exists=True)
    metric_names = [o.metric for o in objectives]
    if study.metric_names != metric_names:  # labels Optuna's plots, CLI, dashboard
        study.set_metric_names(metric_names)
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
    identity = stored_identity(storages[1], spec.name)  # a resumed study keeps its own
    settings, resumed_with = own_predictor(spec, settings, storages[0], identity)
    settings = own_score(settings, identity, surrogate)
    executor = make_executor(settings, workers=workers, ray_address=ray_address)
    ask_lock = AskLock(storages[0].engine, spec.name)
    try:
        with storage_errors(storages[0].url):
            study, store, ostore = open_study(spec, settings, storage_url,
                                              heartbeat_interval=heartbeat_interval,
                                              n_trials=n_trials,
                                              storages=storages, surrogate=surrogate)
            driver = Driver(spec, StudyHandles(study, store, ostore), executor, ask_lock,
                            settings, surrogate, n_trials,
                            heartbeat_interval=heartbeat_interval, resumed_with=resumed_with,
                            on_start=on_start, on_progress=on_progress,
                            on_evaluation=on_evaluation)
            return driver.run()
    finally:
        executor.close()
        ask_lock.close()
