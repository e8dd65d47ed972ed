"""Search studies: the driver, resume and cache, bad input, Pareto output, exports."""

from __future__ import annotations

import json
import os
import random
import shlex
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from latency_models import load_default_predictor
from nas.cli import main
from nas.search import (
    SEARCH_SPACE,
    SearchError,
    StudySpec,
    list_studies,
    load_study,
    nondominated,
    pareto_front,
    read_config,
    reference_candidates,
    run_study,
    study_candidates,
    study_names,
    timm_kwargs,
)
from nas.search.pareto import add_to_front, dominates
from nas.search.trials import read_trials
from nas.storage.storage import Storage, create_engine
from search_spaces import PRESETS, ArchConfig, build_model

from ._search_helpers import swiftnas_exe

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    # SQLite on disk costs ~100 ms per commit (fsync); tmpfs keeps these tests fast.
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=base) as d:
        yield Path(d)


# wide enough that some of the fixture's 8 trials are feasible under the shipped predictor
# (v2 predicted SwiftFormer-XS at 1.14 ms on iPhone 14, v2.1 at 0.95 ms)
FIXTURE_BUDGET_MS = 1.6


@pytest.fixture(scope="module")
def finished_study() -> Iterator[tuple[str, str]]:
    """A small real study (8 trials, NSGA-II) shared by the read-only tests."""
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=base) as d:
        url = f"sqlite:///{d}/study.db"
        spec = StudySpec(name="fixture", latency_budget_ms=FIXTURE_BUDGET_MS, population_size=4,
                         seed=3)
        run_study(spec, url, 8)
        yield url, "fixture"


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


# ------------------------------------------------------------------------------ Pareto maths
def test_nondominated_matches_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(200):
        pts = [(rng.choice([1.0, 2.0, 3.0, rng.random()]), rng.choice([1.0, 2.0, rng.random()]))
               for _ in range(rng.randint(0, 12))]
        brute = [i for i, p in enumerate(pts) if not any(dominates(q, p) for q in pts)]
        assert nondominated(pts) == brute
        front: list[tuple[float, float]] = []
        for p in pts:  # the driver's running front, one trial at a time
            add_to_front(front, p)
        assert sorted(front) == sorted(pts[i] for i in brute)


# ------------------------------------------------------------------------------ the driver
def test_study_runs_stores_resumes_and_caches(shm_dir: Path) -> None:
    url = f"sqlite:///{shm_dir}/s.db"
    spec = StudySpec(name="a", latency_budget_ms=1.0, population_size=4, seed=1)
    first = run_study(spec, url, 5)
    assert (first.complete, first.completed_this_run, first.failed) == (5, 5, 0)
    before = {t.number: t.values for t in _trials(url, "a")}
    assert len(before) == 5
    # Optuna's own tools (plots, CLI, optuna-dashboard) label the axes from these
    assert optuna.load_study(study_name="a", storage=url).metric_names == ["accuracy_score",
                                                                           "latency_ms"]

    for t in _trials(url, "a"):
        info = t.user_attrs["swiftnas"]
        assert t.values == [info["proxy_scores"]["score"], info["latency_ms"]]
        # feasible exactly when the predicted latency is within the budget, stored in the list
        # format that both Optuna and optuna-dashboard read
        assert t.constraints == {"0": pytest.approx(info["latency_ms"] - 1.0)}
        assert t.system_attrs["constraints"] == [pytest.approx(info["latency_ms"] - 1.0)]
        # flat scalar copies for outside tools, next to the full record
        flat = {k: v for k, v in t.user_attrs.items() if k != "swiftnas"}
        assert flat == {
            "params_m": pytest.approx(info["params"] / 1e6, abs=1e-4),
            "macs_g": pytest.approx(info["macs"] / 1e9, abs=1e-4),
            "latency_ms": info["latency_ms"],
            "latency_low_ms": info["latency_low_ms"],
            "latency_high_ms": info["latency_high_ms"],
            **{f"proxy_{k}": v for k, v in info["proxy_scores"].items()},
        }
        assert all(isinstance(v, float) for v in flat.values())
        # the fixed resolution (one value in the space) is not recorded as a parameter
        assert "resolution" not in t.params and len(t.params) == 20
        assert SEARCH_SPACE.contains(ArchConfig.from_dict(info["arch"]))
        assert info["latency_low_ms"] < info["latency_ms"] < info["latency_high_ms"]
        assert info["params"] > 0 and info["macs"] > 0

    # Re-running with the same name resumes: 3 more trials, the first 5 untouched.
    second = run_study(spec, url, 8)
    assert (second.complete, second.completed_this_run) == (8, 3)
    after = {t.number: t.values for t in _trials(url, "a")}
    assert len(after) == 8 and all(after[n] == v for n, v in before.items())
    # Already complete: nothing runs.
    assert run_study(spec, url, 8).completed_this_run == 0

    # Identical architectures are evaluated once: the random sampler with NSGA-II's seed
    # proposes the same first generation, so a second study is served from the cache.
    twin = StudySpec(name="b", latency_budget_ms=1.0, sampler="random", seed=1)
    again = run_study(twin, url, 4)
    assert again.cache_hits == 4 and again.evaluated == 0
    store = Storage(create_engine(url))
    with store.engine.connect() as conn:
        n_cands = conn.exec_driver_sql("select count(*) from swiftnas_candidates").scalar()
        n_preds = conn.exec_driver_sql(  # one latency evaluation per architecture
            "select count(*) from swiftnas_evaluations where evaluator_key like 'latency:%'"
        ).scalar()
    keys = {ArchConfig.from_dict(t.user_attrs["swiftnas"]["arch"]).key()
            for t in _trials(url, "a")}
    assert n_cands == n_preds == len(keys)
    rows = {r["study"]: r for r in list_studies(url)}
    assert rows["a"]["complete"] == 8 and rows["b"]["complete"] == 4
    # list_studies counts by SQL aggregates; the same numbers as Optuna's own reading
    for name in ("a", "b"):
        trials = _trials(url, name)
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert rows[name]["feasible"] == sum(all(v <= 0 for v in t.constraints.values())
                                             for t in complete)
        assert rows[name]["last_update"] == max(
            t.datetime_complete for t in complete).isoformat(timespec="seconds")
    assert rows["a"]["device"] == "iPhone 14" and rows["a"]["sampler"] == "nsga2"


def test_read_trials_equals_optunas_own_reading(shm_dir: Path) -> None:
    """The fast reader used by the dashboard returns what Optuna's storage API returns, for
    every state, infinite values, intermediate values and both attribute kinds."""
    url = f"sqlite:///{shm_dir}/read.db"
    run_study(StudySpec(name="r", latency_budget_ms=1.0, population_size=4, seed=2), url, 3)
    study = optuna.load_study(study_name="r", storage=url)
    failed = study.ask()
    failed.suggest_float("x", 0.0, 1.0)
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    running = study.ask()
    # multi-objective trials cannot report(); the storage still holds intermediate values
    study._storage.set_trial_intermediate_value(running._trial_id, 1, float("inf"))
    study._storage.set_trial_intermediate_value(running._trial_id, 2, 0.5)
    running.set_user_attr("note", {"a": [1, 2]})
    study.add_trial(optuna.trial.create_trial(
        values=[float("inf"), float("-inf")], params={"y": "b"},
        distributions={"y": optuna.distributions.CategoricalDistribution(["a", "b"])}))
    loaded = load_study(url, "r").study  # on swiftnas's storage, which reads by plain SELECTs
    # against Optuna's own RDBStorage and ORM (a plain URL): the dashboard's reader, and the
    # storage's get_trials / get_trial that the sampler and tell use
    optunas = optuna.load_study(study_name="r", storage=url).get_trials(deepcopy=False)
    ours = read_trials(loaded)
    assert [t.state.name for t in ours] == ["COMPLETE"] * 3 + ["FAIL", "RUNNING", "COMPLETE"]
    storage = loaded._storage
    for candidate in (ours, loaded.get_trials(deepcopy=False),
                      [storage.get_trial(t._trial_id) for t in optunas]):
        assert candidate == optunas
    for a, b in zip(ours, optunas, strict=True):
        assert a == b  # FrozenTrial equality: every field
        assert (a.params, a.distributions, a.user_attrs, a.system_attrs, a.values,
                a.intermediate_values, a._trial_id) == (
                b.params, b.distributions, b.user_attrs, b.system_attrs, b.values,
                b.intermediate_values, b._trial_id)
    done = read_trials(loaded, states=(optuna.trial.TrialState.COMPLETE,))
    assert [t.number for t in done] == [0, 1, 2, 5]
    optuna.create_study(study_name="other", storage=url)  # another tool's study, same database
    assert study_names(url) == ["r"]  # what the dashboard's pickers offer
    assert {r["study"]: r["swiftnas"] for r in list_studies(url)} == {"r": True, "other": False}


def test_timm_kwargs_reproduce_timm_swiftformer() -> None:
    import timm

    kwargs = timm_kwargs(PRESETS["s"])
    assert kwargs == {"layers": [3, 3, 9, 6], "embed_dims": [48, 64, 168, 224], "mlp_ratios": 4}
    ours = build_model(PRESETS["s"]).state_dict()
    theirs = timm.create_model("swiftformer_xs", pretrained=False, **kwargs).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    arch = SEARCH_SPACE.sample_random(1, seed=4)[0]
    if any(s.attn != (s.depth - 1,) for s in arch.stages):
        assert timm_kwargs(arch) is None


# ------------------------------------------------------------------------------ bad input
def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("extra, message", [
    (["--device", "iPhone 99"], "unknown device 'iPhone 99'"),
    (["--latency-budget-ms", "0"], "latency budget must be a positive number"),
    (["--latency-budget-ms", "-1"], "latency budget must be a positive number"),
    (["--trials", "0"], "--trials must be a positive number"),
    (["--sampler", "grid"], "unknown sampler 'grid'"),
    (["--workers", "-1"], "--workers must be >= 0"),
])
def test_bad_options_write_nothing(shm_dir: Path, capsys, extra, message) -> None:
    db = shm_dir / "never.db"
    args = ["search", "--study", "x", "--storage", f"sqlite:///{db}", "--latency-budget-ms", "1",
            "--trials", "2", *extra]
    code, err = _run(args, capsys)
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("error: ") and message in err
    assert not db.exists()


@pytest.mark.parametrize("url, message", [
    ("notaurl", "malformed storage URL"),
    ("sqlite:////no/such/folder/x.db", "does not exist"),
    ("postgresql+psycopg://nobody@127.0.0.1:1/none", "cannot open storage"),
])
def test_bad_storage_is_one_line(capsys, url, message) -> None:
    code, err = _run(["search", "--study", "x", "--storage", url, "--latency-budget-ms", "1",
                      "--trials", "1"], capsys)
    assert code == 2 and err.count("\n") == 0 and message in err


def test_existing_study_with_other_identity_is_refused(finished_study, capsys, tmp_path) -> None:
    url, name = finished_study
    before = [(t.number, t.state, t.values) for t in _trials(url, name)]
    base = ["search", "--study", name, "--storage", url, "--trials", "20"]
    budget = str(FIXTURE_BUDGET_MS)
    code, err = _run([*base, "--latency-budget-ms", "1.5"], capsys)
    assert code == 2 and f"exists with --latency-budget-ms {budget}, not 1.5" in err
    code, err = _run([*base, "--latency-budget-ms", budget, "--device", "iPhone 12"], capsys)
    assert code == 2 and "exists with --device 'iPhone 14', not 'iPhone 12'" in err
    config = tmp_path / "study.toml"
    config.write_text("[space]\nresolutions = [224]\n" + "\n".join(
        "[[space.stages]]\ndepths = [2, 3]\nwidths = [64]\n" for _ in range(4)))
    code, err = _run([*base, "--latency-budget-ms", budget, "--config", str(config)], capsys)
    assert code == 2 and "exists with search space a different one" in err
    assert [(t.number, t.state, t.values) for t in _trials(url, name)] == before


def test_a_study_resumes_with_its_own_score_definition(tmp_path) -> None:
    # A new default score is a new objective key: a study started under an older definition
    # (or before the identity recorded it: the legacy one) resumes, scored with its own, and
    # check_identity still refuses two different definitions in one study.
    from nas.proxies import DEFAULT_SCORE_WEIGHTS, PREVIOUS_SCORE_WEIGHTS, describe_score
    from nas.search.spec import check_identity

    assert PREVIOUS_SCORE_WEIGHTS != DEFAULT_SCORE_WEIGHTS
    url = f"sqlite:///{tmp_path}/old.db"
    spec = StudySpec(name="old", latency_budget_ms=1.2, population_size=4, seed=5,
                     start_from_presets=False)
    run_study(spec, url, 1)
    study = optuna.load_study(study_name="old", storage=url)
    ident = dict(study.user_attrs["swiftnas"])
    study.set_user_attr("swiftnas", {**ident, "score": PREVIOUS_SCORE_WEIGHTS})
    run_study(spec, url, 3)  # resumes (no refusal)
    trials = _trials(url, "old")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 3
    from nas.proxies import score_arch
    from search_spaces import ArchConfig

    for t in (t for t in trials if t.number > 0):
        arch = ArchConfig.from_dict(t.user_attrs["swiftnas"]["arch"])
        old = score_arch(arch, proxies=("score",), score_weights=PREVIOUS_SCORE_WEIGHTS)
        assert t.values[0] == pytest.approx(old["score"], rel=1e-6)
    assert optuna.load_study(study_name="old", storage=url).user_attrs["swiftnas"]["score"] \
        == PREVIOUS_SCORE_WEIGHTS

    wanted = StudySpec(name="s", latency_budget_ms=1.0).identity("digest")
    assert wanted["score"] == DEFAULT_SCORE_WEIGHTS
    with pytest.raises(SearchError) as info:
        check_identity("s", {**wanted, "score": PREVIOUS_SCORE_WEIGHTS}, wanted, "sqlite:///x")
    assert describe_score(PREVIOUS_SCORE_WEIGHTS) in str(info.value)
    assert "start a new --study" in str(info.value)


def test_config_file_values_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('study = "cfg"\nlatency_budget_ms = 1.5\ntrials = 3\n[proxy]\nresolution = 96\n'
                    '[space]\nresolutions = [224]\n' + "\n".join(
                        "[[space.stages]]\ndepths = [2]\nwidths = [64]\n" for _ in range(4)))
    cfg = read_config(good)
    assert cfg["proxy"].resolution == 96 and cfg["space"].stages[2].depths == (2,)
    bad = tmp_path / "bad.toml"
    bad.write_text('study = "x"\nbudget = 1\n')
    with pytest.raises(SearchError, match=r"unknown key.*budget.*known keys"):
        read_config(bad)
    bad.write_text("[proxy]\nresolution = 50\n")
    with pytest.raises(SearchError, match="multiple of 32"):
        read_config(bad)
    with pytest.raises(SearchError, match="does not exist"):
        read_config(tmp_path / "missing.toml")


def test_presets_are_scored_as_an_older_study_was(tmp_path) -> None:
    # A study made before the default score changed keeps its trials' scores; the reference
    # presets shown next to them must be on the same scale, i.e. scored with its weights.
    from nas.proxies import DEFAULT_SCORE_WEIGHTS, LEGACY_SCORE_WEIGHTS
    from nas.proxies.settings import combine_score

    url = f"sqlite:///{tmp_path}/old.db"
    run_study(StudySpec(name="old", latency_budget_ms=1.2, population_size=4, seed=5), url, 1)
    study = optuna.load_study(study_name="old", storage=url)
    ident = dict(study.user_attrs["swiftnas"])
    del ident["score"]  # as stored by swiftnas before the identity recorded the score
    study.set_user_attr("swiftnas", ident)
    refs = {r.name: r for r in reference_candidates(load_study(url, "old"))}
    xs = refs["SwiftFormer-XS"]
    values = {**xs.proxy_scores, "params": xs.params, "macs": xs.macs}
    assert xs.accuracy_score == pytest.approx(combine_score(LEGACY_SCORE_WEIGHTS, values))
    assert LEGACY_SCORE_WEIGHTS == DEFAULT_SCORE_WEIGHTS or xs.accuracy_score != \
        pytest.approx(combine_score(DEFAULT_SCORE_WEIGHTS, values))


# ------------------------------------------------------------------------------ results
def test_pareto_front_and_references(finished_study, capsys) -> None:
    url, name = finished_study
    loaded = load_study(url, name)
    refs = reference_candidates(loaded)
    assert [r.name for r in refs] == ["SwiftFormer-XS", "SwiftFormer-S", "SwiftFormer-L1",
                                      "SwiftFormer-L3"]
    assert [r.latency_ms for r in refs] == sorted(r.latency_ms for r in refs)
    cands = study_candidates(loaded.study)
    front = pareto_front(cands, references=refs)
    feasible = [c for c in cands if c.feasible]
    assert front and all(c.feasible for c in front)
    for c in front:  # nothing feasible dominates a front member, and 'dominates' is right
        assert not any(dominates(o.point, c.point) for o in feasible)
        assert c.dominates == [r.name for r in refs if dominates(c.point, r.point)]
    assert len({c.arch.key() for c in front}) == len(front)

    assert main(["pareto", "--study", name, "--storage", url, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["trial"] for r in out["front"]] == [c.trial for c in front]
    assert len(out["references"]) == 4 and out["latency_budget_ms"] == FIXTURE_BUDGET_MS
    groups = {r["latency_group"] for r in [*out["front"], *out["references"]]}
    assert groups == {load_default_predictor().resolve_group(out["device"])}
    # the table says the latencies are a published protocol's and how to calibrate the phone
    assert main(["pareto", "--study", name, "--storage", url]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"predicted from published measurements ({groups.pop()})" in text
    assert (f"swiftnas latency plan --device {shlex.quote(out['device'])} --study "
            f"{shlex.quote(name)} --storage {shlex.quote(url)} --out KIT") in text
    assert main(["pareto", "--study", name, "--storage", url, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("kind,name,trial,accuracy_score,latency_ms")
    assert len(lines) == 1 + len(front) + 4
    code, err = _run(["pareto", "--study", "nope", "--storage", url], capsys)
    assert code == 2 and "no study 'nope'" in err and "fixture" in err


def test_study_front_reads_only_the_front_and_matches_the_full_read(finished_study,
                                                                   tmp_path) -> None:
    """study_front finds the front from the values table; it must equal the front of every
    candidate, with duplicates of an architecture and a dominating infeasible trial added."""
    import copy

    import optuna
    from optuna.trial import TrialState, create_trial

    from nas.search import study_front

    url, name = finished_study
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    optuna.copy_study(from_study_name=name, from_storage=url, to_storage=target)
    study = optuna.load_study(study_name=name, storage=target)
    first = pareto_front(study_candidates(study))[0]
    template = study.trials[first.trial]
    over = copy.deepcopy(template.user_attrs)  # over budget, and the best score of all
    over["swiftnas"]["latency_ms"] = 2.4
    over["swiftnas"]["proxy_scores"]["score"] = 1e6
    over["swiftnas"]["arch"]["stages"][0]["width"] += 8  # an architecture of its own
    for attrs in (template.user_attrs, over):  # a duplicate of a front member, then `over`
        values = [attrs["swiftnas"]["proxy_scores"]["score"], attrs["swiftnas"]["latency_ms"]]
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=values,
                                     params=template.params,
                                     distributions=template.distributions, user_attrs=attrs))
    for feasible_only in (True, False):
        full = pareto_front(study_candidates(study), feasible_only=feasible_only)
        fast = study_front(study, feasible_only=feasible_only)
        assert [(c.trial, c.point) for c in fast] == [(c.trial, c.point) for c in full]
    assert first.trial in [c.trial for c in study_front(study)]  # the first copy, not the dup
    over_number = len(study.trials) - 1
    assert over_number in [c.trial for c in study_front(study, feasible_only=False)]
    assert over_number not in [c.trial for c in study_front(study)]


def test_studies_command(finished_study, capsys) -> None:
    url, name = finished_study
    assert main(["studies", "--storage", url, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["study"] == name and rows[0]["complete"] == 8
    assert rows[0]["latency_budget_ms"] == FIXTURE_BUDGET_MS and rows[0]["running"] == 0


def test_help_of_search_commands(capsys) -> None:
    for cmd in ("search", "pareto", "export", "studies"):
        assert main([cmd, "--help"]) == 0
        assert "--storage" in capsys.readouterr().out


# ------------------------------------------------------------------------------ export
def test_export_errors(finished_study, tmp_path, capsys) -> None:
    url, name = finished_study
    code, err = _run(["export", "--study", name, "--storage", url, "--trial", "99", "--out",
                      str(tmp_path / "e")], capsys)
    assert code == 2 and "has no trial 99" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    code, err = _run(["export", "--study", name, "--storage", url, "--trial", "0", "--out",
                      str(tmp_path / "full")], capsys)
    assert code == 2 and "not empty" in err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_export_builds_with_timm_trains_and_converts(finished_study, tmp_path) -> None:
    """Smoke test of the whole export: timm.create_model, a training step, Core ML."""
    url, name = finished_study
    trial = pareto_front(study_candidates(load_study(url, name).study))[0].trial
    out = tmp_path / "export"
    done = subprocess.run([swiftnas_exe(), "export", "--study", name, "--storage", url,
                           "--trial", str(trial), "--out", str(out), "--coreml"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    info = json.loads((out / "export.json").read_text())
    assert (out / "coreml" / f"{info['model_name']}.mlpackage").is_dir()
    card = (out / "MODEL_CARD.md").read_text()
    assert f"{info['params'] / 1e6:.2f} M" in card and "iPhone 14" in card
    assert f"--model {info['model_name']}" in (out / "train_timm.sh").read_text()
    # train.sh runs `swiftnas train` as it is (only swiftnas installed): a tiny real run
    env = {**os.environ, "PATH": f"{Path(swiftnas_exe()).parent}:{os.environ['PATH']}",
           "EPOCHS": "1", "STORAGE": f"sqlite:///{tmp_path}/trained.db"}
    ran = subprocess.run([str(out / "train.sh"), "fashion-mnist", "--resolution", "32",
                          "--train-subset", "64", "--val-subset", "64"], env=env,
                         capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    assert "top-1" in ran.stdout and (out / "output" / "metrics.csv").is_file()
    # A fresh interpreter, as a user would: import model.py, build with timm, one SGD step.
    script = f"""
import sys
sys.path.insert(0, {str(out)!r})
import model  # first, as its docstring says
import timm, torch
net = timm.create_model({info['model_name']!r}, num_classes=10)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
x, y = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
before = [p.detach().clone() for p in net.parameters()]
loss = torch.nn.functional.cross_entropy(net(x), y)
loss.backward(); opt.step()
assert torch.isfinite(loss)
assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
# a detection/segmentation backbone, as timm's own swiftformer_* are
arch = model.ARCH
feats = timm.create_model({info['model_name']!r}, features_only=True, out_indices=(1, 2, 3))
assert feats.feature_info.channels() == list(arch.widths[1:])
assert feats.feature_info.reduction() == [8, 16, 32]
shapes = [tuple(f.shape) for f in feats(torch.randn(1, 3, 128, 128))]
assert shapes == [(1, w, 128 // r, 128 // r) for w, r in zip(arch.widths[1:], (8, 16, 32))], shapes
print(sum(p.numel() for p in timm.create_model({info['model_name']!r}).parameters()))
"""
    ran = subprocess.run([swiftnas_python(), "-c", script], capture_output=True, text=True,
                         check=False)
    assert ran.returncode == 0, ran.stderr
    assert int(ran.stdout.strip()) == info["params"]
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        rows = conn.execute("select trial_number, coreml from swiftnas_exports").fetchall()
    assert (trial, 1) in rows


def swiftnas_python() -> str:
    return str(Path(swiftnas_exe()).with_name("python"))


def test_migration_from_0001_keeps_measurements_and_creates_optuna_tables(tmp_path: Path,
                                                                           capsys) -> None:
    from alembic import command

    from latency_models import parse_measurements
    from nas.storage import StorageError, open_storage
    from nas.storage.storage import _alembic_config

    url = f"sqlite:///{tmp_path}/old.db"
    store = Storage(create_engine(url))
    with store.engine.begin() as conn:  # a database made by the previous swiftnas version
        command.upgrade(_alembic_config(conn), "0001")
    rows = parse_measurements("model,device,latency_ms,timm_name\nm,iPhone 14,1.5,resnet18\n")
    store.add_measurements(rows)
    with pytest.raises(StorageError, match=r"schema 0001, this swiftnas needs 0004; run "
                                           r"`swiftnas db upgrade --storage sqlite:///"):
        open_storage(url, create=False)
    assert main(["db", "upgrade", "--storage", url]) == 0
    upgraded = open_storage(url, create=False)
    assert [m.model for m in upgraded.measurements()] == ["m"]
    with upgraded.engine.connect() as conn:
        tables = {r[0] for r in conn.exec_driver_sql(
            "select name from sqlite_master where type='table'")}
    assert {"swiftnas_candidates", "swiftnas_exports", "swiftnas_trained_results",
            "swiftnas_evaluations", "studies", "trials"} <= tables


def test_batched_trial_writes_store_every_parameter_and_attribute(shm_dir: Path) -> None:
    """swiftnas's storage buffers a trial's suggests and attributes and writes them in one
    transaction (at the flush, or with the tell); what Optuna's own reader sees must be what
    one-by-one writes would have stored, and a trial another driver already finished refuses
    the late write, as Optuna does."""
    from optuna.exceptions import UpdateFinishedTrialError

    from nas.search.spec import SEARCH_SPACE
    from nas.search.study import optuna_storage

    url = f"sqlite:///{shm_dir}/batch.db"
    storage = optuna_storage(url)
    study = optuna.create_study(study_name="b", storage=storage, directions=["maximize"])
    trial = study.ask()
    arch = SEARCH_SPACE.sample(trial)
    trial.set_user_attr("early", 1)
    plain = optuna.load_study(study_name="b", storage=url)  # Optuna's own RDBStorage
    assert plain.trials[0].params == {} and plain.trials[0].user_attrs == {}  # buffered
    storage.flush(trial._trial_id)
    assert plain.trials[0].params == trial.params and len(trial.params) == 20
    assert plain.trials[0].user_attrs == {"early": 1}
    assert SEARCH_SPACE.sample(optuna.trial.FixedTrial(trial.params)) == arch
    storage.set_trial_attrs(trial._trial_id, {"a": 1.5, "rec": {"k": [1, 2]}},
                            {"constraints": [0.25]})
    storage.set_trial_attrs(trial._trial_id, {"a": 2.5}, {})  # a later value replaces
    assert plain.trials[0].user_attrs == {"early": 1}  # not yet: written with the tell
    study.tell(trial, 1.0)
    stored = plain.trials[0]
    assert stored.user_attrs == {"early": 1, "a": 2.5, "rec": {"k": [1, 2]}}
    assert stored.system_attrs["constraints"] == [0.25] and stored.values == [1.0]
    assert stored.state == optuna.trial.TrialState.COMPLETE and stored.datetime_complete
    with pytest.raises(TypeError):  # not JSON: refused at once, not at the flush
        storage.set_trial_attrs(trial._trial_id, {"bad": object()}, {})
    late = study.ask()
    late.suggest_int("x", 0, 3)
    plain.tell(late.number, state=optuna.trial.TrialState.FAIL)  # "another driver"
    with pytest.raises(UpdateFinishedTrialError):
        storage.flush(late._trial_id)
    storage.set_trial_attrs(late._trial_id, {"a": 1}, {})
    with pytest.raises(UpdateFinishedTrialError):
        study.tell(late, 2.0)
    assert plain.trials[1].state == optuna.trial.TrialState.FAIL
    assert plain.trials[1].params == {} and plain.trials[1].user_attrs == {}


@pytest.mark.parametrize("name", ["nsga2", "tpe"])
def test_known_space_samplers_propose_what_optunas_own_samplers_propose(name: str) -> None:
    """Telling the sampler the space (instead of Optuna inferring it from every trial) changes
    no proposal: same seed, same objective, the same architectures trial by trial."""
    from nas.search.sampling import make_sampler

    spec = StudySpec(name="s", latency_budget_ms=1.2, sampler=name, population_size=4, seed=5)
    optunas = (optuna.samplers.NSGAIISampler(population_size=4, seed=5) if name == "nsga2"
               else optuna.samplers.TPESampler(seed=5, multivariate=True))

    def proposals(sampler: optuna.samplers.BaseSampler) -> list[dict[str, object]]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        for _ in range(16):  # 4 NSGA-II generations; TPE past its 10 random start-up trials
            trial = study.ask()
            arch = SEARCH_SPACE.sample(trial)
            study.tell(trial, [sum(s.width * s.depth for s in arch.stages) % 97,
                               arch.resolution / 100 + arch.stages[2].depth])
        return [t.params for t in study.trials]

    ours = proposals(make_sampler(spec, 0))
    assert ours == proposals(optunas)
    assert len({json.dumps(p, sort_keys=True) for p in ours[10:]}) > 1  # it really searched


def test_ordered_trial_cache_equals_optunas_cache(shm_dir: Path) -> None:
    """The driver's trial cache keeps the trial list in number order instead of sorting it, and
    keeps this process's running trials in memory instead of re-reading them; it must return
    what Optuna's cache reads from the database, for every state filter and every trial,
    whoever wrote the trial (this driver or another one), also when another driver fails a
    trial this one runs."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import RDBStorage, _CachedStorage
    from optuna.trial import TrialState

    from nas.search.study import optuna_storage
    from nas.search.trial_cache import OrderedCachedStorage

    url = f"sqlite:///{shm_dir}/cache.db"
    cache = OrderedCachedStorage(optuna_storage(url))
    ours = optuna.create_study(study_name="c", storage=cache, directions=["maximize"])
    other = optuna.load_study(study_name="c", storage=url)  # another driver
    theirs = _CachedStorage(RDBStorage(url))
    x = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def check() -> None:
        for states in (None, (TrialState.COMPLETE,), (TrialState.WAITING,),
                       (TrialState.RUNNING,), (TrialState.RUNNING, TrialState.FAIL)):
            got = cache.get_all_trials(ours._study_id, deepcopy=False, states=states)
            want = theirs.get_all_trials(ours._study_id, deepcopy=False, states=states)
            assert got == want and [t.number for t in got] == sorted(t.number for t in got)
        for t in theirs.get_all_trials(ours._study_id, deepcopy=False):
            assert cache.get_trial(t._trial_id) == RDBStorage(url).get_trial(t._trial_id)

    for i in range(3):
        ours.tell(ours.ask(x), i)
    check()
    running = ours.ask(x)
    running.set_user_attr("record", {"k": (1, 2), "s": "a"})
    running.set_user_attr("n", 1)
    cache.flush(running._trial_id)
    check()  # a running trial of this process, with parameters and attributes
    failed = other.ask()
    other.tell(failed, state=TrialState.FAIL)
    check()
    other.enqueue_trial({"x": 0.5})
    check()  # a WAITING trial
    cache.set_trial_attrs(running._trial_id, {"n": 2}, {"constraints": (0.5,)})
    ours.tell(running, 9.0)  # a running trial finishes after later trials exist
    check()
    queued = ours.ask()  # takes the enqueued trial
    assert queued.suggest_float("x", 0, 1) == 0.5  # the enqueued value
    queued.set_user_attr("from_queue", True)
    cache.flush(queued._trial_id)
    check()
    ours.tell(queued, 4.0)
    doomed = ours.ask(x)
    cache.flush(doomed._trial_id)
    other.tell(doomed.number, state=TrialState.FAIL)  # another driver fails it as stale
    with pytest.raises(UpdateFinishedTrialError):
        ours.tell(doomed, 1.0)
    check()
    ours.tell(ours.ask(), 5.0)
    check()
    assert [t.state for t in ours.get_trials(deepcopy=False)] == [
        TrialState.COMPLETE] * 4 + [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL,
                                    TrialState.COMPLETE]
    assert ours.trials[3].user_attrs == {"record": {"k": [1, 2], "s": "a"}, "n": 2}


def test_nsga2_generations_match_optunas_when_trials_finish_out_of_order() -> None:
    """Several trials in flight that finish out of order, fail, or never finish: the
    incrementally kept generation counts give every trial Optuna's generation and parents."""
    from optuna.trial import TrialState

    from nas.search.sampling import make_sampler

    spec = StudySpec(name="g", latency_budget_ms=1.2, population_size=4, seed=11)

    def run(sampler: optuna.samplers.BaseSampler) -> list[tuple[object, ...]]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        rng = random.Random(0)
        in_flight: list[tuple[optuna.Trial, object]] = []
        for step in range(60):
            trial = study.ask()
            in_flight.append((trial, SEARCH_SPACE.sample(trial)))
            if len(in_flight) >= 3 or step == 59:  # tell a random one of the trials in flight
                done, arch = in_flight.pop(rng.randrange(len(in_flight)))
                if rng.random() < 0.15:
                    study.tell(done, state=TrialState.FAIL)
                else:
                    study.tell(done, [sum(s.width for s in arch.stages) % 89,  # type: ignore[attr-defined]
                                      arch.resolution / 100])  # type: ignore[attr-defined]
        return [(t.number, t.state, t.params, t.system_attrs) for t in study.trials]

    ours = run(make_sampler(spec, 0))
    # the same proposals, and the same attributes under Optuna's own names
    assert ours == run(optuna.samplers.NSGAIISampler(population_size=4, seed=11))
    generations = [a["NSGAIISampler:generation"] for *_, a in ours]
    assert max(generations) >= 5  # many generations were reached


def test_objectives_are_data_a_third_one_is_a_spec_change(tmp_path) -> None:
    # params as a third objective: the spec alone changes; the study stores three values, its
    # identity (format 2) names the three, and the default two cannot resume it
    from nas.search.spec import FORMAT, Objective, default_objectives

    url = f"sqlite:///{tmp_path}/three.db"
    three = (*default_objectives(1.5, surrogate=False), Objective("params", "minimize", "latency"))
    spec = StudySpec(name="three", latency_budget_ms=1.5, population_size=4, seed=2,
                     objectives=three)
    run_study(spec, url, 3)
    study = optuna.load_study(study_name="three", storage=url)
    assert study.metric_names == ["accuracy_score", "latency_ms", "params"]
    ident = study.user_attrs["swiftnas"]
    assert ident["format"] == FORMAT == 2
    assert [o["metric"] for o in ident["objectives"]] == ["accuracy_score", "latency_ms", "params"]
    for t in study.get_trials(deepcopy=False):
        summary = t.user_attrs["swiftnas"]
        assert t.values == [summary["proxy_scores"]["score"], summary["latency_ms"],
                            summary["params"]]
        assert t.system_attrs["constraints"] == [summary["latency_ms"] - 1.5]
    with pytest.raises(SearchError, match="other objectives"):
        run_study(StudySpec(name="three", latency_budget_ms=1.5), url, 4)
    with pytest.raises(SearchError, match="direction must be maximize or minimize"):
        Objective("params", "down", "latency")
