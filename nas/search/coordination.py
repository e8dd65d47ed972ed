"""What lets several drivers (and killed ones) share one study safely.

- ``SwiftNASRDBStorage``: Optuna's RDB storage whose stale-trial check also catches a RUNNING
  trial that never got a heartbeat (a driver killed between ``ask`` and its first heartbeat, or
  a heartbeat insert that failed on a full disk). Optuna's own check skips those forever.
  It also batches a trial's writes: Optuna commits every ``suggest`` and attribute on its own
  (20 parameters and 9 attributes of a trial: 29 commits, an fsync each on SQLite), which caps
  one driver at a few trials per second (``benchmarks/scale.py driver``).
- ``HeartbeatThread``: beats for every trial a driver has in flight from a thread, so a long
  evaluation in the driver process (the first one pays imports and warm-up) never outlives the
  grace period and gets its trial failed by another driver.
- ``AskLock``: one driver at a time counts the study's complete and running trials and asks, so
  N drivers together stop at exactly ``--trials`` complete. PostgreSQL: an advisory lock; SQLite:
  a lock file beside the database (SQLite is one machine anyway).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import threading
from collections.abc import Collection, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from nas.storage.storage import read_engine, sqlite_path

from .trials import frozen_trials, utc_to_local

_FINISHED = [s for s in TrialState if s.is_finished()]


@dataclass
class _PendingWrites:
    """A running trial's writes not yet in the database (see ``SwiftNASRDBStorage``)."""

    params: list[tuple[str, float, BaseDistribution, BaseDistribution | None]] = field(
        default_factory=list)
    user_attrs: dict[str, str] = field(default_factory=dict)  # key -> JSON text
    system_attrs: dict[str, str] = field(default_factory=dict)


class SwiftNASRDBStorage(RDBStorage):
    """RDBStorage + stale trials without any heartbeat + batched writes (module docstring).

    A running trial's parameters and attributes are buffered and written together, in one
    transaction: by ``flush`` (the driver calls it as soon as the architecture is sampled, so a
    killed driver leaves the trial with its parameters for the stale-trial retry), before any
    read of the trial, and in the same transaction as its final state and values.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[int, _PendingWrites] = {}
        self._pending_lock = threading.Lock()
        self._upserts: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Any] = {}
        self._postgres = self.engine.dialect.name == "postgresql"
        self.read_engine = read_engine(self.engine)  # Optuna's reads, without a transaction
        self._studies_seen: set[int] = set()  # study ids a read found (their trials' reads
        # then skip the existence check; a study deleted under a driver fails its next ask)

    def _buffer(self, trial_id: int) -> _PendingWrites:  # call with _pending_lock held
        return self._pending.setdefault(trial_id, _PendingWrites())

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: BaseDistribution,
                         previous_distribution: BaseDistribution | None) -> None:
        # what both RDBStorage.set_trial_param and Optuna's caching wrapper call
        with self._pending_lock:
            self._buffer(trial_id).params.append(
                (param_name, param_value_internal, distribution, previous_distribution))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.set_trial_attrs(trial_id, {key: value}, {})

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.set_trial_attrs(trial_id, {}, {key: value})

    def set_trial_attrs(self, trial_id: int, user_attrs: dict[str, Any],
                        system_attrs: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        """Several user and system attributes of one trial, buffered like its parameters.
        Encoded now (a value that is not JSON fails here, not at the flush); returns them as
        they will be stored, JSON text by key."""
        user = {k: json.dumps(v) for k, v in user_attrs.items()}
        system = {k: json.dumps(v) for k, v in system_attrs.items()}
        with self._pending_lock:
            pending = self._buffer(trial_id)
            pending.user_attrs.update(user)
            pending.system_attrs.update(system)
        return user, system

    def _check_updatable(self, session: Any, trial_id: int) -> None:
        query = sa.select(models.TrialModel.state).where(models.TrialModel.trial_id == trial_id)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update()  # as Optuna locks the row it changes
        state = session.execute(query).scalar_one_or_none()
        if state is None:
            raise KeyError(f"no trial with trial_id {trial_id} exists")
        self.check_trial_is_updatable(trial_id, state)

    def flush(self, trial_id: int) -> None:
        """Write the trial's buffered parameters and attributes in one transaction, with
        Optuna's checks (the trial still running; each distribution compatible with the one
        the study's earlier trials used)."""
        with self._pending_lock:
            pending = self._pending.pop(trial_id, None)
        if pending is None:
            return
        with _create_scoped_session(self.scoped_session, True) as session:
            self._check_updatable(session, trial_id)
            self._write_pending(session, trial_id, pending)

    def _write_pending(self, session: Any, trial_id: int, pending: _PendingWrites) -> None:
        params = models.TrialParamModel
        rows = []
        for name, value, distribution, previous in pending.params:
            if previous is None:  # Optuna's caching wrapper passes it when it knows it
                previous_json = session.execute(
                    sa.select(params.distribution_json)
                    .join(models.TrialModel, models.TrialModel.trial_id == params.trial_id)
                    .where(models.TrialModel.study_id == sa.select(models.TrialModel.study_id)
                           .where(models.TrialModel.trial_id == trial_id).scalar_subquery(),
                           params.param_name == name).limit(1)).scalar_one_or_none()
                previous = (json_to_distribution(previous_json)
                            if previous_json is not None else None)
            if previous is not None:
                check_distribution_compatibility(previous, distribution)
            rows.append({"trial_id": trial_id, "param_name": name, "param_value": value,
                         "distribution_json": distribution_to_json(distribution)})
        if rows:
            session.execute(sa.insert(params.__table__), rows)
        for model, attrs in ((models.TrialUserAttributeModel, pending.user_attrs),
                             (models.TrialSystemAttributeModel, pending.system_attrs)):
            if attrs:
                self._upsert_attrs(session, model, trial_id, attrs)

    def _upsert_attrs(self, session: Any, model: Any, trial_id: int,
                      attrs: dict[str, str]) -> None:
        """The attributes (JSON text by key) in one INSERT ... ON CONFLICT UPDATE on SQLite and
        PostgreSQL; Optuna's own statement per attribute on other databases."""
        rows = [{"trial_id": trial_id, "key": k, "value_json": v} for k, v in attrs.items()]
        if not self._upsert(session, model.__table__, rows, ("trial_id", "key")):
            for key, value_json in attrs.items():
                self._set_trial_attr_without_commit(session, model, trial_id, key,
                                                    json.loads(value_json))

    def _upsert(self, session: Any, table: sa.Table, rows: list[dict[str, Any]],
                unique: tuple[str, ...]) -> bool:
        """INSERT ``rows`` (all with the same columns), updating the other columns of a row
        whose ``unique`` columns exist already; False (nothing done) on a database without
        ON CONFLICT. One statement per table and columns, built once and executed with the rows
        as parameters: a statement with the rows inside is compiled (and its cache key walked)
        again for every trial, 2 ms per upsert at 4 upserts per trial."""
        dialect = {"sqlite": sqlite_dialect, "postgresql": postgresql_dialect}.get(
            self.engine.name)
        if dialect is None:
            return False
        key = (table.name, unique, tuple(rows[0]))
        statement = self._upserts.get(key)
        if statement is None:
            insert = dialect.insert(table)
            statement = self._upserts[key] = insert.on_conflict_do_update(
                index_elements=list(unique),
                set_={c: insert.excluded[c] for c in rows[0] if c not in unique})
        session.execute(statement, rows)
        return True

    def _create_new_trial(self, study_id: int,
                          template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """Optuna's trial creation, in 2 statements instead of 4 on PostgreSQL (where each is a
        round trip): lock the study row as Optuna does (its trials are numbered one at a time),
        then insert the trial numbered after the study's newest one (Optuna numbers a study's
        trials 0, 1, ... in creation order and never deletes one, so that is its count)."""
        if template_trial is not None or not self._postgres:
            return super()._create_new_trial(study_id, template_trial)
        trials, studies = models.TrialModel.__table__, models.StudyModel.__table__
        newest = newest_number_query(study_id).scalar_subquery()
        started = datetime.now(UTC).replace(tzinfo=None)  # stored as naive UTC, as Optuna does
        with _create_scoped_session(self.scoped_session, True) as session:
            if session.execute(sa.select(studies.c.study_id).where(
                    studies.c.study_id == study_id).with_for_update()).first() is None:
                raise KeyError(f"No study with study_id {study_id} exists.")
            # a new statement, so it reads the trials committed by the lock's previous holder
            trial_id, number = session.execute(
                sa.insert(trials).values(
                    number=sa.func.coalesce(newest + 1, 0), study_id=study_id,
                    state=TrialState.RUNNING, datetime_start=started)
                .returning(trials.c.trial_id, trials.c.number)).one()
        return FrozenTrial(
            number=number, state=TrialState.RUNNING, value=None, values=None,
            datetime_start=utc_to_local(started), datetime_complete=None, params={},
            distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
            trial_id=trial_id)

    def finish_trial(self, trial_id: int, state: TrialState,
                     values: Sequence[float] | None) -> datetime:
        """``set_trial_state_values`` to a finished state, with the trial's buffered writes, in
        one transaction; returns the completion time as Optuna's readers show it."""
        assert state.is_finished()
        with self._pending_lock:
            pending = self._pending.pop(trial_id, None)
        completed = datetime.now(UTC).replace(tzinfo=None)
        trials = models.TrialModel.__table__
        with _create_scoped_session(self.scoped_session, True) as session:
            # the state first, and only if the trial is not finished yet: this also locks the
            # row (as Optuna's SELECT ... FOR UPDATE does) and saves that round trip
            changed = cast("sa.CursorResult[Any]", session.execute(
                sa.update(trials).where(trials.c.trial_id == trial_id,
                                        trials.c.state.not_in(_FINISHED))
                .values(state=state, datetime_complete=completed))).rowcount
            if not changed:
                self._check_updatable(session, trial_id)  # raises: no such trial, or finished
            if pending is not None:
                self._write_pending(session, trial_id, pending)
            if values is not None:
                table = models.TrialValueModel.__table__
                rows = [dict(zip(("value", "value_type"),
                                 models.TrialValueModel.value_to_stored_repr(v), strict=True),
                             trial_id=trial_id, objective=objective)
                        for objective, v in enumerate(values)]
                if not self._upsert(session, table, rows, ("trial_id", "objective")):
                    session.execute(sa.delete(table).where(table.c.trial_id == trial_id))
                    session.execute(sa.insert(table), rows)
        local = utc_to_local(completed)
        assert local is not None
        return local

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Any = None) -> bool:
        if state.is_finished():
            self.finish_trial(trial_id, state, values)
            return True
        self.flush(trial_id)
        return super().set_trial_state_values(trial_id, state, values)

    # Reads by plain SELECTs (``frozen_trials``) instead of Optuna's ORM with five eager loads:
    # the sampler reads the study's new and running trials several times per ask, and the
    # ORM's object building was the largest cost left in a driver's trial.
    def get_trial(self, trial_id: int) -> FrozenTrial:
        self.flush(trial_id)
        trials = frozen_trials(self.read_engine, [models.TrialModel.trial_id == trial_id],
                               order_by=models.TrialModel.trial_id)
        if not trials:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        return trials[0]

    def _get_trials(self, study_id: int, states: Container[TrialState] | None,
                    included_trial_ids: set[int], trial_id_greater_than: int,
                    excluded_trial_ids: Collection[int] = (),
                    ) -> list[FrozenTrial]:
        """Optuna's read of a study's new and unfinished trials; ``excluded_trial_ids`` are
        left out (trials the caller already knows, see ``OrderedCachedStorage``)."""
        with self._pending_lock:
            unwritten = [i for i in self._pending if i not in excluded_trial_ids]
        for i in unwritten:  # what is read must include this process's writes
            self.flush(i)
        included = [i for i in included_trial_ids if i <= trial_id_greater_than]
        trial_id = models.TrialModel.trial_id
        where = [models.TrialModel.study_id == study_id]
        if states is not None:
            assert isinstance(states, Iterable)
            where.append(models.TrialModel.state.in_(list(states)))
        if trial_id_greater_than > -1:
            where.append(sa.or_(trial_id.in_(included), trial_id > trial_id_greater_than)
                         if included else trial_id > trial_id_greater_than)
        if excluded_trial_ids:
            where.append(trial_id.not_in(list(excluded_trial_ids)))
        trials = frozen_trials(self.read_engine, where, order_by=trial_id)
        # Optuna's contract: an unknown study is a KeyError, not an empty list
        if not trials and study_id not in self._studies_seen:
            with self.read_engine.connect() as conn:
                if conn.execute(sa.select(models.StudyModel.study_id).where(
                        models.StudyModel.study_id == study_id)).first() is None:
                    raise KeyError(f"No study with study_id {study_id} exists.")
        self._studies_seen.add(study_id)
        return trials

    def get_study_system_attr(self, study_id: int, key: str) -> Any:
        """One study system attribute, or None: NSGA-II keeps a parent list per generation
        there, so reading them all (Optuna's ``get_study_system_attrs``) grows with the study
        (19 ms at 5,000 trials on PostgreSQL)."""
        table = models.StudySystemAttributeModel.__table__
        with self.read_engine.connect() as conn:
            value_json = conn.execute(sa.select(table.c.value_json).where(
                table.c.study_id == study_id, table.c.key == key)).scalar_one_or_none()
        return None if value_json is None else json.loads(value_json)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        assert self.heartbeat_interval is not None
        grace = timedelta(seconds=self.grace_period or 2 * self.heartbeat_interval)
        # datetime_start holds the asking process's clock as naive UTC; drivers on several
        # machines need clocks synced within the grace period (NTP does that).
        cutoff = datetime.now(UTC).replace(tzinfo=None) - grace
        beating = sa.select(models.TrialHeartbeatModel.trial_id)
        query = (sa.select(models.TrialModel.trial_id)
                 .where(models.TrialModel.study_id == study_id,
                        models.TrialModel.state == TrialState.RUNNING,
                        models.TrialModel._datetime_start_utc < cutoff,
                        models.TrialModel.trial_id.not_in(beating)))
        with self.read_engine.connect() as conn:
            silent = [int(r[0]) for r in conn.execute(query)]
        return stale + [t for t in silent if t not in stale]


def _read_engine(storage: RDBStorage) -> sa.Engine:
    return storage.read_engine if isinstance(storage, SwiftNASRDBStorage) else storage.engine


def newest_number_query(study_id: int) -> sa.Select[Any]:
    """The number of the study's newest trial (no row for an empty study). Optuna numbers a
    study's trials 0, 1, ... in creation order and never deletes one, so this + 1 is the
    study's trial count: an index lookup, where a COUNT reads every trial of the study."""
    trials = models.TrialModel.__table__
    return (sa.select(trials.c.number).where(trials.c.study_id == study_id)
            .order_by(trials.c.trial_id.desc()).limit(1))


def trial_total(storage: RDBStorage, study_id: int) -> int:
    """How many trials the study holds, in any state (``newest_number_query``)."""
    with _read_engine(storage).connect() as conn:
        newest = conn.execute(newest_number_query(study_id)).scalar_one_or_none()
    return 0 if newest is None else int(newest) + 1


def trial_counts(storage: RDBStorage, study_id: int) -> dict[TrialState, int]:
    """Trials of the study by state, in one query (all drivers' trials, straight from SQL)."""
    query = (sa.select(models.TrialModel.state, sa.func.count())
             .where(models.TrialModel.study_id == study_id)
             .group_by(models.TrialModel.state))
    with _read_engine(storage).connect() as conn:
        counts = {state: int(n) for state, n in conn.execute(query)}
    return {s: counts.get(s, 0) for s in TrialState}


class HeartbeatThread:
    """Records a heartbeat every ``interval`` seconds for each trial in ``track``-ed set."""

    def __init__(self, storage: RDBStorage, interval: float) -> None:
        self._storage = storage
        self._interval = interval
        self._trials: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="swiftnas-heartbeat", daemon=True)
        self.last_error: BaseException | None = None

    def track(self, trial_id: int) -> None:
        with self._lock:
            self._trials.add(trial_id)

    def untrack(self, trial_id: int) -> None:
        with self._lock:
            self._trials.discard(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                trials = sorted(self._trials)
            for trial_id in trials:
                try:
                    self._storage.record_heartbeat(trial_id)
                except Exception as exc:  # a full or read-only disk: the driver reports it
                    self.last_error = exc

    def __enter__(self) -> HeartbeatThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class AskLock:
    """Serialises count-then-ask between the drivers of one study (see the module docstring)."""

    def __init__(self, engine: sa.Engine, study_name: str) -> None:
        self._engine = engine
        digest = hashlib.sha256(f"swiftnas-ask:{study_name}".encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)
        self._conn: sa.Connection | None = None
        self._file: Any = None
        db = sqlite_path(engine)
        self._path = Path(db).with_name(Path(db).name + ".swiftnas-lock") if db else None

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._engine.dialect.name == "postgresql":
            if self._conn is None:
                self._conn = self._engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT")
            self._conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
            try:
                yield
            finally:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
        elif self._path is not None:
            if self._file is None:
                try:
                    self._file = open(self._path, "a+")  # noqa: SIM115 (kept for the run)
                except OSError:  # a read-only folder: one driver is all it can hold anyway
                    self._path = None
                    yield
                    return
            fcntl.flock(self._file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        else:
            yield

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._file is not None:
            self._file.close()
            self._file = None
