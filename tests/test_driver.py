"""The driver through the torch-free synthetic evaluator: what it stores, resuming, the budget
constraint and the identity, with no model built and no torch imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

_RUN = """
import json, sys
import optuna
from nas.search import StudySpec, run_study
from nas.evaluators import SyntheticEvaluator
from search_spaces import ArchConfig
url = sys.argv[1]
spec = StudySpec(name="syn", latency_budget_ms=1.5, population_size=6, seed=4,
                 synthetic_seed=7)
first = run_study(spec, url, 24)
before = {t.number: t.values for t in optuna.load_study(study_name="syn", storage=url).trials}
second = run_study(spec, url, 36)
study = optuna.load_study(study_name="syn", storage=url)
out = {"torch": "torch" in sys.modules, "first": [first.complete, first.feasible],
       "second": [second.complete, second.completed_this_run],
       "kept": all(study.trials[n].values == v for n, v in before.items()), "checks": []}
synthetic = SyntheticEvaluator(7)
for t in study.trials:
    m = synthetic.evaluate(ArchConfig.from_dict(t.user_attrs["swiftnas"]["arch"]), {})
    out["checks"].append([t.values, [m["score"].value, m["latency_ms"].value],
                          t.system_attrs["constraints"]])
print(json.dumps(out))
"""


def test_the_driver_runs_resumes_and_stores_through_the_synthetic_evaluator(tmp_path) -> None:
    import json

    done = subprocess.run([sys.executable, "-c", _RUN, f"sqlite:///{tmp_path}/syn.db"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["torch"] is False  # no model built, no torch imported
    assert out["first"][0] == 24 and 0 < out["first"][1] <= 24
    assert out["second"] == [36, 12] and out["kept"]
    for values, expected, constraints in out["checks"]:
        assert values == pytest.approx(expected)
        assert constraints == [pytest.approx(expected[1] - 1.5)]


def test_a_synthetic_study_is_never_resumed_as_a_real_one(tmp_path) -> None:
    from nas.search import SearchError, StudySpec, run_study

    url = f"sqlite:///{tmp_path}/s.db"
    run_study(StudySpec(name="s", latency_budget_ms=1.5, synthetic_seed=1,
                        start_from_presets=False), url, 3)
    with pytest.raises(SearchError, match="evaluation"):
        run_study(StudySpec(name="s", latency_budget_ms=1.5, synthetic_seed=2), url, 4)
