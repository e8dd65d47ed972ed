"""swiftnas dashboard: `swiftnas dashboard --storage URL` (or `streamlit run dashboard/app.py`
with SWIFTNAS_STORAGE set). Pages: Studies, Pareto explorer, Candidate, Latency model, Optuna
insights. Deep links: ``?page=candidate&study=NAME&trial=N``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import pandas as pd
import streamlit as st

import search_spaces  # noqa: F401  (first: keeps `import timm` working, see README)
from dashboard import data, plots
from nas.search.escaping import screen_text
from nas.search.export import model_name_for
from search_spaces.text import command_hint

PAGES = ["Studies", "Pareto explorer", "Candidate", "Latency model", "Optuna insights"]
SLUGS = {"studies": 0, "pareto": 1, "candidate": 2, "latency": 3, "insights": 4}
URL = os.environ.get("SWIFTNAS_STORAGE", "sqlite:///swiftnas.db")
REFRESH_S = 5  # live refresh period of the Studies page
TTL_S = 60  # cached reads expire after this; live refresh clears them explicitly


# ------------------------------------------------------------------------------ cached reads
# re-read at most every TTL_S seconds: what other drivers write shows up on the next rerun
_fresh = st.cache_data(ttl=TTL_S, show_spinner=False)
_studies = _fresh(data.studies)
_names = _fresh(data.names)
_study = _fresh(data.study)
_points = _fresh(data.points)  # values only: cheap for a 10,000-trial study
_front = _fresh(data.front)
_trained_front = _fresh(data.trained_front)


@st.cache_data(show_spinner="Scoring SwiftFormer XS/S/L1/L3 for reference...")
def _references(url: str, name: str) -> pd.DataFrame:
    return data.references(url, name)


@st.cache_data(show_spinner="Predicting the calibration set...")
def _latency(url: str) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    return data.latency_rows(url)


@st.cache_resource(ttl=TTL_S, show_spinner=False)  # shared, never mutated: no copy per read
def _completed(url: str, name: str) -> Any:
    return data.completed_study(url, name)


@st.cache_data(ttl=TTL_S, show_spinner="Computing parameter importances...")
def _importances(url: str, name: str) -> dict[str, dict[str, float]]:
    return data.importances(_completed(url, name))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _candidate(url: str, study: str, trial: int) -> tuple[Any, dict[str, Any]]:
    return data.candidate(url, study, trial)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _parallel(url: str, study: str, params: tuple[str, ...], objective: int) -> Any:
    import optuna.visualization as ov

    def target(t: Any) -> float:
        return float(t.values[objective])

    return ov.plot_parallel_coordinate(_completed(url, study), params=list(params),
                                       target=target,
                                       target_name=("accuracy score", "latency")[objective])


@st.cache_data(show_spinner="Writing the export files...")
def _export_zip(url: str, study: str, trial: int, coreml: bool) -> bytes:
    return data.export_zip(url, study, trial, coreml=coreml)


def _guard(fn, *args: Any) -> Any:
    """Run a data call; show its error in the page (never a traceback) and stop the page."""
    try:
        return fn(*args)
    except Exception as exc:  # the storage URL, a missing study, a broken file: say so
        st.error(screen_text(f"{type(exc).__name__}: {exc}"))
        st.stop()


# ------------------------------------------------------------------------------ pages
def page_studies(url: str) -> None:
    st.header("Studies")
    live = st.toggle("Live refresh", value=False, help=f"Re-read every {REFRESH_S} s.")

    @st.fragment(run_every=REFRESH_S if live else None)
    def table() -> None:
        if live:  # read the storage again, not the cache
            _studies.clear()
            _names.clear()
            _study.clear()
            _front.clear()
        df = _guard(_studies, url)
        if df.empty:
            st.info(screen_text(f"No studies in {url} yet. Start one: "
                                + command_hint("search", "--study", "NAME", storage=url)
                                + " --latency-budget-ms 1.0 --trials 100"))
            return
        best = []
        for name, ours in zip(df["study"], df["swiftnas"], strict=True):
            if not ours:  # another tool's Optuna study in the same database
                best.append("(not a swiftnas study)")
                continue
            front = _guard(_front, url, name)
            top = front.sort_values("accuracy_score", ascending=False).head(1)
            best.append("-" if top.empty else
                        f"trial {int(top['trial'].iloc[0])}: score "
                        f"{top['accuracy_score'].iloc[0]:.3f} at "
                        f"{top['latency_ms'].iloc[0]:.3f} ms")
        # st.table renders Markdown in every cell: names are user text, so escape them
        # a RUNNING trial whose driver is gone is not running: say so, and for how long
        stale = [f" + {n} stale ({m:g} min silent)" if n else ""
                 for n, m in zip(df["stale"], df["stale_minutes"], strict=True)]
        shown = df.assign(best=best, study=df["study"].map(screen_text),
                          device=df["device"].map(screen_text),
                          sampler=df["sampler"].map(screen_text),
                          running=[f"{r}{s}" for r, s in zip(df["running"], stale,
                                                             strict=True)])[
            ["study", "device", "latency_budget_ms", "sampler", "complete", "feasible",
             "failed", "running", "best", "last_update"]]
        # a static table: the interactive grid's script is a second download for the browser,
        # which made this first page of a fresh browser 0.5 s slower (benchmarks/dashboard_speed)
        st.table(shown, hide_index=True)
        st.caption(f"{len(df)} studies in {screen_text(url)}")

    table()


def _names_and_linked(url: str) -> tuple[list[str], str | None]:
    """The study names (the page stops when there are none) and the deep link's ``study``
    when it names one of them (a warning says so when it does not)."""
    names = _guard(_names, url)
    if not names:
        st.info(f"No studies in {screen_text(url)} yet.")
        st.stop()
    wanted = st.query_params.get("study")
    if wanted and wanted not in names:
        st.warning(screen_text(f"No study {wanted!r} in {url}; studies: {', '.join(names)}."))
    return names, wanted if wanted in names else None


def _pick_studies(url: str) -> list[str]:
    names, wanted = _names_and_linked(url)
    default = [wanted] if wanted else names[:1]
    chosen = st.multiselect("Studies (two or more to compare, e.g. two devices)", names,
                            default=default)
    if not chosen:
        st.info("Choose a study.")
        st.stop()
    return chosen


def page_pareto(url: str) -> None:
    st.header("Pareto explorer")
    chosen = _pick_studies(url)
    views = [_guard(_study, url, n) for n in chosen]
    complete = pd.concat([v.trials[v.trials["state"] == "complete"] for v in views])
    if complete.empty:
        st.info("No complete trial yet.")
        st.stop()
    c1, c2, c3, c4 = st.columns(4)
    feasible_only = c1.checkbox("Feasible only", value=False)
    lat_max = float(complete["latency_ms"].max())
    latency = c2.slider("Latency (ms)", 0.0, round(lat_max + 0.05, 2),
                        (0.0, round(lat_max + 0.05, 2)), step=0.01)
    attn_max = int(complete["attn_blocks"].max())
    attn = c3.slider("Attention blocks", 0, max(attn_max, 1), (0, max(attn_max, 1)))
    p_max = float(complete["params_m"].max())
    params = c4.slider("Params (M)", 0.0, round(p_max + 0.5, 1), (0.0, round(p_max + 0.5, 1)))
    used = sorted(set().union(*complete["mixers"].map(plots.mixers_used)))
    mixers = None
    if set(used) - {"A"}:  # a study that searches token mixers: filter by them
        mixers = st.multiselect("Token mixers (a trial shows when all of its attention blocks "
                                "use these)", used, default=used,
                                format_func=lambda m: data.MIXER_LETTERS[m])
    series = []
    for v in views:
        shown = plots.filter_trials(v.trials, feasible_only=feasible_only, latency=latency,
                                    attn=attn, params_m=params, mixers=mixers)
        series.append((v.name, shown, v.budget_ms))
    refs = _guard(_references, url, chosen[0])
    chart = plots.pareto_chart(series, refs)
    event = st.altair_chart(chart, on_select="rerun", selection_mode=plots.PICK, key="pareto",
                            width="stretch")
    n_points = sum(len(s[1]) for s in series)
    n_front = sum(int(s[1]["pareto"].sum()) for s in series)
    st.caption(f"{n_points} trials shown, {n_front} on the feasible Pareto front; click one to "
               f"open it. SwiftFormer presets scored with the proxy and predictor of "
               f"{screen_text(chosen[0])}.")
    selection: Any = event.get("selection", {}) if event else {}
    picked = [p for p in selection.get(plots.PICK, []) if p.get("study") in chosen]
    if picked:
        _open_candidate(picked[0]["study"], int(picked[0]["trial"]))
    for name in chosen:  # studies that train their front: its top-1, measured or predicted
        tops = _guard(_trained_front, url, name)
        if not tops.empty:
            st.subheader(screen_text(f"Trained front of {name}"))
            st.altair_chart(plots.trained_front_chart(tops), width="stretch")
            st.caption(f"{int((tops['source'] == plots.TOP1_SOURCES[0]).sum())} of {len(tops)} "
                       "front candidates trained (filled); the others show the surrogate's "
                       "prediction, refitted on the trainings, with its 90% interval.")
    front = pd.concat([s[1][s[1]["pareto"] == True].assign(study=s[0])  # noqa: E712
                       for s in series])
    if not front.empty:
        st.subheader("Pareto front")
        # a static table: the Studies page already loaded its script; the interactive grid's
        # is another download and start-up for the browser (0.35 s of this page's first load)
        shown = front.assign(study=front["study"].map(screen_text))  # st.table renders Markdown
        cols = ["study", "trial", "accuracy_score", "latency_ms", "params_m", "gmacs",
                "attn_blocks", *(["mixers"] if mixers is not None else [])]
        st.table(shown[cols].sort_values("latency_ms").round(
            {"accuracy_score": 4, "latency_ms": 3, "params_m": 2, "gmacs": 3}), hide_index=True)
        options = [f"{r.study} / trial {int(r.trial)}" for r in front.itertuples()]
        choice = st.selectbox("Open a candidate", ["-", *options], key="open_candidate")
        if choice != "-":
            study, trial = choice.split(" / trial ")
            _open_candidate(study, int(trial))


def _open_candidate(study: str, trial: int) -> None:
    st.query_params.update({"page": "candidate", "study": study, "trial": str(trial)})
    st.session_state["goto"] = "Candidate"  # the page radio is already drawn: switch next run
    st.rerun()


def page_candidate(url: str) -> None:
    st.header("Candidate")
    names, study = _names_and_linked(url)
    if study is None:
        study = st.selectbox("Study", names)
    view = _guard(_points, url, study)  # values only: cheap for a 10,000-trial study
    complete = view.points
    if complete.empty:
        st.info("No complete trial yet.")
        st.stop()
    trials = [int(t) for t in complete["trial"]]
    wanted = st.query_params.get("trial")
    default = int(wanted) if wanted and wanted.isdigit() and int(wanted) in trials else (
        int(complete.sort_values("accuracy_score").iloc[-1]["trial"]))
    trial = st.selectbox("Trial", trials, index=trials.index(default))
    cand, info = _guard(_candidate, url, study, trial)
    on_front = trial in set(_guard(_front, url, study)["trial"])
    st.subheader(screen_text(f"{study} / trial {trial}"))
    m = st.columns(5)
    if cand.accuracy_low is not None:  # the study's objective is a surrogate's top-1
        m[0].metric("Predicted top-1", f"{cand.accuracy_score:.2f} %",
                    help=f"accuracy surrogate, 90% interval {cand.accuracy_low:.1f}-"
                    f"{cand.accuracy_high:.1f} %")
    else:
        m[0].metric("Accuracy score", f"{cand.accuracy_score:.3f}")
    m[1].metric(f"Latency on {screen_text(view.device)}", f"{cand.latency_ms:.3f} ms",
                help=f"90% interval {cand.latency_low_ms:.3f}-{cand.latency_high_ms:.3f} ms")
    m[2].metric("Params", f"{cand.params / 1e6:.2f} M")
    m[3].metric("MACs", f"{cand.macs / 1e9:.3f} G")
    m[4].metric("Attention blocks", cand.arch.num_attn_blocks)
    top = _guard(data.candidate_top1, url, study, cand)
    if top is not None:  # a study that trains its front
        source, top1, low, high = top
        st.write(f"**Trained top-1:** {top1:.2f} % (measured)" if source == "measured" else
                 f"**Top-1, not trained:** ~{top1:.2f} % predicted (90% interval {low:.1f}-"
                 f"{high:.1f} %)")
    status = ("on the feasible Pareto front" if on_front else
              "feasible, dominated" if cand.feasible else
              f"infeasible (over the {view.budget_ms:g} ms budget)")
    st.write(f"**Where it sits:** {status}. 90% latency interval "
             f"{cand.latency_low_ms:.3f}-{cand.latency_high_ms:.3f} ms "
             f"({screen_text(info.get('latency_group', ''))}).")
    st.altair_chart(plots.architecture_chart(cand.arch), width="stretch")
    st.dataframe(data.stages_table(cand.arch), hide_index=True, width="stretch")
    st.write("**Proxy scores**")
    st.dataframe(pd.DataFrame([cand.proxy_scores]), hide_index=True)
    with st.expander("Architecture JSON"):
        st.code(cand.arch.to_json(), language="json")
    coreml = st.checkbox("Include the Core ML package (about 10 s)", value=False)
    # built when clicked, not on every view: the first export imports torch and timm (4-5 s)
    payload = functools.partial(_export_zip, url, study, trial, coreml)
    st.download_button("Export for training (zip)", payload,
                       file_name=f"{model_name_for(study, trial)}.zip", mime="application/zip",
                       help="The files of `swiftnas export`: arch.json, model.py, train.sh, "
                       "MODEL_CARD.md, export.json")


def page_latency(url: str) -> None:
    st.header("Latency model")
    df, metrics, info = _guard(_latency, url)
    cv = info.get("cv") or {}
    st.write(f"Predictor in use: **{screen_text(info['name'])} "
             f"v{screen_text(info['version'])}** (fitted "
             f"{info.get('fitted_at') or '?'}); leave-one-family-out MAPE "
             f"{cv.get('mape', float('nan')):.1f}%, Spearman {cv.get('spearman') or 0:.3f}.")
    held_out = bool(df["origin"].str.startswith("shipped, held out").any())
    st.caption("Shipped calibration rows are plotted with their leave-one-family-out "
               "predictions (each family predicted by a fit without it), your imported rows "
               "with the predictor itself (it never saw them)." if held_out else
               "Points are in-sample for the shipped calibration rows (this predictor stores "
               "no held-out predictions; refit it with `swiftnas latency fit`) and "
               "out-of-sample for measurements you imported.")
    st.altair_chart(plots.latency_chart(df), width="stretch")
    groups = pd.DataFrame([{"group": g, **{k: v for k, v in m.items()}}
                           for g, m in metrics["groups"].items()])
    if not groups.empty:
        st.dataframe(groups[["group", "rows", "mape", "within_20", "spearman"]],
                     hide_index=True, width="stretch")
    st.subheader("Import measurements")
    st.caption("CSV with the calibration schema (model, device, latency_ms, timm_name or "
               "arch, ...); see README, 'iPhone latency predictor'.")
    upload = st.file_uploader("Measurement CSV", type=["csv"])
    if upload is not None:
        try:
            rows = data.check_measurements_csv(upload.getvalue())
        except Exception as exc:
            st.error(f"Not imported: {screen_text(exc)}")
        else:
            st.success(f"{len(rows)} valid rows.")
            if st.button("Import into the storage"):
                added, new = _guard(data.import_measurements, url, rows, upload.name)
                _latency.clear()
                if new:
                    st.info(screen_text(f"New device(s): {', '.join(new)}."))
                st.success(screen_text(
                    f"Imported {added} measurements. Calibrate their phone with "
                    + command_hint("latency", "calibrate", "--out", "my_predictor.json",
                                   storage=url) + "."))


def page_insights(url: str) -> None:
    st.header("Optuna insights")
    study = _pick_studies(url)[0]
    view = _guard(_study, url, study)
    if int((view.trials["state"] == "complete").sum()) < 5:
        st.info("Importances need at least 5 complete trials.")
        st.stop()
    imps = _guard(_importances, url, study)
    n_complete = int((view.trials["state"] == "complete").sum())
    if n_complete > data.INSIGHT_TRIALS:
        st.caption(f"Importances and parallel coordinates use {data.INSIGHT_TRIALS:,} of the "
                   f"{n_complete:,} complete trials, evenly spaced over the search.")
    cols = st.columns(2)
    for col, (label, values) in zip(cols, imps.items(), strict=True):
        col.write(f"**Parameter importance for {label}**")
        # plotly, not st.bar_chart: one chart library for the browser to load, not two
        col.plotly_chart(plots.importance_figure(values), width="stretch")
    st.write("**Search progress**")
    st.plotly_chart(plots.progress_figure([(study, view.trials)]), width="stretch")
    target = st.radio("Parallel coordinates for", ["accuracy score", "latency"],
                      horizontal=True)
    top = tuple(list(imps[target])[:8])
    fig = _guard(_parallel, url, study, top, 0 if target == "accuracy score" else 1)
    st.plotly_chart(fig, width="stretch")


def main() -> None:
    st.set_page_config(page_title="swiftnas", layout="wide")
    slug = st.query_params.get("page", "studies")
    if "page" not in st.session_state:
        st.session_state["page"] = PAGES[SLUGS.get(slug, 0)]
    if "goto" in st.session_state:
        st.session_state["page"] = st.session_state.pop("goto")
    page = st.sidebar.radio("Page", PAGES, key="page")
    st.sidebar.caption(f"Storage: {screen_text(URL)}")
    slug_of = {v: k for k, v in SLUGS.items()}
    st.query_params["page"] = slug_of[PAGES.index(page)]
    {"Studies": page_studies, "Pareto explorer": page_pareto, "Candidate": page_candidate,
     "Latency model": page_latency, "Optuna insights": page_insights}[page](URL)


main()
