"""Optuna's own dashboard on a swiftnas study: the real optuna-dashboard server, read through
its JSON API (the same data its web page renders)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest

from nas.search import StudySpec, run_study
from nas.search.optuna_dashboard import feasible

from ._search_helpers import free_port, swiftnas_exe

BUDGET_MS = 1.0


@pytest.fixture(scope="module")
def study_url() -> Iterator[str]:
    """A random-sampler study in which some over-budget trials dominate on raw objectives."""
    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/study.db"
        run_study(StudySpec(name="dash", latency_budget_ms=BUDGET_MS, sampler="random", seed=5),
                  url, 12)
        yield url


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return json.loads(r.read())


@contextmanager
def _server(cmd: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(port, "/api/studies")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read() if proc.stdout else ""
                    raise AssertionError(f"{cmd[0]} did not start: {out[-2000:]}") from None
                time.sleep(0.3)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _detail(port: int) -> dict[str, Any]:
    studies = _get(port, "/api/studies")["study_summaries"]
    (study,) = [s for s in studies if s["study_name"] == "dash"]
    return dict(_get(port, f"/api/studies/{study['study_id']}"))


def _over_budget(trial: dict[str, Any]) -> bool:
    return bool(trial["values"][1] > BUDGET_MS)


@pytest.mark.slow
def test_plain_optuna_dashboard_names_objectives_and_marks_infeasible(study_url: str) -> None:
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert exe, "optuna-dashboard is not installed (pip install -e '.[dashboard]')"
    port = free_port()
    with _server([exe, study_url, "--host", "127.0.0.1", "--port", str(port)], port):
        detail = _detail(port)
    assert detail["objective_names"] == ["accuracy_score", "latency_ms"]
    trials = detail["trials"]
    assert len(trials) == 12
    infeasible = [t for t in trials if _over_budget(t)]
    assert infeasible and len(infeasible) < len(trials)
    # every trial carries its constraint, positive exactly when over budget
    for t in trials:
        assert t["constraints"] == [pytest.approx(t["values"][1] - BUDGET_MS)]
    # the flat metrics are sortable columns of its trial table
    sortable = {a["key"] for a in detail["union_user_attrs"] if a["sortable"]}
    assert {"params_m", "macs_g", "latency_ms", "latency_low_ms", "latency_high_ms",
            "proxy_score"} <= sortable
    # its own "Best Trials" ignore constraints (why `swiftnas optuna-dashboard` exists): this
    # study is chosen so that an over-budget trial is on the unconstrained front
    assert any(_over_budget(t) for t in detail["best_trials"])


@pytest.mark.slow
def test_swiftnas_optuna_dashboard_best_trials_are_within_budget(study_url: str) -> None:
    port = free_port()
    cmd = [swiftnas_exe(), "optuna-dashboard", "--storage", study_url, "--port", str(port)]
    with _server(cmd, port):
        detail = _detail(port)
    best = {t["number"] for t in detail["best_trials"]}
    assert best and not any(_over_budget(t) for t in detail["best_trials"])
    # exactly Optuna's own constrained front
    study = optuna.load_study(study_name="dash", storage=study_url)
    assert best == {t.number for t in study.best_trials}
    assert all(feasible(t) for t in study.best_trials)
    assert detail["objective_names"] == ["accuracy_score", "latency_ms"]


def test_optuna_dashboard_command_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    result = subprocess.run([swiftnas_exe(), "optuna-dashboard", "--storage",
                             f"sqlite:///{missing}"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no such storage") and result.stderr.count("\n") == 1
    assert not missing.exists()
