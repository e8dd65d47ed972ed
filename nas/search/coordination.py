"""What lets several drivers (and killed ones) share one study safely.

- ``SwiftNASRDBStorage``: Optuna's RDB storage whose stale-trial check also catches a RUNNING
  trial that never got a heartbeat (a driver killed between ``ask`` and its first heartbeat, or
  a heartbeat insert that failed on a full disk). Optuna's own check skips those forever.
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
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState

from nas.storage.storage import sqlite_path


class SwiftNASRDBStorage(RDBStorage):
    """RDBStorage + stale trials without any heartbeat (see the module docstring)."""

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
        with self.engine.connect() as conn:
            silent = [int(r[0]) for r in conn.execute(query)]
        return stale + [t for t in silent if t not in stale]


def trial_counts(storage: RDBStorage, study_id: int) -> dict[TrialState, int]:
    """Trials of the study by state, in one query (all drivers' trials, straight from SQL)."""
    query = (sa.select(models.TrialModel.state, sa.func.count())
             .where(models.TrialModel.study_id == study_id)
             .group_by(models.TrialModel.state))
    with storage.engine.connect() as conn:
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
