"""A database written by the release of 2026-12-07 (commit a0e7217, before the redesign: the
previous default score, format-1 identity, schema 0003) upgrades (the evaluation cache copied
into one table), shows the same front and resumes under its own definitions.

tests/data/release_2026_12_07.db was made by that commit with
``swiftnas search --study release-2026-12-07 --latency-budget-ms 1.2 --trials 8 --seed 3`` and
tests/data/release_2026_12_07_pareto.json is its ``pareto --format json`` then.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

from nas.cli import main

DATA = Path(__file__).parent / "data"
STUDY = "release-2026-12-07"


@pytest.fixture
def old_db(tmp_path: Path) -> str:
    shutil.copy(DATA / "release_2026_12_07.db", tmp_path / "old.db")
    return f"sqlite:///{tmp_path / 'old.db'}"


def _pareto(url: str, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert main(["pareto", "--study", STUDY, "--storage", url, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_an_old_database_shows_the_same_front_upgrades_and_resumes(old_db, capsys) -> None:
    import sqlalchemy as sa

    from nas.proxies import DEFAULT_SCORE_WEIGHTS, PREVIOUS_SCORE_WEIGHTS, score_arch
    from search_spaces import ArchConfig

    then = json.loads((DATA / "release_2026_12_07_pareto.json").read_text())
    # its schema is 0003: readers say how to upgrade, in one line, and change nothing
    capsys.readouterr()
    assert main(["pareto", "--study", STUDY, "--storage", old_db]) == 2
    assert "swiftnas db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade", "--storage", old_db]) == 0
    engine = sa.create_engine(old_db)
    with engine.connect() as conn:  # 0004 copied every cached evaluation into one table
        old_rows = conn.execute(sa.text(
            "SELECT count(*) FROM swiftnas_latency_predictions")).scalar_one()
        keys = [r[0] for r in conn.execute(sa.text(
            "SELECT evaluator_key FROM swiftnas_evaluations"))]
    engine.dispose()
    assert old_rows > 0
    assert sum(k.startswith("latency:") for k in keys) == old_rows
    assert sum(k.startswith("proxy:") for k in keys) == old_rows  # one setting, one score
    now = _pareto(old_db, capsys)
    assert now == then  # every row and number, presets included (from the copied cache)
    before = {t.number: t.values for t in optuna.load_study(
        study_name=STUDY, storage=old_db).get_trials(deepcopy=False)}
    assert main(["search", "--study", STUDY, "--storage", old_db, "--latency-budget-ms", "1.2",
                 "--trials", "10", "--seed", "3"]) == 0
    study = optuna.load_study(study_name=STUDY, storage=old_db)
    trials = study.get_trials(deepcopy=False)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 10
    assert {t.number: t.values for t in trials if t.number in before} == before
    # resumed under its own score (the release's default), not today's
    assert study.user_attrs["swiftnas"]["score"] == PREVIOUS_SCORE_WEIGHTS != \
        DEFAULT_SCORE_WEIGHTS
    for t in trials:
        if t.number not in before and t.state == optuna.trial.TrialState.COMPLETE:
            arch = ArchConfig.from_dict(t.user_attrs["swiftnas"]["arch"])
            old = score_arch(arch, score_weights=PREVIOUS_SCORE_WEIGHTS)["score"]
            assert t.values[0] == pytest.approx(old, rel=1e-6)
    # the front after resuming holds the old front's points that are still nondominated
    after = _pareto(old_db, capsys)
    assert {r["trial"] for r in after["front"]} >= {
        r["trial"] for r in then["front"]
        if not any(a["accuracy_score"] >= r["accuracy_score"] and a["latency_ms"] <= r[
            "latency_ms"] and (a["accuracy_score"], a["latency_ms"]) != (
            r["accuracy_score"], r["latency_ms"]) for a in after["front"])}
