"""Latency v3: the family stage, the shipped predictor as the CLI's recipe, SwiftFormer's own
numbers, old predictor files and studies, and the calibration file's bad input."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from latency_models import (
    FeatureCache,
    LatencyPredictor,
    calibration_csv,
    load_default_predictor,
    read_measurements,
)
from latency_models.defaults import CALIBRATION_FEATURES_PATH, PREDICTOR_VERSION
from latency_models.family import FamilyOptions, fit_family
from latency_models.measurements import merge_duplicates
from latency_models.predictor import SEARCH_FAMILY, PredictorError, fit_predictor
from nas.cli import main
from nas.search import StudySpec, load_study, run_study
from search_spaces import ArchConfig, get_preset

V24 = Path(__file__).with_name("data") / "predictor_v2.4.json"
PAPER_IPHONE14_MS = {"xs": 0.7, "s": 0.8, "l1": 1.1, "l3": 1.9}


@pytest.fixture(scope="module")
def shipped_cache() -> FeatureCache:
    """The shipped features of every calibration model: no model builds."""
    return FeatureCache(preload=CALIBRATION_FEATURES_PATH)


def test_the_default_predictor_agrees_with_the_paper_on_its_own_models():
    predictor = load_default_predictor()
    assert predictor.version == PREDICTOR_VERSION == "3"
    for name, paper in PAPER_IPHONE14_MS.items():
        p = predictor.predict(device="iPhone 14", model=get_preset(name))
        assert abs(p.latency_ms - paper) <= max(0.1 * paper, 0.1), (name, p.latency_ms)
        # the family's own interval: narrower than the v2.4 predictor's 0.39-2.14 ms for XS
        assert p.low_ms < paper < p.high_ms and p.high_ms / p.low_ms < 2.0, (name, p)


def test_the_cli_fit_with_its_defaults_is_the_shipped_predictor(tmp_path, shipped_cache):
    """`swiftnas latency fit` with its defaults reproduces the shipped artifact's predictions
    (its cross-validation only adds metrics and interval spreads, so --no-cv checks the fit)."""
    out = tmp_path / "p.json"
    assert main(["latency", "fit", "--no-cv", "--out", str(out)]) == 0
    refit, shipped = LatencyPredictor.load(out), load_default_predictor()
    assert refit.training["family_options"] == shipped.training["family_options"]
    assert refit.training["sources"] == shipped.training["sources"]
    checked = 0
    for m in read_measurements(calibration_csv()):
        if m.timm_name or m.arch:
            a = refit.predict_measurement(m, cache=shipped_cache).latency_ms
            b = shipped.predict_measurement(m, cache=shipped_cache).latency_ms
            assert a == pytest.approx(b, rel=1e-6), m.model
            checked += 1
    for name in PAPER_IPHONE14_MS:
        for device in ("iPhone 14", "iPhone 12", "iPhone 15 Pro"):
            a = refit.predict(device=device, model=get_preset(name)).latency_ms
            b = shipped.predict(device=device, model=get_preset(name)).latency_ms
            assert a == pytest.approx(b, rel=1e-6)
    assert checked > 400


def test_the_family_stage_leaves_unseen_families_as_they_were(shipped_cache):
    """Leave-one-family-out is unchanged by construction: a held-out family gets no
    correction, and the shared stage never sees the family stage."""
    rows = [m for m in read_measurements(calibration_csv())
            if m.timm_name and any(s in m.source for s in ("SwiftFormer", "iFormer", "RepViT"))]
    with_stage = fit_predictor(rows, cache=shipped_cache, own_interval_families=())
    without = fit_predictor(rows, cache=shipped_cache, family_options=None)
    assert with_stage.cv_predictions == without.cv_predictions
    # ... and the families it has seen are predicted from their own rows: better in-sample
    swift = [m for m in rows if m.family == SEARCH_FAMILY]

    def mape(p: LatencyPredictor) -> float:
        return sum(abs(p.predict_measurement(m, cache=shipped_cache).latency_ms / m.latency_ms
                       - 1) for m in swift) / len(swift)

    assert mape(with_stage.predictor) < mape(without.predictor)


def test_a_family_correction_is_a_shift_per_table_and_a_slope():
    # two tables; in both the family is 10% slower at the small end, 10% faster at the large
    r = [0.1, 0.0, -0.1, 0.12, 0.0, -0.12]
    x = [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]
    fam = fit_family(r, x, ["a", "a", "a", "b", "b", "b"], FamilyOptions(0.1, 0.1, 0.01))
    assert fam.slope == pytest.approx(-0.11, abs=0.01) and fam.centre == 1.0
    assert fam.log_correction("a", 0.0) == pytest.approx(0.1, abs=0.02)
    # a table the family has no rows in: the family's own (pulled) shift and its slope
    assert fam.log_correction("c", 2.0) == pytest.approx(fam.shift - fam.slope * -1.0)
    strong = fit_family(r, x, ["a"] * 3 + ["b"] * 3, FamilyOptions(100.0, 100.0, 100.0))
    assert abs(strong.slope) < 0.01 and abs(strong.shift) < 0.01


def test_only_the_searched_family_gets_its_own_interval():
    predictor = load_default_predictor()
    fam = predictor.families[SEARCH_FAMILY]
    assert fam.sigma_log is not None and fam.rows == 11
    assert predictor.metrics["families"][SEARCH_FAMILY]["mape"] <= 10
    assert predictor.metrics["families"][SEARCH_FAMILY]["worst"] <= 15
    xs = predictor.predict(device="iPhone 14", model=get_preset("xs"))
    assert xs.sigma_log == fam.sigma_log
    # a model of a family the predictor has never seen keeps its group's (wider) interval
    other = predictor.predict(device="iPhone 14", model="resnet18")
    group = predictor.groups[other.group]
    assert other.sigma_log == (group.sigma_log or predictor.pooled_sigma_log)


def test_an_old_predictor_file_still_loads_and_predicts_as_it_did():
    old = LatencyPredictor.load(V24)
    assert old.version == "2.4" and not old.families
    xs = old.predict(device="iPhone 14", model=get_preset("xs"))
    assert xs.latency_ms == pytest.approx(0.9128, abs=1e-4)  # v2.4's published +30%


def test_a_study_started_with_v24_resumes_with_its_own_predictor(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/old.db"
    spec = StudySpec(name="old", latency_budget_ms=1.2, predictor_path=str(V24),
                     start_from_presets=False)
    run_study(spec, url, 2)
    code = main(["search", "--study", "old", "--storage", url, "--latency-budget-ms", "1.2",
                 "--trials", "3"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "resuming with the study's own latency predictor (swiftnas-latency v2.4)" in err
    loaded = load_study(url, "old")
    assert len(loaded.study.trials) == 3
    old = LatencyPredictor.load(V24)
    for t in loaded.study.trials:  # every trial priced by v2.4, none by v3
        arch = t.user_attrs["swiftnas"]["arch"]
        assert t.values[1] == pytest.approx(old.predict(
            device="iPhone 14", model=ArchConfig.from_dict(arch)).latency_ms)


def test_a_row_whose_model_cannot_be_built_names_its_file_and_line(tmp_path, capsys):
    csv = tmp_path / "m.csv"
    csv.write_text("model,device,latency_ms,timm_name,family\n"
                   "a,iPhone 14,1.0,resnet18,ResNet\n"
                   "b,iPhone 14,1.2,swiftformer_xxl,SwiftFormer\n"
                   "c,iPhone 14,2.0,resnet34,ResNet\n")
    code = main(["latency", "fit", "--no-cv", "--measurements", str(csv), "--out",
                 str(tmp_path / "p.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert f"{csv}:3" in err


def test_a_model_measured_twice_is_averaged_with_a_warning_naming_both_lines(tmp_path, capsys):
    rows = read_measurements(calibration_csv())[:3]
    twice = [*rows, dataclasses.replace(rows[1], latency_ms=rows[1].latency_ms * 1.5,
                                        origin="mine.csv:9")]
    merged, notes = merge_duplicates(twice)
    assert len(merged) == 3 and len(notes) == 1
    assert rows[1].origin in notes[0] and "mine.csv:9" in notes[0]
    assert merged[1].latency_ms == pytest.approx(rows[1].latency_ms * 1.25)
    # through the CLI: a warning, and the import stores one row
    csv = tmp_path / "dup.csv"
    csv.write_text("model,device,latency_ms,timm_name\nm,iPhone 14,1.0,resnet18\n"
                   "m,iPhone 14,1.2,resnet18\n")
    assert main(["latency", "import", str(csv), "--storage", f"sqlite:///{tmp_path}/d.db"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {csv}:2 and {csv}:3" in err and "mean, 1.1 ms" in err


def test_a_damaged_family_block_is_refused():
    data = load_default_predictor().to_dict()
    data["families"][SEARCH_FAMILY]["slope"] = math.inf
    with pytest.raises(PredictorError, match="family 'SwiftFormer'"):
        LatencyPredictor.from_dict(data)


def test_the_shipped_predictor_predicts_what_it_predicted_before_the_package_split() -> None:
    # tests/data/predictions_v3.json was written by the single-module predictor (before
    # latency_models/predictor became a package): every number must match to the last digit.
    import json
    from pathlib import Path

    from latency_models import FeatureCache, load_predictor
    from search_spaces import ArchConfig

    golden = json.loads((Path(__file__).parent / "data" / "predictions_v3.json").read_text())
    predictor, cache = load_predictor(None), FeatureCache()
    for row in golden:
        arch = ArchConfig.from_dict(row["arch"])
        got = predictor.predict_features(cache.get(arch), predictor.resolve_group(
            row["device"]), family=predictor.family_of(arch))
        assert (got.latency_ms, got.low_ms, got.high_ms, got.sigma_log, got.group) == (
            row["latency_ms"], row["low_ms"], row["high_ms"], row["sigma_log"], row["group"])
