"""Reliability of search studies: killed workers, killed and interrupted drivers, PostgreSQL.

These start real processes (Ray workers, the `swiftnas` console script, a PostgreSQL server)
and kill them with real signals.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.search import StudySpec, run_study

from ._search_helpers import (
    free_port,
    postgres_server,
    swiftnas_exe,
    wait_for,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.slow


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=base) as d:
        yield Path(d)


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def _complete(url: str, name: str) -> int:
    try:
        return sum(t.state == TrialState.COMPLETE for t in _trials(url, name))
    except Exception:  # the study or its tables do not exist yet
        return 0


def _assert_consistent(url: str, name: str, target: int) -> list[optuna.trial.FrozenTrial]:
    """The study holds ``target`` complete trials, none left running, numbers unique, every
    complete trial has its evaluation rows; SQLite's own integrity check passes."""
    trials = _trials(url, name)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == max(numbers) + 1
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == target
    assert TrialState.RUNNING not in states
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
        assert conn.execute("pragma foreign_key_check").fetchall() == []
        keys = {k for (k,) in conn.execute("select arch_key from swiftnas_candidates")}
    from search_spaces import ArchConfig

    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert ArchConfig.from_dict(t.user_attrs["swiftnas"]["arch"]).key() in keys
    return trials


def _busy_ray_workers() -> list[int]:
    """Ray workers running an evaluation (their process title is ray::worker_evaluate)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::worker_evaluate"):
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


def test_killed_ray_worker_loses_nothing(shm_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_TMPDIR", str(shm_dir))
    url = f"sqlite:///{shm_dir}/ray.db"
    spec = StudySpec(name="ray", latency_budget_ms=1.0, population_size=4, seed=5)
    killed: list[int] = []
    two_done = threading.Event()

    def note(progress) -> None:
        if progress.complete >= 2:
            two_done.set()

    def killer() -> None:  # a thread of its own: the driver keeps submitting meanwhile
        two_done.wait(timeout=300)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = _busy_ray_workers()
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    p = run_study(spec, url, 10, workers=2, on_progress=note)
    thread.join(timeout=5)
    assert killed, "the test did not kill a busy worker"
    trials = _assert_consistent(url, "ray", 10)
    # The killed task was retried by Ray (trial complete) or its trial failed; either way the
    # study reached its target and no trial is counted twice.
    assert p.complete == 10
    fails = [t for t in trials if t.state == TrialState.FAIL]
    assert all("fail_reason" in t.user_attrs for t in fails)


def _search_cmd(url: str, name: str, trials: int, *extra: str) -> list[str]:
    return [swiftnas_exe(), "search", "--study", name, "--storage", url, "--latency-budget-ms",
            "1.0", "--trials", str(trials), "--population-size", "4", *extra]


def _ctrl_c_after_two(url: str, name: str, trials: int) -> tuple[int, str]:
    """Run `swiftnas search`, press Ctrl-C once two trials are complete; (exit code, stderr)."""
    # A background shell (CI) starts us with SIGINT ignored, and children inherit that; restore
    # the default so the driver gets Ctrl-C as in a terminal.
    proc = subprocess.Popen(_search_cmd(url, name, trials), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "160"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert wait_for(lambda: _complete(url, name) >= 2, timeout=120, interval=0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, err


def test_ctrl_c_stops_cleanly_and_keeps_results(shm_dir: Path) -> None:
    url = f"sqlite:///{shm_dir}/int.db"
    code, err = _ctrl_c_after_two(url, "int", 50)
    assert code == 130, err
    assert "interrupted" in err and "run the same command again to resume" in err
    trials = _trials(url, "int")
    assert TrialState.RUNNING not in [t.state for t in trials]
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 2
    for t in trials:
        if t.state == TrialState.FAIL:
            assert "interrupted" in t.user_attrs["fail_reason"]


@pytest.mark.parametrize("when", ["after_evaluation", "after_tell", "second_ctrl_c"])
def test_ctrl_c_at_any_step_leaves_no_running_trial(shm_dir: Path, when: str) -> None:
    """Ctrl-C delivered at the driver's worst moments: between an evaluation and its trial's tell
    (where it used to leave a RUNNING trial), right after a tell (before the next ask), and twice
    (which interrupts at once)."""
    url = f"sqlite:///{shm_dir}/steps.db"
    # the driver's own steps: no presets queued ahead (they would wait in the study)
    spec = StudySpec(name="steps", latency_budget_ms=1.0, population_size=4, seed=1,
                     start_from_presets=False)
    signals = {"after_evaluation": 1, "second_ctrl_c": 2}.get(when, 0)

    def on_evaluation(_: object) -> None:
        for _ in range(signals):
            os.kill(os.getpid(), signal.SIGINT)

    def on_progress(progress) -> None:
        if when == "after_tell" and progress.completed_this_run == 1:
            os.kill(os.getpid(), signal.SIGINT)

    # as in a terminal, whatever the shell that started the tests did with SIGINT
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        progress = run_study(spec, url, 6, on_evaluation=on_evaluation, on_progress=on_progress)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert progress.interrupted
    trials = _trials(url, "steps")
    assert TrialState.RUNNING not in [t.state for t in trials]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if when == "second_ctrl_c":  # interrupted inside the first evaluation's callback
        assert complete == [] and [t.state for t in trials] == [TrialState.FAIL]
    else:  # the first evaluation was computed, so it is kept
        assert len(complete) == 1 and len(trials) == 1
    assert all("interrupted" in t.user_attrs["fail_reason"] for t in trials
               if t.state == TrialState.FAIL)
    assert signal.getsignal(signal.SIGINT) is previous  # the driver restored the handler
    assert run_study(spec, url, 2).complete == 2  # and the study resumes


# ------------------------------------------------------------------------------ PostgreSQL
@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d, postgres_server(Path(d)) as url:
        yield url


def test_two_studies_at_once_on_postgresql(postgres_url: str) -> None:
    # Teams create the schema once (`swiftnas db upgrade`) before starting drivers.
    assert subprocess.run([swiftnas_exe(), "db", "upgrade", "--storage", postgres_url],
                          capture_output=True, check=False).returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {
        "phone14": [*_search_cmd(postgres_url, "phone14", 5), "--sampler", "random"],
        "phone12": [swiftnas_exe(), "search", "--study", "phone12", "--storage", postgres_url,
                    "--device", "iPhone 12", "--latency-budget-ms", "2.0", "--trials", "5",
                    "--sampler", "random", "--seed", "7"],
    }
    procs = {name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env) for name, cmd in runs.items()}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err}"
    for name, device, budget in (("phone14", "iPhone 14", 1.0), ("phone12", "iPhone 12", 2.0)):
        trials = _trials(postgres_url, name)
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
        for t in trials:
            info = t.user_attrs["swiftnas"]
            assert t.constraints["0"] == pytest.approx(info["latency_ms"] - budget)
            assert device in info["latency_group"]
    listed = subprocess.run([swiftnas_exe(), "studies", "--storage", postgres_url, "--format",
                             "json"], capture_output=True, text=True, check=True)
    rows = {r["study"]: r for r in json.loads(listed.stdout)}
    assert rows["phone14"]["complete"] == rows["phone12"]["complete"] == 5
    # Re-running one study on PostgreSQL resumes it, as on SQLite.
    more = run_study(StudySpec(name="phone12", latency_budget_ms=2.0, device="iPhone 12",
                               sampler="random", seed=7), postgres_url, 6)
    assert (more.complete, more.completed_this_run) == (6, 1)


# ------------------------------------------------------------------------ killed at the ask
KILL_AT_ASK = """
import os, signal, sys
from nas.search import StudySpec
from nas.search.study import open_study, prepare_settings
spec = StudySpec(name=sys.argv[2], latency_budget_ms=1.0, population_size=4, seed=3,
                 start_from_presets=False)
study, _, _ = open_study(spec, prepare_settings(spec), sys.argv[1], heartbeat_interval=1)
study.ask()  # the trial exists, RUNNING; its first heartbeat is never recorded
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_driver_killed_between_ask_and_first_heartbeat(shm_dir: Path) -> None:
    """The trial such a driver leaves has no heartbeat row at all; Optuna's own stale check
    only looks at trials with heartbeats, so it used to stay RUNNING forever."""
    url = f"sqlite:///{shm_dir}/ask.db"
    killed = subprocess.run([sys.executable, "-c", KILL_AT_ASK, url, "ask"], check=False,
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [orphan] = _trials(url, "ask")
    assert orphan.state == TrialState.RUNNING
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        assert conn.execute("select count(*) from trial_heartbeats").fetchone() == (0,)
    time.sleep(2.5)  # older than the grace period (2 x 1 s)
    rerun = subprocess.run(_search_cmd(url, "ask", 3, "--heartbeat-interval", "1"),
                           capture_output=True, text=True, check=False,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert rerun.returncode == 0, rerun.stderr
    trials = _assert_consistent(url, "ask", 3)
    assert trials[0].state == TrialState.FAIL  # the orphan was failed (and its params retried)
    listed = subprocess.run([swiftnas_exe(), "studies", "--storage", url, "--format", "json"],
                            capture_output=True, text=True, check=True)
    [row] = json.loads(listed.stdout)
    assert (row["running"], row["complete"]) == (0, 3)


# ------------------------------------------------------------- several drivers on one study
def _two_drivers(url: str, name: str, trials: int) -> list[subprocess.CompletedProcess]:
    # A 1 s heartbeat (grace 2 s) is shorter than the first evaluation's warm-up in a fresh
    # process: it used to expire there, so the other driver failed the trial and the first one
    # crashed with UpdateFinishedTrialError when it told it.
    cmd = [*_search_cmd(url, name, trials, "--heartbeat-interval", "1"), "--sampler", "random"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([*cmd, "--seed", str(seed)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for seed in (1, 2)]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_two_drivers_on_sqlite_stop_at_exactly_n(shm_dir: Path) -> None:
    url = f"sqlite:///{shm_dir}/two.db"
    assert subprocess.run([swiftnas_exe(), "db", "upgrade", "--storage", url],
                          capture_output=True, check=False).returncode == 0
    for run in _two_drivers(url, "two", 15):
        assert run.returncode == 0, run.stderr
    trials = _assert_consistent(url, "two", 15)
    assert not [t for t in trials if t.state == TrialState.FAIL]  # nobody's trial went stale


def test_two_drivers_on_postgresql_stop_at_exactly_n(postgres_url: str) -> None:
    assert subprocess.run([swiftnas_exe(), "db", "upgrade", "--storage", postgres_url],
                          capture_output=True, check=False).returncode == 0
    for run in _two_drivers(postgres_url, "team", 15):
        assert run.returncode == 0, run.stderr
    trials = _trials(postgres_url, "team")
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 15
    assert TrialState.RUNNING not in states and TrialState.FAIL not in states
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))


def test_trial_numbers_stay_dense_when_drivers_and_optuna_create_at_once(postgres_url: str,
                                                                          ) -> None:
    """swiftnas creates a trial in 2 statements on PostgreSQL (lock the study, insert numbered
    after the newest trial); raced from threads against itself and Optuna's own creation, every
    trial still gets the number Optuna would give it: 0, 1, ... in creation (trial id) order."""
    from optuna.study import StudyDirection

    from nas.search.coordination import SwiftNASRDBStorage

    ours, plain = SwiftNASRDBStorage(postgres_url), optuna.storages.RDBStorage(postgres_url)
    study_id = plain.create_new_study([StudyDirection.MINIMIZE], "numbers")
    returned: list[optuna.trial.FrozenTrial] = []
    errors: list[BaseException] = []

    def create(storage: optuna.storages.RDBStorage) -> None:
        try:
            for _ in range(20):
                returned.append(storage._create_new_trial(study_id))
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(s,)) for s in (ours, plain, ours, ours)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = sorted(plain.get_all_trials(study_id), key=lambda t: t._trial_id)
    assert [t.number for t in stored] == list(range(80))
    by_id = {t._trial_id: t for t in stored}
    for t in returned:  # what the creator was told is what the database holds
        assert (t.number, t.state, t.datetime_start) == (
            by_id[t._trial_id].number, TrialState.RUNNING, by_id[t._trial_id].datetime_start)
    with pytest.raises(KeyError):
        ours._create_new_trial(study_id + 1000)


# ------------------------------------------------------------------- Ray cluster on the machine
def test_workers_while_a_ray_start_cluster_runs(shm_dir: Path) -> None:
    """`--workers K` starts a Ray of its own even when `ray start` runs here (plain ray.init()
    joined that cluster and refused num_cpus, leaving an empty study)."""
    ray_exe = str(Path(swiftnas_exe()).with_name("ray"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(shm_dir),
           "OMP_NUM_THREADS": "1"}
    port = free_port()
    started = subprocess.run([ray_exe, "start", "--head", "--port", str(port), "--num-cpus", "1",
                              "--disable-usage-stats", "--include-dashboard", "false"],
                             env=env, capture_output=True, text=True, check=False)
    assert started.returncode == 0, started.stderr
    try:
        url = f"sqlite:///{shm_dir}/cluster.db"
        run = subprocess.run([*_search_cmd(url, "cluster", 3), "--workers", "1"], env=env,
                             capture_output=True, text=True, check=False, timeout=300)
        assert run.returncode == 0, run.stderr
        _assert_consistent(url, "cluster", 3)
        still = subprocess.run([ray_exe, "status", "--address", f"127.0.0.1:{port}"], env=env,
                               capture_output=True, text=True, check=False)
        assert still.returncode == 0, "the user's cluster did not survive the search"
    finally:
        subprocess.run([ray_exe, "stop", "--force"], env=env, capture_output=True, check=False)


def test_huge_trial_count_keeps_the_progress_sane(shm_dir: Path) -> None:
    url = f"sqlite:///{shm_dir}/huge.db"
    code, err = _ctrl_c_after_two(url, "huge", 1_000_000_000_000)
    assert code == 130, err
    assert "1000000000000" in err  # the bar shows the target as it is
    assert not re.search(r"\b(inf|nan)\b|Traceback|Overflow", err), err
