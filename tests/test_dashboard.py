"""The Streamlit dashboard, page by page (streamlit.testing AppTest), on a study created by the
real search code; error states show a message in the page, never a traceback."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import data, plots
from latency_models import load_default_predictor
from nas.search import StudySpec, run_study
from nas.search.escaping import markdown_text

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def storage() -> Iterator[str]:
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=base) as d:
        url = f"sqlite:///{d}/dash.db"
        run_study(StudySpec(name="dash", latency_budget_ms=1.2, population_size=4, seed=2),
                  url, 8)
        run_study(StudySpec(name="dash12", device="iPhone 12", latency_budget_ms=2.0,
                            sampler="random", seed=9), url, 5)
        optuna.create_study(study_name="foreign", storage=url)  # another tool's study
        yield url


def _app(monkeypatch, url: str, **params: str) -> AppTest:
    monkeypatch.setenv("SWIFTNAS_STORAGE", url)
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_studies_page(storage, monkeypatch) -> None:
    at = _app(monkeypatch, storage, page="studies")
    df = at.table[0].value
    assert set(df["study"]) == {"dash", "dash12", "foreign"}
    assert df[df["study"] == "foreign"].iloc[0]["best"] == "(not a swiftnas study)"
    row = df[df["study"] == "dash"].iloc[0]
    assert (row["device"], row["complete"], row["latency_budget_ms"]) == ("iPhone 14", 8, 1.2)
    assert row["best"].startswith("trial ")


def test_pareto_page_plots_every_trial_and_opens_a_candidate(storage, monkeypatch) -> None:
    at = _app(monkeypatch, storage, page="pareto", study="dash")
    view = data.study(storage, "dash")
    n_front = int(view.trials["pareto"].sum())
    assert any(f"8 trials shown, {n_front} on the feasible Pareto front" in c.value
               for c in at.caption)
    chart = _vega(at)  # every trial in the chart's data, the front marked
    assert len(chart) == 8 and int((chart["kind"] == "Pareto front").sum()) == n_front
    table = at.table[0].value  # the front, fastest first
    assert len(table) == n_front and list(table["latency_ms"]) == sorted(table["latency_ms"])
    # Compare two studies (two devices) on one plot.
    at.multiselect[0].set_value(["dash", "dash12"]).run()
    assert any("13 trials shown" in c.value for c in at.caption)
    # Selecting a candidate opens its page.
    first = at.selectbox(key="open_candidate").options[1]
    at.selectbox(key="open_candidate").set_value(first).run()
    assert not at.exception
    assert at.sidebar.radio[0].value == "Candidate"
    assert any(h.value == markdown_text(first) for h in at.subheader)  # escaped user text


def _vega_frames(at: AppTest) -> list[pd.DataFrame]:
    """The data of the page's Vega-Lite charts, as Streamlit sends it to the browser (Arrow)."""
    import pyarrow as pa

    return [pa.ipc.open_stream(d.data.data).read_pandas()
            for chart in at.get("vega_lite_chart") for d in chart.proto.datasets]


def _vega(at: AppTest) -> pd.DataFrame:
    """The Pareto chart's trial rows."""
    return next(f for f in _vega_frames(at) if "kind" in f.columns)


def test_candidate_page(storage, monkeypatch) -> None:
    view = data.study(storage, "dash")
    trial = int(view.trials[view.trials["pareto"]].iloc[0]["trial"])
    at = _app(monkeypatch, storage, page="candidate", study="dash", trial=str(trial))
    assert at.subheader[0].value == f"dash / trial {trial}"
    labels = [m.label for m in at.metric]
    assert labels[:3] == ["Accuracy score", "Latency on iPhone 14", "Params"]
    assert any("on the feasible Pareto front" in m.value for m in at.markdown)
    stages = at.dataframe[0].value
    assert list(stages["stage"]) == [0, 1, 2, 3]
    blocks = next(f for f in _vega_frames(at) if "block" in f.columns)  # one box per block
    assert len(blocks) == int(stages["depth"].sum())
    assert len(at.get("download_button")) == 1


def _values(array: object) -> list:
    """A plotly JSON array as a list (plotly sends numeric arrays as base64 typed arrays)."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)  # type: ignore[call-overload]


def test_insights_page(storage, monkeypatch) -> None:
    at = _app(monkeypatch, storage, page="insights", study="dash")
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    # importances for accuracy and for latency, search progress, parallel coordinates
    assert len(charts) == 4
    space = set(optuna.load_study(study_name="dash", storage=storage).trials[0].params)
    for chart in charts[:2]:
        bars = chart["data"][0]
        assert bars["type"] == "bar" and set(bars["y"]) <= space and len(bars["y"]) >= 2
        assert _values(bars["x"]) == sorted(_values(bars["x"]))  # the largest on top
    view = data.study(storage, "dash")
    feasible = view.trials[view.trials["feasible"] == True].sort_values("trial")  # noqa: E712
    progress = charts[2]["data"][0]
    assert _values(progress["x"]) == list(feasible["trial"])
    assert _values(progress["y"]) == list(feasible["accuracy_score"].cummax())
    # Optuna 5 draws parallel coordinates as one line per complete trial (plus axis traces)
    complete = int((view.trials["state"] == "complete").sum())
    lines = [tr for tr in charts[3]["data"] if tr["type"] == "scatter" and tr["mode"] == "lines"]
    assert len(lines) >= complete


def test_error_states_are_messages(storage, monkeypatch, tmp_path) -> None:
    empty = f"sqlite:///{tmp_path}/empty.db"
    from nas.storage import open_storage

    open_storage(empty)
    at = _app(monkeypatch, empty, page="studies")
    assert any("No studies" in i.value for i in at.info)
    at = _app(monkeypatch, storage, page="pareto", study="nope")
    assert any(markdown_text("No study 'nope'") in w.value for w in at.warning)
    for url in ("notaurl", "sqlite:////no/such/dir/x.db",
                "postgresql+psycopg://nobody@127.0.0.1:1/none"):
        at = _app(monkeypatch, url, page="studies")
        assert at.error and "storage" in at.error[0].value.lower()


def test_plots_are_pure_functions_of_frames() -> None:
    trials = pd.DataFrame({
        "trial": [0, 1, 2], "state": ["complete"] * 3, "accuracy_score": [1.0, 2.0, 3.0],
        "latency_ms": [0.5, 0.8, 1.5], "latency_low_ms": [0.4, 0.6, 1.2],
        "latency_high_ms": [0.6, 1.0, 1.9], "params_m": [1.0, 2.0, 3.0],
        "gmacs": [0.1, 0.2, 0.3], "attn_blocks": [0, 2, 4], "feasible": [True, True, False],
        "pareto": [True, True, False], "arch_key": ["a", "b", "c"],
    })
    shown = plots.filter_trials(trials, feasible_only=True, attn=(1, 4))
    assert list(shown["trial"]) == [1]
    mixed = trials.assign(mixers=["- - - -", "A S - A", "M4 A A A"])
    assert list(plots.filter_trials(mixed, mixers=["A"])["trial"]) == [0]
    assert list(plots.filter_trials(mixed, mixers=["A", "S"])["trial"]) == [0, 1]
    assert list(plots.filter_trials(mixed, mixers=["A", "M", "S"])["trial"]) == [0, 1, 2]
    points = plots.pareto_points([("s", trials, 1.0)])
    assert list(points["kind"]) == ["Pareto front", "Pareto front", "infeasible"]
    assert list(points["arch_key"].fillna("")) == ["a", "b", ""]  # keys on the front only
    spec = plots.pareto_chart([("s", trials, 1.0), ("t", trials, 2.0)]).to_dict()
    budgets = next(d for d in spec["datasets"].values() if "budget_ms" in d[0])
    assert [b["label"] for b in budgets] == ["s: budget 1 ms", "t: budget 2 ms"]
    assert [p["name"] for p in spec["params"]] == [plots.PICK]  # one selection, clickable
    assert spec["usermeta"]["embedOptions"]["renderer"] == "svg"  # each point an element
    many = pd.concat([trials] * 700, ignore_index=True)  # 2,100 points: one canvas
    spec = plots.pareto_chart([("s", many, 1.0)]).to_dict()
    assert spec["usermeta"]["embedOptions"]["renderer"] == "canvas"


def test_latency_page_and_csv_import(storage, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SWIFTNAS_CACHE_DIR", str(tmp_path / "cache"))  # shipped features only
    at = _app(monkeypatch, storage, page="latency")
    assert any("Predictor in use: **" + markdown_text("swiftnas-latency") in m.value
               for m in at.markdown)
    groups = at.dataframe[0].value
    assert "arXiv:2303.15446 (SwiftFormer, ICCV'23) | iPhone 14 | ANE" in set(groups["group"])
    points = next(f for f in _vega_frames(at) if "origin" in f.columns)
    # the shipped rows as held out (leave-one-family-out): every row whose table holds another
    # family too (a one-family table cannot be held out)
    assert len(points) > 150 and points["predicted_ms"].gt(0).all()
    held_out: dict[tuple[str, float], list[float]] = {}
    for r in load_default_predictor().metrics["cv_rows"]:
        if r["predicted_ms"]:
            held_out.setdefault((r["model"], r["measured_ms"]), []).append(r["predicted_ms"])
    assert set(points["origin"]) == {"shipped, held out (LOFO)"}
    for m, x, p in zip(points["model"], points["measured_ms"], points["predicted_ms"],
                       strict=True):
        assert any(abs(p / q - 1) < 1e-6 for q in held_out[m, x]), (m, x, p)
    # the upload widget cannot be driven by AppTest; the page's parse and import calls can
    from latency_models import MeasurementError

    with pytest.raises(MeasurementError, match="latency_ms"):
        data.check_measurements_csv(b"model,device,latency_ms,timm_name\nm,iPhone 14,-1,resnet18\n")
    rows = data.check_measurements_csv(b"model,device,latency_ms,timm_name\n"
                                       b"m,iphone 14 ,1.5,resnet18\n")
    assert data.import_measurements(storage, rows, "test.csv") == (1, [])
    # a near miss of a known phone is refused here too, nothing stored
    typo = data.check_measurements_csv(b"model,device,latency_ms,timm_name\n"
                                       b"m2,iPhnoe 14,1.5,resnet18\n")
    with pytest.raises(MeasurementError, match="did you mean 'iPhone 14'"):
        data.import_measurements(storage, typo, "typo.csv")
    df, _, _ = data.latency_rows(storage)
    mine = df[df["origin"] == "imported (yours)"]
    assert list(mine["model"]) == ["m"] and mine["predicted_ms"].notna().all()
    assert list(mine["device"]) == ["iPhone 14"]


def test_study_view_decodes_only_new_and_changed_trials(storage, monkeypatch, tmp_path) -> None:
    """The kept trial rows (``data._rows``) give the same view as a fresh read after trials are
    added and change state, and a re-read decodes only those trials."""
    import shutil

    from nas.search.spec import ATTR

    copy = tmp_path / "copy.db"
    shutil.copy(storage.removeprefix("sqlite:///"), copy)
    url = f"sqlite:///{copy}"
    built: list[int] = []
    real = data.from_summary
    monkeypatch.setattr(data, "from_summary", lambda *a, **k: built.append(1) or real(*a, **k))

    def fresh() -> pd.DataFrame:
        kept = dict(data._rows)
        data._rows.clear()
        try:
            return data.study(url, "dash").trials
        finally:
            data._rows.update(kept)

    first = data.study(url, "dash").trials
    assert len(built) == 8
    built.clear()
    pd.testing.assert_frame_equal(data.study(url, "dash").trials, first)
    assert built == []  # nothing decoded again

    study = optuna.load_study(study_name="dash", storage=url)
    done = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    running = study.ask()
    study.add_trial(optuna.trial.create_trial(
        values=[0.5, 0.3], user_attrs={ATTR: done[0].user_attrs[ATTR]}))
    view = data.study(url, "dash").trials
    assert built == [1]  # only the new complete trial was parsed
    assert list(view["state"].iloc[-2:]) == ["running", "complete"]
    built.clear()
    pd.testing.assert_frame_equal(view, fresh())

    study.tell(running, state=optuna.trial.TrialState.FAIL)
    view = data.study(url, "dash").trials
    assert view.loc[view["trial"] == running.number, "state"].item() == "fail"
    pd.testing.assert_frame_equal(view, fresh())
