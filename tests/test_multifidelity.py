"""The default score's definition per study, and the multi-fidelity acquisition rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.search.acquisition import spread_front_picks, ucb_pick


def test_spread_front_picks_take_the_cheap_front_first_and_spread_along_latency() -> None:
    latency = [1.0, 2.0, 3.0, 4.0, 5.0, 1.5, 3.5]
    score = [1.0, 2.0, 3.0, 4.0, 5.0, 0.5, 2.5]  # 5 and 6 are dominated
    assert spread_front_picks(latency, score, 2) == [0, 4]  # the front's ends
    assert spread_front_picks(latency, score, 3) == [0, 2, 4]
    assert sorted(spread_front_picks(latency, score, 6)) == [0, 1, 2, 3, 4, 5]  # next front
    assert spread_front_picks(latency, score, 2, exclude=[0, 4]) == [5, 3]
    assert sorted(spread_front_picks(latency, score, 10)) == list(range(7))


def test_ucb_pick_trains_where_the_measured_front_can_move() -> None:
    latency = [1.0, 2.0, 3.0, 4.0]
    measured = {0: 80.0, 2: 85.0}
    # 1 is slower than 0 and may beat it by 3; 3 may beat 2 by only 1
    assert ucb_pick(latency, [0, 82.0, 0, 85.5], [0, 1.0, 0, 0.5], measured) == 1
    # a wide interval is worth a training (kappa), no interval is not
    assert ucb_pick(latency, [0, 80.5, 0, 85.5], [0, 0.0, 0, 1.0], measured, kappa=1.0) == 3
    assert ucb_pick(latency, [0, 80.5, 0, 85.5], [0, 0.0, 0, 1.0], measured, kappa=0.0) == 1  # tie
    assert ucb_pick(latency, [0, 81.5, 0, 85.5], [0, 0.0, 0, 1.0], measured, kappa=0.0) == 1
    assert ucb_pick(latency, [1.0] * 4, [0.0] * 4, {i: 1.0 for i in range(4)}) is None


def test_a_surrogate_keeps_the_score_definition_it_was_fitted_with(tmp_path) -> None:
    # A surrogate's "score" feature was computed under one definition; a surrogate file from
    # before the default changed still loads, and a new study run with it scores with its
    # definition (so the feature means what it meant at fit time).
    from nas.evaluators.surrogate import AccuracySurrogate, feature_names
    from nas.proxies import DEFAULT_SCORE_WEIGHTS, PREVIOUS_SCORE_WEIGHTS
    from nas.search.spec import StudySpec
    from nas.search.study import open_storages, own_score, prepare_settings, stored_identity

    rows = [[float(i + j) for j in range(len(feature_names(4)))] for i in range(6)]
    fitted = AccuracySurrogate.fit(rows, [70.0 + i for i in range(6)], names=feature_names(4),
                                   kind="bayes_ridge")
    assert fitted.score_weights == DEFAULT_SCORE_WEIGHTS
    old = AccuracySurrogate.from_dict({**fitted.to_dict(), "score_weights": PREVIOUS_SCORE_WEIGHTS})
    assert old.score_weights == PREVIOUS_SCORE_WEIGHTS
    spec = StudySpec(name="new", latency_budget_ms=1.0)
    settings = prepare_settings(spec)
    _, ostore = open_storages(f"sqlite:///{tmp_path}/s.db")
    identity = stored_identity(ostore, spec.name)  # a new study: none
    assert own_score(settings, identity, None).score_weights == DEFAULT_SCORE_WEIGHTS
    assert own_score(settings, identity, old).score_weights == PREVIOUS_SCORE_WEIGHTS


def test_the_shipped_default_is_what_the_benchmark_chooses() -> None:
    # benchmarks/default_score.py writes the rule's choice; the product ships that choice
    import json
    from pathlib import Path

    from nas.proxies import DEFAULT_SCORE_WEIGHTS

    report = json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results"
                         / "default_score.json").read_text())
    assert report["chosen"] == pytest.approx(DEFAULT_SCORE_WEIGHTS)
    oof = report["out_of_fold"]
    chosen = oof[f"chosen on folds ({report['family']})"]
    assert chosen["regret"] < oof["params"]["regret"]
    assert chosen["regret"] < oof["previous default"]["regret"]


# ------------------------------------------------------------------ the loop, really trained
needs_fmnist = pytest.mark.skipif(
    not __import__("nas.training.data", fromlist=["FASHION_MNIST_DIR"]).FASHION_MNIST_DIR.is_dir(),
    reason="Fashion-MNIST not installed: `apt-get install dataset-fashion-mnist` (make test does)")
TINY = {"epochs": 1, "resolution": 32, "batch_size": 64, "train_subset": 128, "val_subset": 64}


def _small_study(url: str, name: str, trials: int = 10) -> None:
    from nas.search import StudySpec, run_study

    run_study(StudySpec(name=name, latency_budget_ms=2.5, population_size=4, seed=1), url,
              trials)


@needs_fmnist
@pytest.mark.slow
def test_train_front_trains_its_budget_once_and_pareto_shows_measured_and_predicted(
        tmp_path, capsys, monkeypatch) -> None:
    import json
    import socket

    import optuna

    from nas.cli import main
    from nas.multifidelity import train_front
    from nas.search.accuracy import CLAIMS_ATTR, FRONT_SURROGATE_ATTR, TRAINING_ATTR
    from nas.storage import open_storage
    from nas.training import TrainRecipe
    from nas.training.results import list_results

    url = f"sqlite:///{tmp_path}/mf.db"
    _small_study(url, "mf", 12)
    study = optuna.load_study(study_name="mf", storage=url)
    # a claim left by a killed driver of this host (pid gone) is taken over
    study.set_user_attr(CLAIMS_ATTR, {"nobody": f"{socket.gethostname()}:999999999"})
    recipe = TrainRecipe(**TINY)
    events = []
    report = train_front(url, "mf", data="fashion-mnist", budget=6, out=tmp_path / "runs",
                         recipe=recipe, on_event=events.append)
    assert report.trained == 6 and report.new == 6
    results = list_results(open_storage(url))
    assert len(results) == 6 and len({r.arch_key for r in results}) == 6  # each once
    attrs = optuna.load_study(study_name="mf", storage=url).user_attrs
    assert attrs[TRAINING_ATTR]["recipe_key"] == recipe.key()
    assert FRONT_SURROGATE_ATTR in attrs  # refitted once 5 were trained
    assert [e.kind for e in events].count("done") == 6
    # resumed: the budget is met, nothing is trained again
    again = train_front(url, "mf", data="fashion-mnist", budget=6, out=tmp_path / "runs",
                        recipe=recipe)
    assert again.new == 0 and len(list_results(open_storage(url))) == 6
    # another recipe is refused, not mixed into the front
    with pytest.raises(Exception, match="trains with another training recipe"):
        train_front(url, "mf", data="fashion-mnist", budget=7, out=tmp_path / "runs",
                    recipe=TrainRecipe(**{**TINY, "epochs": 2}))
    # pareto: measured top-1 where trained, a prediction with its interval elsewhere
    capsys.readouterr()
    assert main(["pareto", "--study", "mf", "--storage", url, "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    rows = shown["front"] + shown["references"]
    trained = {r.arch_key: r.top1 for r in results}
    assert {r["top1_source"] for r in rows} == {"measured", "predicted"}  # both kinds shown
    for r in rows:
        if r["arch_key"] in trained:
            assert r["top1_source"] == "measured" and r["top1"] == pytest.approx(
                trained[r["arch_key"]]) and r["top1_low"] is None
        else:
            assert r["top1_source"] == "predicted" and r["top1_low"] < r["top1"] < r["top1_high"]
    from nas.cli._common import console

    monkeypatch.setattr(console, "width", 250)  # every column on one line
    assert main(["pareto", "--study", "mf", "--storage", url]) == 0
    table = capsys.readouterr().out
    assert "trained" in table and "measured" in table  # the column (wrapped on a narrow tty)
    # export's model card and the dashboard say which top-1 is measured
    by_trial = {r["trial"]: r for r in shown["front"]}
    for trial, r in by_trial.items():
        out_dir = tmp_path / f"export_{trial}"
        assert main(["export", "--study", "mf", "--storage", url, "--trial", str(trial),
                     "--out", str(out_dir)]) == 0
        card = (out_dir / "MODEL_CARD.md").read_text()
        exported = json.loads((out_dir / "export.json").read_text())["top1"]
        assert exported["source"] == r["top1_source"]
        assert ("top-1, measured" in card) == (r["top1_source"] == "measured")
        assert ("top-1, predicted (not trained)" in card) == (r["top1_source"] == "predicted")
    from dashboard import data, plots

    tops = data.trained_front(url, "mf")
    assert sorted(tops["trial"]) == sorted(by_trial)
    assert set(tops["source"]) <= set(plots.TOP1_SOURCES)
    spec = json.dumps(plots.trained_front_chart(tops).to_dict())
    assert all(s in spec for s in plots.TOP1_SOURCES)  # the legend names both


def test_train_budget_and_mode_errors_are_one_line(tmp_path, capsys) -> None:
    from nas.cli import main
    from nas.search.accuracy import TRAINING_ATTR

    db = tmp_path / "m.db"
    base = ["search", "--study", "m", "--storage", f"sqlite:///{db}", "--latency-budget-ms",
            "2", "--trials", "2"]
    cases = [
        (["--accuracy", "trained", "--train-data", "fashion-mnist", "--train-budget", "0"],
         "--train-budget must be at least 1"),
        (["--accuracy", "trained", "--train-budget", "3"], "needs --train-data"),
        (["--train-budget", "3"], "--train-budget needs --accuracy trained"),
        (["--accuracy", "trained", "--train-data", "fashion-mnist", "--train-budget", "3",
          "--surrogate", str(tmp_path / "s.json")], "fits its own surrogate"),
        (["--accuracy", "trained", "--train-data", "fashion-mnist", "--train-budget", "3",
          "--train-minutes", "0"], "--train-minutes must be a positive number"),
        (["--accuracy", "trained", "--train-data", str(tmp_path / "nope"), "--train-budget",
          "3"], "neither 'fashion-mnist' nor an existing folder"),
    ]
    for extra, needle in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert not db.exists()  # refused before anything was written
    # a study that trains its front is not resumed in another accuracy mode
    import optuna

    _small_study(f"sqlite:///{db}", "m", 2)
    optuna.load_study(study_name="m", storage=f"sqlite:///{db}").set_user_attr(
        TRAINING_ATTR, {"dataset": "fashion-mnist", "dataset_digest": "x", "recipe_key": "r"})
    assert main([*base, "--trials", "3"]) == 2
    assert "was started with --accuracy trained" in capsys.readouterr().err


_DRIVER = """
import sys
from pathlib import Path
from nas.multifidelity import train_front
from nas.training import TrainRecipe
url, budget, out, epochs = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
recipe = TrainRecipe(epochs=epochs, resolution=32, batch_size=64, train_subset=128, val_subset=64)
r = train_front(url, "mf", data="fashion-mnist", budget=budget, out=out, recipe=recipe)
print("NEW", r.new, "TRAINED", r.trained)
"""


def _driver(url: str, budget: int, out: Path, epochs: int = 1):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", _DRIVER, url, str(budget), str(out),
                             str(epochs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@needs_fmnist
@pytest.mark.slow
def test_two_drivers_never_train_one_candidate_twice_and_a_killed_one_resumes(tmp_path) -> None:
    import signal
    import time

    from nas.storage import open_storage
    from nas.training.results import list_results

    url = f"sqlite:///{tmp_path}/mf.db"
    _small_study(url, "mf", 12)
    # two drivers at once on one study: together they train the budget, each candidate once
    a, b = _driver(url, 4, tmp_path / "runs"), _driver(url, 4, tmp_path / "runs")
    outs = [p.communicate(timeout=600) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    new = [int(o[0].split()[1]) for o in outs]
    assert sum(new) == 4, outs  # nothing trained twice (the results table is unique too)
    results = list_results(open_storage(url))
    assert len(results) == 4 and len({r.arch_key for r in results}) == 4
    # a driver killed in the middle of a training: the next run resumes that training
    slow = _driver(url, 5, tmp_path / "runs")
    deadline = time.monotonic() + 300
    checkpoints: list[Path] = []
    while time.monotonic() < deadline and not checkpoints:
        known = {r.arch_key for r in results}
        checkpoints = [p for p in (tmp_path / "runs").glob("*/checkpoint.safetensors")
                       if p.parent.name not in known]
        time.sleep(0.2)
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    if not checkpoints:  # it finished before the kill could land: nothing to resume
        pytest.skip("the training finished before its first checkpoint was seen")
    again = _driver(url, 5, tmp_path / "runs")
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    results = list_results(open_storage(url))
    assert len(results) == 5 and len({r.arch_key for r in results}) == 5
    resumed = checkpoints[0].parent.name
    assert resumed in {r.arch_key for r in results}  # the interrupted candidate, finished


@needs_fmnist
@pytest.mark.slow
def test_train_front_on_ray_workers(tmp_path) -> None:
    from nas.multifidelity import train_front
    from nas.storage import open_storage
    from nas.training import TrainRecipe
    from nas.training.results import list_results

    url = f"sqlite:///{tmp_path}/mf.db"
    _small_study(url, "mf", 10)
    report = train_front(url, "mf", data="fashion-mnist", budget=3, out=tmp_path / "runs",
                         recipe=TrainRecipe(**TINY), workers=2)
    assert report.new == 3 and report.trained == 3
    results = list_results(open_storage(url))
    assert len({r.arch_key for r in results}) == 3
    assert all((tmp_path / "runs" / r.arch_key / "checkpoint.safetensors").exists()
               for r in results)  # the workers trained into the driver's folders
