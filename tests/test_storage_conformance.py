"""One conformance suite for every supported ``--storage`` URL form: SQLite (the zero-setup
default) and PostgreSQL (teams, several drivers, clusters). Each form must resume a study, hit
the evaluation cache, give the same Pareto front as the full read, export, and survive a
SIGKILLed driver.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.search import (
    StudySpec,
    export_trial,
    load_study,
    pareto_front,
    run_study,
    study_candidates,
    study_front,
)

from ._search_helpers import postgres_server, run_until_then_kill, swiftnas_exe

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.slow
BUDGET_MS = 2.0  # wide enough that the first trials have a feasible front


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def storage_url(request) -> Iterator[str]:
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=base) as d:
        if request.param == "sqlite":
            yield f"sqlite:///{d}/conformance.db"
        else:
            with postgres_server(Path(d)) as url:
                yield url


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    # Optuna's own storage and reader, not swiftnas's: what a third-party tool sees
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def _assert_consistent(url: str, name: str, complete: int) -> None:
    trials = _trials(url, name)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(numbers)))
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == complete
    assert TrialState.RUNNING not in states
    for t in trials:
        if t.state == TrialState.COMPLETE:  # every write of a finished trial is there
            assert len(t.params) == 20 and "swiftnas" in t.user_attrs
            assert list(t.constraints.values()) == [t.values[1] - BUDGET_MS]  # Optuna 5: {"0": v}
            assert t.user_attrs["latency_ms"] == t.values[1]


def test_resume_and_cache_hit(storage_url: str) -> None:
    spec = StudySpec(name="conf", latency_budget_ms=BUDGET_MS, population_size=4, seed=3)
    first = run_study(spec, storage_url, 4)
    assert first.complete == 4 and first.completed_this_run == 4
    resumed = run_study(spec, storage_url, 6)
    assert resumed.complete == 6 and resumed.completed_this_run == 2
    _assert_consistent(storage_url, "conf", 6)
    # the same seed in a new study proposes the same architectures: all from the cache
    again = run_study(StudySpec(name="conf-again", latency_budget_ms=BUDGET_MS, population_size=4,
                                seed=3), storage_url, 4)
    assert again.evaluated == 0 and again.cache_hits == 4
    assert [t.values for t in _trials(storage_url, "conf-again")] == \
        [t.values for t in _trials(storage_url, "conf")[:4]]


def test_pareto_and_export(storage_url: str, tmp_path: Path) -> None:
    loaded = load_study(storage_url, "conf")
    full = pareto_front(study_candidates(loaded.study))
    front = study_front(loaded.study)
    assert [c.trial for c in front] == [c.trial for c in full] and front
    done = subprocess.run([swiftnas_exe(), "pareto", "--study", "conf", "--storage",
                           storage_url, "--format", "json"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert [r["trial"] for r in json.loads(done.stdout)["front"]] == [c.trial for c in front]
    result = export_trial(loaded, front[0].trial, tmp_path / "export")
    arch = json.loads((tmp_path / "export" / "arch.json").read_text())
    assert arch == front[0].arch.to_dict() and "train.sh" in result.files


def test_killed_driver_resumes(storage_url: str) -> None:
    cmd = [swiftnas_exe(), "search", "--study", "killed", "--storage", storage_url,
           "--latency-budget-ms", str(BUDGET_MS), "--trials", "6", "--population-size", "4",
           "--heartbeat-interval", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def complete() -> int:
        try:
            return sum(t.state == TrialState.COMPLETE for t in _trials(storage_url, "killed"))
        except Exception:  # the study does not exist yet
            return 0

    run_until_then_kill(cmd, env, lambda: complete() >= 2, interval=0.2)
    kept = {t.number: t.values for t in _trials(storage_url, "killed")
            if t.state == TrialState.COMPLETE}
    running = [t.number for t in _trials(storage_url, "killed") if t.state == TrialState.RUNNING]
    time.sleep(2.5)  # the dead driver's heartbeats go stale (grace: 2 x 1 s)
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert rerun.returncode == 0, rerun.stderr
    _assert_consistent(storage_url, "killed", 6)
    after = {t.number: t for t in _trials(storage_url, "killed")}
    assert all(after[n].state == TrialState.COMPLETE and after[n].values == v
               for n, v in kept.items())
    # what the killed driver left running was failed as stale (and retried as a new trial),
    # unless it finished just in time
    assert all(after[n].state in (TrialState.FAIL, TrialState.COMPLETE) for n in running)
