"""The token mixer as a search dimension (issue 42): ArchConfig's ``mixer``, the builder per
mixer, export to timm and Core ML, proxies, latency, the ``mixers`` space, and bad input."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import timm
import torch

from search_spaces import PRESETS, ArchConfig, InvalidArchError, SwiftFormerSpace, build_model
from search_spaces.space import SPACES, named_space

MIXER_STAGES = {"additive": {}, "mhsa": {"heads": 2}, "separable": {}}


def tiny(mixer: str, resolution: int = 64) -> ArchConfig:
    """A small four-stage network whose every stage has one attention block of ``mixer``."""
    stages = [{"depth": d, "width": w, "mlp_ratio": 2.0, "attn": [d - 1], "mixer": mixer,
               **MIXER_STAGES[mixer]} for d, w in zip([1, 1, 2, 1], [16, 24, 32, 48], strict=True)]
    return ArchConfig.from_dict({"resolution": resolution, "stages": stages})


def with_mixer(arch: ArchConfig, mixer: str, resolution: int | None = None) -> ArchConfig:
    data = arch.to_dict()
    data["resolution"] = resolution or arch.resolution
    for st in data["stages"]:
        st.pop("heads", None)
        st.update({"mixer": mixer, **MIXER_STAGES[mixer]})
    return ArchConfig.from_dict(data)


# -- ArchConfig -----------------------------------------------------------------------------
def test_files_without_a_mixer_load_as_additive_with_the_key_they_always_had() -> None:
    data = PRESETS["xs"].to_dict()
    for st in data["stages"]:
        del st["mixer"]
    old = ArchConfig.from_dict(data)
    assert old == PRESETS["xs"] and all(s.mixer == "additive" for s in old.stages)
    # the key every stored study and cache row uses (it was written before mixers existed)
    assert old.key() == "r224_d3w48m4a2_d3w56m4a2_d6w112m4a5_d4w220m4a3"


def test_mixer_round_trips_and_is_part_of_the_key() -> None:
    keys = set()
    for mixer in MIXER_STAGES:
        arch = tiny(mixer)
        again = ArchConfig.from_json(arch.to_json())
        assert again == arch and again.key() == arch.key()
        assert arch.to_dict()["stages"][0]["mixer"] == mixer
        keys.add(arch.key())
    assert len(keys) == 3
    assert tiny("mhsa").stages[0].mixer_label() == "mhsa2"


def test_a_stage_without_attention_has_no_mixer() -> None:
    """Equal networks compare equal: a conv-only stage's mixer builds nothing."""
    a = ArchConfig.from_lists(depths=[1, 1, 1, 1], widths=[16, 24, 32, 48], attn=[[]] * 4)
    data = a.to_dict()
    data["stages"][0].update({"mixer": "separable"})
    assert ArchConfig.from_dict(data) == a


@pytest.mark.parametrize(("change", "field", "fix"), [
    ({"mixer": "linear"}, "stages[1].mixer", 'Use "additive"'),
    ({"mixer": "mhsa", "heads": 5}, "stages[1].heads", "Use a divisor of 24"),
    ({"mixer": "mhsa"}, "stages[1].heads", '"heads": 8'),
    ({"mixer": "separable", "heads": 2}, "stages[1].heads", "Remove `stages[1].heads`"),
])
def test_bad_mixers_get_one_line_naming_the_stage_and_the_fix(
        change: dict[str, object], field: str, fix: str) -> None:
    data = tiny("additive").to_dict()
    data["stages"][1].update(change)
    with pytest.raises(InvalidArchError) as err:
        ArchConfig.from_dict(data)
    message = str(err.value)
    assert "\n" not in message and field in message and fix in message


# -- builder, timm, proxies -----------------------------------------------------------------
@pytest.mark.parametrize("mixer", list(MIXER_STAGES))
def test_every_mixer_builds_learns_and_loads_strictly_as_a_registered_timm_model(
        mixer: str) -> None:
    from timm.models import register_model

    from search_spaces.model import create_registered_model

    arch = tiny(mixer)
    name = f"swiftnas_test_mixer_{mixer}"

    def _factory(pretrained: bool = False, **kwargs):  # type: ignore[no-untyped-def]
        return create_registered_model(name, arch, pretrained, **kwargs)

    _factory.__name__ = name  # timm registers a function by its name
    register_model(_factory)  # what an export's model.py does
    model = build_model(arch, num_classes=10).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10)
    out.square().mean().backward()
    attn = model.stages[0].blocks[0].attn
    assert any(c.__module__.startswith("timm.") for c in type(attn).__mro__)  # timm's
    assert all(p.grad is not None for p in attn.parameters())
    again = timm.create_model(name, num_classes=10)
    again.load_state_dict(model.state_dict(), strict=True)
    model.eval(), again.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_mixers_cost_what_their_operations_say() -> None:
    """MHSA's token-by-token products grow with the square of the tokens; the others' do not."""
    from search_spaces import arch_stats

    xs = PRESETS["xs"]
    macs = {m: [arch_stats(with_mixer(xs, m, r)).macs for r in (224, 320)] for m in MIXER_STAGES}
    growth = {m: b / a for m, (a, b) in macs.items()}
    tokens = (320 / 224) ** 2
    assert growth["mhsa"] > 1.5 * tokens and growth["additive"] < 1.1 * tokens
    assert growth["separable"] < 1.1 * tokens
    assert macs["mhsa"][0] > 2 * macs["additive"][0]


@pytest.mark.parametrize("mixer", ["mhsa", "separable"])
def test_every_proxy_scores_every_mixer(mixer: str) -> None:
    from nas.proxies import ProxySettings, score_arch
    from nas.proxies.catalog import available_proxies

    scores = score_arch(tiny(mixer), proxies=available_proxies(),
                        settings=ProxySettings(num_classes=10, resolution=64))
    assert set(scores) == set(available_proxies())
    assert all(math.isfinite(v) for v in scores.values()), scores


# -- latency ----------------------------------------------------------------------------------
def test_the_predictor_prices_each_mixer_and_says_which_are_unseen() -> None:
    from latency_models.defaults import load_default_predictor

    predictor = load_default_predictor()
    xs = PRESETS["xs"]
    pred = {m: {r: predictor.predict(device="iPhone 14", model=with_mixer(xs, m, r))
                for r in (224, 320)} for m in MIXER_STAGES}
    assert pred["additive"][224].latency_ms == pytest.approx(
        predictor.predict(device="iPhone 14", model=xs).latency_ms)
    width = {m: p[224].high_ms / p[224].low_ms for m, p in pred.items()}
    # no measured SwiftFormer has these mixers: the interval of a family never seen
    assert width["mhsa"] > 1.5 * width["additive"] and width["separable"] > 1.5 * width["additive"]
    growth = {m: p[320].latency_ms / p[224].latency_ms for m, p in pred.items()}
    assert growth["mhsa"] > 2 * growth["additive"]


def test_a_predictor_fitted_without_attention_cannot_price_mhsa(tmp_path: Path) -> None:
    from latency_models.defaults import load_default_predictor
    from latency_models.predictor import LatencyPredictor, PredictorError

    data = load_default_predictor().to_dict()
    keep = [i for i, n in enumerate(data["feature_names"]) if not n.startswith("matmul.")]
    data["feature_names"] = [data["feature_names"][i] for i in keep]
    data["feature_scale"] = [data["feature_scale"][i] for i in keep]
    data["weights"] = {c: [w[i] for i in keep] for c, w in data["weights"].items()}
    cnn_only = LatencyPredictor.from_dict(data)
    cnn_only.predict(device="iPhone 14", model=tiny("separable"))  # no matmul: priced
    with pytest.raises(PredictorError, match=r"stages\[0\] uses the mhsa mixer, whose matmul "):
        cnn_only.predict(device="iPhone 14", model=tiny("mhsa"))


def test_latency_predict_says_a_mixer_is_priced_from_its_operations(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_latency import _cli

    arch = tmp_path / "sep.json"
    arch.write_text(with_mixer(PRESETS["xs"], "separable").to_json())
    code, out, err = _cli(capsys, "latency", "predict", "--arch", str(arch), "--device",
                          "iPhone 14")
    assert code == 0, err
    assert "separable" in out and "operations alone" in out
    code, out, err = _cli(capsys, "latency", "predict", "--arch", str(arch), "--device",
                          "iPhone 14", "--format", "json")
    assert json.loads(out)["note"].startswith("no measured model uses separable")
    # a timm model of a family without calibration rows is said to be priced the same way;
    # one of a measured family, and an additive SwiftFormer, have no note
    code, out, err = _cli(capsys, "latency", "predict", "--model", "mobilevitv2_050",
                          "--device", "iPhone 14", "--format", "json")
    assert code == 0, err
    assert "operations alone" in json.loads(out)["note"]
    for flag, model in (("--model", "deit_tiny_patch16_224"), ("--arch", "xs")):
        code, out, err = _cli(capsys, "latency", "predict", flag, model, "--device",
                              "iPhone 14", "--format", "json")
        assert code == 0 and "note" not in json.loads(out), err


# -- the space ----------------------------------------------------------------------------------
def test_the_default_space_is_unchanged_and_the_mixers_space_opens_the_dimension() -> None:
    default, mixers = named_space("default"), named_space("mixers")
    assert default == SwiftFormerSpace()
    assert not any("mixer" in p or "heads" in p for p in default.parameters())
    params = mixers.parameters()
    assert params["s2_mixer"] == ("additive", "mhsa", "separable")
    assert params["s2_heads"] == (2, 4)
    archs = mixers.sample_random(200, seed=0)
    assert {m for a in archs for m in a.mixers} == {"additive", "mhsa", "separable"}
    for a in archs[:50]:
        assert mixers.contains(a) and mixers.params_of(a) is not None
        again = mixers.sample(_Replay(mixers.params_of(a) or {}))
        assert again == a
    assert all(default.contains(a) == (a.mixers <= {"additive"}) for a in archs
               if mixers.contains(a) and a.resolution in default.resolutions)
    assert mixers.size() > default.size()
    mhsa = next(a for a in archs if "mhsa" in a.mixers)
    assert "mhsa" in (default.mixer_mismatch(mhsa) or "")
    assert "--space mixers" in (default.mixer_mismatch(mhsa) or "")
    with pytest.raises(ValueError, match=r"unknown search space 'mixer'.*default, mixers"):
        named_space("mixer")
    assert set(SPACES) == {"default", "mixers"}


class _Replay:
    def __init__(self, params: dict[str, object]) -> None:
        self.params = params

    def suggest_categorical(self, name: str, choices: object) -> object:
        return self.params[name]


# -- Core ML ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mixer", ["mhsa", "separable"])
def test_every_mixer_converts_to_core_ml(mixer: str) -> None:
    from latency_models.coreml import convert, mil_op_counts

    model = build_model(tiny(mixer), num_classes=10)
    mlmodel = convert(model, 64)
    ops = mil_op_counts(mlmodel)
    assert ops.get("conv", 0) >= 5
    if mixer == "mhsa":
        assert ops.get("matmul", 0) + ops.get("scaled_dot_product_attention", 0) >= 1, ops
    else:
        assert ops.get("softmax", 0) >= 1, ops


# -- a study of the mixers space: search, pareto, export, dashboard ----------------------------
@pytest.fixture(scope="module")
def mixer_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    from nas.search import StudySpec, run_study
    from nas.search.spec import search_space

    url = f"sqlite:///{tmp_path_factory.mktemp('mixers')}/mixers.db"
    # two of the user's own architectures first: one per non-additive mixer
    start = (with_mixer(PRESETS["xs"], "separable"), with_mixer(PRESETS["xs"], "mhsa"))
    run_study(StudySpec(name="mix", latency_budget_ms=1.5, population_size=4, seed=1,
                        space=search_space("mixers"), start_archs=start), url, 12)
    return url, "mix"


def test_a_mixers_study_evaluates_every_mixer_and_pareto_shows_them(
        mixer_study: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    from nas.cli import main
    from nas.search import load_study
    from nas.search.pareto import study_candidates

    url, name = mixer_study
    cands = study_candidates(load_study(url, name).study)
    used = {m for c in cands for m in c.arch.mixers}
    assert used == {"additive", "mhsa", "separable"}
    assert main(["pareto", "--study", name, "--storage", url, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert all(len(row["mixers"].split()) == 4 for row in out["front"] + out["references"])
    assert main(["pareto", "--study", name, "--storage", url]) == 0
    table = capsys.readouterr().out
    assert "mixers" in table and out["front"][0]["mixers"].split()[0][0] in table


def test_a_default_space_study_refuses_another_mixer_naming_the_stage(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nas.cli import main

    arch = tmp_path / "mhsa.json"
    arch.write_text(with_mixer(PRESETS["xs"], "mhsa").to_json())
    db = tmp_path / "d.db"
    code = main(["search", "--study", "d", "--storage", f"sqlite:///{db}",
                 "--latency-budget-ms", "1", "--trials", "2", "--start-from", str(arch)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "stages[0] uses the mhsa mixer" in err and "--space mixers" in err
    assert not db.exists()  # refused before anything was written
    config = tmp_path / "study.toml"
    config.write_text('study = "m"\nlatency_budget_ms = 1.0\nspace = "mixer"\n')
    code = main(["search", "--config", str(config), "--storage", f"sqlite:///{db}"])
    assert code == 2 and "unknown search space 'mixer'" in capsys.readouterr().err


def test_a_mixer_candidate_exports_as_a_timm_model_that_loads_strictly(
        mixer_study: tuple[str, str], tmp_path: Path) -> None:
    import importlib.util

    from nas.search import load_study
    from nas.search.export import export_trial
    from nas.search.pareto import study_candidates

    url, name = mixer_study
    loaded = load_study(url, name)
    pick = next(c for c in study_candidates(loaded.study) if "mhsa" in c.arch.mixers)
    out = tmp_path / "export"
    export_trial(loaded, pick.trial, out)  # type: ignore[arg-type]
    info = json.loads((out / "export.json").read_text())
    assert info["arch"] == pick.arch.to_dict()
    card = (out / "MODEL_CARD.md").read_text()
    assert "multi-head self-attention, " in card  # each stage's mixer in the model card
    spec = importlib.util.spec_from_file_location("exported_mixer_model", out / "model.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  (as `import model` does)
    spec.loader.exec_module(module)  # type: ignore[union-attr]  (registers the model)
    net = timm.create_model(info["model_name"], num_classes=10)
    net.load_state_dict(build_model(pick.arch, num_classes=10).state_dict(), strict=True)


def test_the_dashboard_filters_by_mixer_and_shows_each_blocks_mixer(
        mixer_study: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from dashboard import data

    url, name = mixer_study
    monkeypatch.setenv("SWIFTNAS_STORAGE", url)
    app = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
    at = AppTest.from_file(app, default_timeout=180)
    at.query_params["page"], at.query_params["study"] = "pareto", name
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    box = next(m for m in at.multiselect if m.label.startswith("Token mixers"))
    assert set(box.options) == {"additive", "mhsa", "separable"}
    n_all = len(data.study(url, name).trials.query("state == 'complete'"))
    assert any(f"{n_all} trials shown" in c.value for c in at.caption)
    box.set_value(["A"]).run()  # additive-only trials (and attention-free ones)
    view = data.study(url, name).trials
    additive = sum(1 for m in view.query("state == 'complete'")["mixers"]
                   if set(m.replace("-", "").split()) <= {"A"})
    assert any(f"{additive} trials shown" in c.value for c in at.caption)
    assert additive < n_all
    trial = int(view[view["mixers"].str.contains("M")].iloc[0]["trial"])
    at = AppTest.from_file(app, default_timeout=180)
    at.query_params["page"], at.query_params["study"] = "candidate", name
    at.query_params["trial"] = str(trial)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    stages = at.dataframe[0].value
    assert "mixer" in stages.columns and any(m.startswith("mhsa") for m in stages["mixer"])
    assert any("M" in b for b in stages["blocks"])


def test_a_search_that_trains_its_front_trains_mixer_candidates(tmp_path: Path) -> None:
    """The multi-fidelity loop on a mixers study: real (tiny) trainings of its picks."""
    from nas.multifidelity import train_front
    from nas.search import StudySpec, run_study
    from nas.search.spec import search_space
    from nas.storage import open_storage
    from nas.training import TrainRecipe
    from nas.training.results import list_results

    url = f"sqlite:///{tmp_path}/mf.db"
    start = (with_mixer(PRESETS["xs"], "separable"), with_mixer(PRESETS["xs"], "mhsa"))
    run_study(StudySpec(name="mixmf", latency_budget_ms=20.0, population_size=4, seed=3,
                        space=search_space("mixers"), start_from_presets=False,
                        start_archs=start), url, 4)
    recipe = TrainRecipe(epochs=1, resolution=32, batch_size=64, train_subset=128,
                         val_subset=64)
    report = train_front(url, "mixmf", data="fashion-mnist", budget=4, out=tmp_path / "runs",
                         recipe=recipe)
    assert report.trained == 4
    results = list_results(open_storage(url))
    assert any("xseparable" in r.arch_key or "xmhsa" in r.arch_key for r in results)


def test_a_config_names_the_mixers_space_or_gives_mixers_per_stage(tmp_path: Path) -> None:
    from nas.search.spec import read_config, search_space, space_to_dict

    named = tmp_path / "named.toml"
    named.write_text('study = "m"\nlatency_budget_ms = 1.0\nspace = "mixers"\n')
    assert read_config(named)["space"] == search_space("mixers")
    stages = "".join(
        f'[[space.stages]]\ndepths = [2]\nwidths = [{w}]\nmixers = ["additive", "separable"]\n'
        for w in (32, 48, 64, 96))
    table = tmp_path / "table.toml"
    table.write_text(f'study = "t"\nlatency_budget_ms = 1.0\n[space]\nresolutions = [224]\n'
                     f"{stages}")
    space = read_config(table)["space"]
    assert {m for a in space.sample_random(40, seed=0) for m in a.mixers} == {
        "additive", "separable"}
    # a study's identity records the mixers only where a stage offers more than additive
    assert "mixers" not in space_to_dict(search_space("default"))["stages"][0]
    assert space_to_dict(space)["stages"][0]["mixers"] == ["additive", "separable"]
    assert "heads" not in space_to_dict(space)["stages"][0]


def test_resuming_a_mixers_study_without_its_space_says_which_space(
        mixer_study: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    from nas.cli import main

    url, name = mixer_study
    code = main(["search", "--study", name, "--storage", url, "--latency-budget-ms", "1.5",
                 "--trials", "1", "--seed", "1", "--population-size", "4"])
    err = capsys.readouterr().err
    assert code == 2 and "(the mixers space, not the default space; --space)" in err
