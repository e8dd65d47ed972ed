"""The dashboard's only door to the storage: small read-only queries returning DataFrames.

Nothing here writes: presets missing from the evaluation cache are evaluated in memory (about a
second each) and not stored.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from nas.search import (
    list_studies,
    load_study,
    nondominated,
    reference_candidates,
    study_front,
    study_names,
)
from nas.search.pareto import Candidate, from_summary
from nas.search.results import get_trial
from nas.search.spec import ATTR
from nas.search.trials import TrialKey, complete_values, read_trials, trial_records
from search_spaces import ArchConfig
from search_spaces.arch import BLOCK_LETTERS

optuna.logging.set_verbosity(optuna.logging.WARNING)

# The Insights page (importances, parallel coordinates) of a 10,000-trial study took 50 s in a
# browser; it reads a sample of this many evenly spaced complete trials instead.
INSIGHT_TRIALS = 2000
TRIAL_COLUMNS = ["trial", "state", "accuracy_score", "latency_ms", "latency_low_ms",
                 "latency_high_ms", "params_m", "gmacs", "attn_blocks", "mixers", "feasible",
                 "pareto", "arch_key", "fail_reason"]


def studies(url: str) -> pd.DataFrame:
    """One row per study (see ``nas.search.list_studies``); empty frame for an empty storage."""
    return pd.DataFrame(list_studies(url))


def names(url: str) -> list[str]:
    """The study names only, oldest first: what the study pickers need, without reading trials."""
    return study_names(url)


@dataclass(frozen=True)
class StudyView:
    """A study as plain data (picklable, so Streamlit can cache it)."""

    name: str
    device: str
    budget_ms: float
    sampler: str
    identity: dict[str, Any]
    trials: pd.DataFrame  # TRIAL_COLUMNS plus proxy_<name> columns, one row per trial


# A trial's dashboard row by (storage URL, trial key), with the state and budget it was built
# for: a finished trial never changes, so a re-read (every page after the cache's TTL, a new
# server page) decodes and parses only trials that are new or changed state. Building the rows
# of a 10,000-trial study takes 1.3 s; re-reading it with every row known, about 0.1 s.
_rows: dict[tuple[str, TrialKey], tuple[TrialState, float, dict[str, Any]]] = {}
_rows_lock = threading.Lock()
MAX_KEPT_ROWS = 500_000  # about 0.65 GB (1.3 KB a row); beyond it the next read starts over


def study(url: str, name: str) -> StudyView:
    loaded = load_study(url, name)
    budget = loaded.budget_ms

    def known(key: TrialKey, state: TrialState) -> bool:
        kept = _rows.get((url, key))
        return kept is not None and kept[0] == state and kept[1] == budget

    with _rows_lock:  # pages run in threads; one builds, the next reuses
        if len(_rows) > MAX_KEPT_ROWS:
            _rows.clear()
        rows: list[dict[str, Any]] = []
        for key, number, state, attrs in trial_records(loaded.study, (ATTR, "fail_reason"),
                                                       known=known):
            if attrs is None:
                rows.append(_rows[(url, key)][2])
                continue
            info = attrs.get(ATTR)
            row: dict[str, Any] = {"trial": number, "state": state.name.lower(),
                                   "fail_reason": attrs.get("fail_reason", "")}
            if state == TrialState.COMPLETE and info:
                row.update(_columns(from_summary(f"trial {number}", info, budget, number)))
            _rows[(url, key)] = (state, budget, row)
            rows.append(row)
    columns = list(dict.fromkeys(
        TRIAL_COLUMNS + [c for r in rows for c in r if c.startswith("proxy_")]))
    df = pd.DataFrame(rows, columns=columns)
    df["pareto"] = False
    done = df[(df["state"] == "complete") & (df["feasible"] == True)]  # noqa: E712
    done = done.drop_duplicates("arch_key")  # one point per architecture
    front = nondominated(list(zip(done["accuracy_score"], done["latency_ms"], strict=True)))
    df.loc[done.index[front], "pareto"] = True
    return StudyView(name=name, device=loaded.device, budget_ms=loaded.budget_ms,
                     sampler=str(loaded.study.user_attrs.get("sampler", "")),
                     identity=loaded.identity, trials=df)


@dataclass(frozen=True)
class StudyPoints:
    """A study's complete trials as objective values only (no records): what the Candidate
    page's trial picker needs, cheap at 10,000 trials."""

    device: str
    budget_ms: float
    points: pd.DataFrame  # trial, accuracy_score, latency_ms


def points(url: str, name: str) -> StudyPoints:
    loaded = load_study(url, name)
    values = complete_values(loaded.study)
    df = pd.DataFrame([(n, v[0], v[1]) for n, v in sorted(values.items()) if len(v) == 2],
                      columns=["trial", "accuracy_score", "latency_ms"])
    return StudyPoints(device=loaded.device, budget_ms=loaded.budget_ms, points=df)


def front(url: str, name: str) -> pd.DataFrame:
    """The feasible Pareto front only (one row per architecture), read without the rest of
    the study: what the Studies page needs for its "best" column."""
    loaded = load_study(url, name)
    return pd.DataFrame([{"trial": c.trial, **_columns(c)} for c in study_front(loaded.study)],
                        columns=["trial", "accuracy_score", "latency_ms"])


def trained_front(url: str, name: str) -> pd.DataFrame:
    """For a study that trains its front (``search --accuracy trained``): the feasible front's
    top-1, measured where trained, else the front surrogate's prediction and 90% interval.
    Empty for other studies."""
    from nas.search.accuracy import trained_top1

    loaded = load_study(url, name)
    front_ = study_front(loaded.study)
    tops = trained_top1(loaded, front_)
    rows = [{"trial": c.trial, "latency_ms": c.latency_ms, "top1": tops[c.arch.key()][1],
             "low": tops[c.arch.key()][2], "high": tops[c.arch.key()][3],
             "source": ("measured top-1" if tops[c.arch.key()][0] == "measured"
                        else "predicted top-1 (90% interval)")}
            for c in front_ if c.arch.key() in tops]
    return pd.DataFrame(rows, columns=["trial", "latency_ms", "top1", "low", "high", "source"])


def candidate_top1(url: str, name: str, cand: Candidate) -> tuple[str, float, float | None,
                                                                   float | None] | None:
    """("measured" | "predicted", top-1, low, high) of one candidate of a study that trains
    its front; None otherwise."""
    from nas.search.accuracy import trained_top1

    return trained_top1(load_study(url, name), [cand]).get(cand.arch.key())


def references(url: str, name: str) -> pd.DataFrame:
    """SwiftFormer XS/S/L1/L3 under the study's proxy and predictor (read-only)."""
    return pd.DataFrame([{"name": c.name, **_columns(c)}
                         for c in reference_candidates(load_study(url, name), save=False)])


def _columns(c: Candidate) -> dict[str, Any]:
    """A candidate as the dashboard's columns (params in millions, MACs in billions)."""
    return {
        "accuracy_score": c.accuracy_score, "latency_ms": c.latency_ms,
        "latency_low_ms": c.latency_low_ms, "latency_high_ms": c.latency_high_ms,
        "params_m": c.params / 1e6, "gmacs": c.macs / 1e9, "attn_blocks": c.arch.num_attn_blocks,
        "mixers": c.mixers(short=True), "feasible": c.feasible, "arch_key": c.arch.key(),
        **{f"proxy_{k}": v for k, v in c.proxy_scores.items()},
    }


def candidate(url: str, name: str, trial: int) -> tuple[Candidate, dict[str, Any]]:
    """A complete trial as a Candidate, and its stored evaluation summary."""
    loaded = load_study(url, name)
    t = get_trial(loaded, trial)
    if t is None or t.state != TrialState.COMPLETE or ATTR not in t.user_attrs:
        raise LookupError(f"trial {trial} of study {name!r} is not a complete trial")
    info = t.user_attrs[ATTR]
    return from_summary(f"trial {trial}", info, loaded.budget_ms, trial), info


def export_zip(url: str, name: str, trial: int, *, coreml: bool = False) -> bytes:
    """The files of `swiftnas export` for one trial, as a zip (nothing is recorded)."""
    import io
    import tempfile
    import zipfile
    from pathlib import Path

    from nas.search import export_trial

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / f"trial_{trial}"
        result = export_trial(load_study(url, name), trial, out, coreml=coreml, record=False)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in result.files:
                zf.write(out / f, f"{result.model_name}/{f}")
    return buf.getvalue()


def completed_study(url: str, name: str) -> optuna.Study:
    """The study's complete trials in an in-memory study (at most INSIGHT_TRIALS of them).

    Optuna's importance and plot functions read the trials several times each; from SQL every
    read of 300 trials costs 0.15-0.5 s, from memory nothing.
    """
    stored = load_study(url, name).study
    study = optuna.create_study(directions=stored.directions, study_name=name)
    trials = read_trials(stored, states=(TrialState.COMPLETE,))
    if len(trials) > INSIGHT_TRIALS:  # evenly spaced over the whole search, deterministic
        step = len(trials) / INSIGHT_TRIALS
        trials = [trials[int(i * step)] for i in range(INSIGHT_TRIALS)]
    study.add_trials(trials)
    return study


def importances(study: optuna.Study) -> dict[str, dict[str, float]]:
    """Optuna's default parameter importances (PED-ANOVA in Optuna 5) for each objective.

    PED-ANOVA explains what it takes to reach *low* target values, so the accuracy score,
    which is maximised, is negated.
    """
    out = {}
    for i, label in enumerate(("accuracy score", "latency")):
        sign = -1.0 if i == 0 else 1.0

        def target(t: optuna.trial.FrozenTrial, i: int = i, sign: float = sign) -> float:
            return sign * float(t.values[i])

        with warnings.catch_warnings():  # the "low target values" reminder: handled above
            warnings.simplefilter("ignore", UserWarning)
            out[label] = optuna.importance.get_param_importances(study, target=target)
    return out


def stages_table(arch: ArchConfig) -> pd.DataFrame:
    return pd.DataFrame([{
        "stage": i, "depth": s.depth, "width": s.width, "mlp_ratio": s.mlp_ratio,
        # a count and where: "1 (block 0)" read as "0" when the column held indices only
        "attention": f"{len(s.attn)} (block{'s' if len(s.attn) > 1 else ''} "
                     f"{', '.join(map(str, s.attn))})" if s.attn else "0",
        "mixer": s.mixer_label(),
        "blocks": "".join(s.block_letters()),
    } for i, s in enumerate(arch.stages)])


# the mixer a block letter stands for (the Pareto explorer's mixer filter)
MIXER_LETTERS = {letter: m for m, letter in BLOCK_LETTERS.items() if m != "conv"}


# ------------------------------------------------------------------------------ latency model
def latency_rows(url: str | None) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Measured vs predicted for the shipped calibration rows that name a model and for the
    measurements imported into the storage; metrics per group; predictor.

    The shipped rows are plotted with their leave-one-family-out predictions, which `latency
    fit` stores in the predictor (``metrics["cv_rows"]``): a fit predicting its own rows
    flatters it. Imported rows are out-of-sample for the shipped predictor anyway."""
    from latency_models import (
        FeatureCache,
        calibration_csv,
        evaluate_rows,
        load_default_predictor,
        read_measurements,
        user_cache_dir,
    )
    from latency_models.defaults import CALIBRATION_FEATURES_PATH
    from nas.storage import open_storage

    predictor = load_default_predictor()
    shipped = [m for m in read_measurements(calibration_csv()) if m.timm_name or m.arch]
    stored = open_storage(url, create=False).measurements() if url else []
    cache = FeatureCache(user_cache_dir() / "latency_features.json",
                         preload=CALIBRATION_FEATURES_PATH)
    held_out = {(r["model"], r["group"], r["measured_ms"]): r["predicted_ms"]
                for r in predictor.metrics.get("cv_rows", [])}
    rows, preds = [], []
    for origin, ms in (("shipped, held out (LOFO)" if held_out else "shipped calibration",
                        shipped), ("imported (yours)", stored)):
        for m in ms:
            key = (m.model, m.group, m.latency_ms)
            if origin.startswith("shipped") and held_out:
                pred = held_out.get(key)  # None: a group only that family has (not plotted)
            else:
                try:
                    pred = predictor.predict_measurement(m, cache=cache).latency_ms
                except Exception:  # a device the predictor does not know, an unbuildable model
                    pred = None
            preds.append(pred)
            rows.append({"model": m.model, "device": m.device, "group": m.group,
                         "measured_ms": m.latency_ms, "predicted_ms": pred, "origin": origin,
                         "fallback": m.fallback})
    cache.save()
    metrics = evaluate_rows(shipped + stored, preds)
    info = {"name": predictor.name, "version": predictor.version,
            "fitted_at": predictor.training.get("fitted_at"),
            "cv": predictor.metrics.get("overall")}
    return pd.DataFrame(rows), metrics, info


def check_measurements_csv(data: bytes) -> list[Any]:
    """Parse an uploaded CSV (raises MeasurementError with row and column on bad input). An
    upload's ``arch`` cells must be inline JSON: a path in them is never read."""
    from latency_models import parse_measurements
    from latency_models.architectures import check_timm_names
    from latency_models.measurements import decode_csv

    rows = parse_measurements(decode_csv(data, name="uploaded CSV"), name="uploaded CSV")
    check_timm_names(rows)
    return rows


def import_measurements(url: str, rows: list[Any], origin: str) -> tuple[int, list[str]]:
    """The dashboard's only write: the user's explicit import of validated measurements, with
    device names matched to the known phones as `swiftnas latency import` does (a near miss
    raises). Returns the rows added and the new devices among them."""
    from latency_models.devices import canonical_devices, known_devices
    from nas.storage import open_storage

    store = open_storage(url)
    rows, new = canonical_devices(rows, known_devices(m.device for m in store.measurements()))
    return store.add_measurements(rows, origin=origin), new
