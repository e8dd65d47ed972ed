"""Latency v3: does the predictor agree with the SwiftFormer paper, from the family's own rows,
without hurting the families it has never seen?

    python -m benchmarks.latency_family folds    # the refits everything below reads (cached)
    python -m benchmarks.latency_family select   # choose the family stage's pulls (rule below)
    python -m benchmarks.latency_family rows     # leave-one-row-out and leave-one-table-out over
                                                 # the SwiftFormer rows, v2.4 and v3; coverage
    python -m benchmarks.latency_family lofo     # all-groups leave-one-family-out, v2.4 and v3
    python -m benchmarks.latency_family search   # one fixed search with v2.4's predictor and v3's
    python -m benchmarks.latency_family report   # print results/latency_family.json

Every fit is the CLI's (``fit_predictor``, what `swiftnas latency fit --no-cv` runs) on the
shipped calibration file less the rows held out. The shared stage is refitted once per held-out
row or table (``folds``, cached in ``benchmarks/work/latency_family/``); the family stage
(``latency_models/family.py``) is a small ridge regression on that refit's residuals, so any
setting of its pulls is scored on the same refits in milliseconds.

Rule for the pulls. Written before the first run: over the grid below, the lowest
leave-one-row-out MAPE over the 11 SwiftFormer rows (ties: the stronger pulls). That pick
(group 0.3 / shift 0.1 / slope 0.1: 4.82%) then predicted a whole held-out table worse than no
family stage at all (11.59% against 8.72%): a weakly pulled family shift carries one table's
level to the others. A user's phone is often a table without the family (a new phone), so the
rule was revised, after that run, to the lowest mean of the two: leave-one-row-out and
leave-one-table-out MAPE. Both picks are recorded; the revision is a second look at the same 11
rows, so read the numbers with that optimism in mind. ``select`` also reports a nested
estimate of the row errors: each row's pulls chosen on the other rows' errors, then scored.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import search_spaces  # noqa: F401  (before timm)
from benchmarks.common import calibration_rows, feature_cache
from latency_models import FeatureCache
from latency_models.family import FamilyOptions, fit_family
from latency_models.measurements import Measurement
from latency_models.predictor import SEARCH_FAMILY, LatencyPredictor, fit_predictor

RESULTS = Path(__file__).with_name("results") / "latency_family.json"
WORK = Path(__file__).with_name("work") / "latency_family"
PAPER_IPHONE14_MS = {"xs": 0.7, "s": 0.8, "l1": 1.1, "l3": 1.9}
PULLS = (0.1, 0.3, 1.0, 3.0, 10.0)
GRID = [FamilyOptions(group_pull=g, shift_pull=s, slope_pull=b)
        for g, s, b in itertools.product(PULLS, PULLS, PULLS)]


def _load() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _save(key: str, value: Any) -> None:
    data = _load()
    data[key] = value
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")


_rows, _cache = calibration_rows, feature_cache


def family_rows(rows: list[Measurement]) -> list[int]:
    return [i for i, m in enumerate(rows) if m.family_name == SEARCH_FAMILY]


def _fold_path(name: str) -> Path:
    return WORK / f"{name}.json"


def shared_fit(name: str, out: list[int]) -> str:
    """The shared stage (no family stage) fitted without rows ``out``; cached by ``name``."""
    path = _fold_path(name)
    if not path.exists():
        import torch

        torch.set_num_threads(1)
        rows = _rows()
        skip = set(out)
        fit = fit_predictor([m for i, m in enumerate(rows) if i not in skip], cache=_cache(),
                            family_options=None, cross_validate=False).predictor
        WORK.mkdir(parents=True, exist_ok=True)
        fit.save(path)
    return name


def folds(jobs: int) -> dict[str, list[int]]:
    """Every refit: all rows, each SwiftFormer row out, each SwiftFormer table out."""
    rows = _rows()
    idx = family_rows(rows)
    wanted = {"all": []} | {f"row{i}": [i] for i in idx} | {
        f"table{k}": [i for i in idx if rows[i].group == g]
        for k, g in enumerate(sorted({rows[i].group for i in idx}))}
    missing = {n: o for n, o in wanted.items() if not _fold_path(n).exists()}
    if missing:
        print(f"fitting {len(missing)} folds on {jobs} processes", flush=True)
        with ProcessPoolExecutor(jobs) as pool:
            for name in pool.map(shared_fit, list(missing), list(missing.values())):
                print(f"  {name} done", flush=True)
    return wanted


def corrected(fit: LatencyPredictor, rows: list[Measurement], cache: FeatureCache,
              options: FamilyOptions | None, held: list[int]) -> list[float]:
    """Predictions of rows ``held`` by ``fit`` (shared stage only) plus the family stage fitted
    on the family's other rows, exactly as ``fit_predictor`` fits it."""
    preds = [fit.predict_measurement(rows[i], cache=cache).latency_ms for i in held]
    if options is None:
        return preds
    mine = [i for i in family_rows(rows) if i not in held]
    feats = {i: cache.get(rows[i].ref, rows[i].input_resolution) for i in [*mine, *held]}

    def log_cost(i: int) -> float:
        return math.log(fit.cost(feats[i], fit.groups[rows[i].group].compute_class))

    resid = [math.log(rows[i].latency_ms / fit.predict_measurement(rows[i], cache=cache)
                      .latency_ms) for i in mine]
    fam = fit_family(resid, [log_cost(i) for i in mine], [rows[i].group for i in mine], options)
    return [p * math.exp(fam.log_correction(rows[i].group, log_cost(i)))
            for p, i in zip(preds, held, strict=True)]


def _errors(rows: list[Measurement], held: list[int], preds: list[float]) -> list[float]:
    return [100 * (p / rows[i].latency_ms - 1) for i, p in zip(held, preds, strict=True)]


def _label(o: FamilyOptions | None) -> str:
    return "v2.4 (no family stage)" if o is None else \
        f"group {o.group_pull:g} / shift {o.shift_pull:g} / slope {o.slope_pull:g}"


def row_errors(options: FamilyOptions | None, rows: list[Measurement],
               fits: dict[str, LatencyPredictor], cache: FeatureCache) -> dict[int, float]:
    return {i: _errors(rows, [i], corrected(fits[f"row{i}"], rows, cache, options, [i]))[0]
            for i in family_rows(rows)}


def _fits(names: list[str]) -> dict[str, LatencyPredictor]:
    return {n: LatencyPredictor.load(_fold_path(n)) for n in names}


def table_errors(options: FamilyOptions | None, rows: list[Measurement],
                 fits: dict[str, LatencyPredictor], cache: FeatureCache) -> list[float]:
    """Each SwiftFormer table predicted by the refit without that table's SwiftFormer rows."""
    idx = family_rows(rows)
    out: list[float] = []
    for k, g in enumerate(sorted({rows[i].group for i in idx})):
        held = [i for i in idx if rows[i].group == g]
        out += _errors(rows, held, corrected(fits[f"table{k}"], rows, cache, options, held))
    return out


def select(jobs: int) -> None:
    wanted = folds(jobs)
    rows, cache = _rows(), _cache()
    fits = _fits(list(wanted))
    scored = {}
    for o in [None, *GRID]:
        errs = row_errors(o, rows, fits, cache)
        tables = statistics.mean(abs(e) for e in table_errors(o, rows, fits, cache))
        scored[_label(o)] = (o, errs, statistics.mean(abs(e) for e in errs.values()), tables)

    def stronger(t: tuple) -> float:
        return -(t[0].group_pull + t[0].shift_pull + t[0].slope_pull) if t[0] else 0.0

    first = min((t for t in scored.values() if t[0] is not None), key=lambda t: (t[2], stronger(t)))
    ranked = sorted(scored.values(), key=lambda t: ((t[2] + t[3]) / 2, stronger(t)))
    best = next(t for t in ranked if t[0] is not None)
    # nested: each row's pulls chosen on the other rows' leave-one-row-out errors
    nested = {}
    for i in family_rows(rows):
        pick = min((t for t in scored.values() if t[0] is not None), key=lambda t: (
            (statistics.mean(abs(e) for j, e in t[1].items() if j != i) + t[3]) / 2,
            stronger(t)))
        nested[i] = pick[1][i]
    base = scored[_label(None)]
    out = {
        "rule": "lowest mean of leave-one-row-out and leave-one-table-out MAPE over the "
                "SwiftFormer rows (ties: stronger pulls); revised after the first rule's run",
        "first_rule": "lowest leave-one-row-out MAPE (written before the first run)",
        "first_rule_pick": {"pulls": first[0].__dict__, "row_mape": first[2],
                            "table_mape": first[3]},
        "grid": len(GRID), "chosen": best[0].__dict__, "chosen_mape": best[2],
        "chosen_table_mape": best[3],
        "chosen_worst": max(best[1].values(), key=abs),
        "nested_mape": statistics.mean(abs(e) for e in nested.values()),
        "nested_worst": max(nested.values(), key=abs),
        "v2.4_mape": base[2], "v2.4_table_mape": base[3],
        "v2.4_worst": max(base[1].values(), key=abs),
        "top10": [{"pulls": t[0].__dict__ if t[0] else None, "row_mape": t[2],
                   "table_mape": t[3]} for t in ranked[:10]],
    }
    _save("select", out)
    print(json.dumps(out, indent=1))


def chosen() -> FamilyOptions:
    """The pulls ``select`` chose (it must have run)."""
    picked = _load().get("select", {}).get("chosen")
    if picked is None:
        raise SystemExit("run `python -m benchmarks.latency_family select` first")
    return FamilyOptions(**picked)


def rows_report(jobs: int) -> None:
    """Leave-one-row-out and leave-one-table-out over the SwiftFormer rows, v2.4 and v3, and
    the coverage of v3's family interval on the left-out rows (each row's spread from the other
    rows' leave-one-row-out errors, Student-t with their count - 1 degrees of freedom)."""
    from scipy.stats import t as student_t

    wanted = folds(jobs)
    rows, cache = _rows(), _cache()
    fits = _fits(list(wanted))
    idx = family_rows(rows)
    tables = sorted({rows[i].group for i in idx})
    out: dict[str, Any] = {}
    for key, options in (("v2.4", None), ("v3", chosen())):
        errs = row_errors(options, rows, fits, cache)
        per_table = {}
        for k, g in enumerate(tables):
            held = [i for i in idx if rows[i].group == g]
            preds = corrected(fits[f"table{k}"], rows, cache, options, held)
            e = _errors(rows, held, preds)
            per_table[g] = {"models": [rows[i].model for i in held], "errors_pct": e,
                            "mape": statistics.mean(abs(x) for x in e)}
        logs = {i: math.log(1 + e / 100) for i, e in errs.items()}
        inside = 0
        for i in idx:
            others = [logs[j] for j in idx if j != i]
            sigma = math.sqrt(statistics.mean(x * x for x in others))
            inside += abs(logs[i]) <= student_t.ppf(0.95, len(others) - 1) * sigma
        out[key] = {
            "leave_one_row_out": {
                "rows": [{"model": rows[i].model, "group": rows[i].group,
                          "measured_ms": rows[i].latency_ms, "error_pct": errs[i]} for i in idx],
                "mape": statistics.mean(abs(e) for e in errs.values()),
                "worst_pct": max(errs.values(), key=abs),
                "within_15": sum(abs(e) <= 15 for e in errs.values())},
            "leave_one_table_out": per_table,
            "coverage_90_family_interval": f"{inside}/{len(idx)}",
        }
        print(key, json.dumps(out[key]["leave_one_row_out"] | {"rows": "..."}), flush=True)
    _save("rows", out)


def lofo() -> None:
    """Leave-one-family-out of the shipped predictor, which is `swiftnas latency fit` on the
    shipped file (its cross-validation stores every held-out prediction in the artifact). It
    equals v2.4's recipe on the same rows by construction (the family stage never sees a
    held-out family; tests pin it), so one fit gives both. Also: the same metrics on the 165
    rows v2.4 was scored on (rows of the 467-row file), for the comparison with its 19.43%."""
    from latency_models import evaluate_rows, load_default_predictor

    pred = load_default_predictor()
    rows = [m for m in _rows() if m.timm_name or m.arch]  # the fit's rows, in its order
    cv = [r["predicted_ms"] for r in pred.metrics["cv_rows"]]
    # the third release appended its 46 rows at the end of the file: the first 467 are v2.4's
    n_old = sum(1 for m in _rows()[:467] if m.timm_name or m.arch)
    _save("lofo", {"overall": pred.metrics["overall"],
                   "on_the_467_row_files_rows": evaluate_rows(rows[:n_old], cv[:n_old])["overall"],
                   "without_fallback_rows": pred.metrics.get("without_fallback_rows"),
                   "previous_v2.4_on_467_rows": 19.43,
                   "family_leave_one_row_out": {
                       k: {"mape": v["mape"], "worst": v["worst"]}
                       for k, v in pred.metrics.get("families", {}).items()},
                   "coverage_90": _coverage(rows, cv, pred)})
    print(json.dumps(_load()["lofo"], indent=1))


def _coverage(rows: list[Measurement], cv: list[float | None], pred: LatencyPredictor
              ) -> dict[str, Any]:
    """Share of held-out rows inside their group's 90% interval (as a prediction of an unseen
    family would draw it), over all groups."""
    inside = total = 0
    for m, p in zip(rows, cv, strict=True):
        if p is None:
            continue
        cal = pred.groups[m.group]
        sigma = cal.sigma_log if cal.sigma_log is not None else pred.pooled_sigma_log
        z = cal.interval_z if cal.sigma_log is not None else pred.pooled_interval_z
        total += 1
        inside += abs(math.log(p / m.latency_ms)) <= (z or 1.6449) * sigma
    return {"inside": inside, "rows": total, "share": inside / max(total, 1)}


V24_ARTIFACT = Path(__file__).resolve().parent.parent / "tests" / "data" / "predictor_v2.4.json"
SEARCH = {"device": "iPhone 14", "budget_ms": 1.0, "trials": 300, "seed": 0}


def _search_one(label: str, folder: str) -> dict[str, Any]:
    """One study (a worker process): the same search, priced by one predictor."""
    import torch

    torch.set_num_threads(1)
    from nas.search import (
        StudySpec,
        load_study,
        pareto_front,
        reference_candidates,
        run_study,
        study_candidates,
    )

    url = f"sqlite:///{folder}/{label}.db"
    spec = StudySpec(name=label, latency_budget_ms=SEARCH["budget_ms"], device=SEARCH["device"],
                     seed=SEARCH["seed"],
                     predictor_path=str(V24_ARTIFACT) if label == "v2.4" else None)
    run_study(spec, url, SEARCH["trials"])
    loaded = load_study(url, label)
    refs = reference_candidates(loaded)
    front = pareto_front(study_candidates(loaded.study), references=refs)
    best = max(front, key=lambda c: c.accuracy_score)
    return {
        "front": [{"trial": c.trial, "score": c.accuracy_score, "latency_ms": c.latency_ms,
                   "params_m": c.params / 1e6, "dominates": c.dominates} for c in front],
        "pick": {"trial": best.trial, "score": best.accuracy_score,
                 "latency_ms": best.latency_ms, "params_m": best.params / 1e6,
                 "macs_g": best.macs / 1e9, "arch": best.arch.key()},
        "presets": {r.name: r.latency_ms for r in refs},
    }


def search(folder: str | None) -> None:
    """The same search (one seed, 300 trials, 1.0 ms on iPhone 14) with v2.4 and v3: how the
    front and its most accurate pick move when the budget is read by the family's own rows."""
    import tempfile

    folder = folder or tempfile.mkdtemp(prefix="swiftnas-family-")
    Path(folder).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(2) as pool:
        runs = dict(zip(("v2.4", "v3"), pool.map(_search_one, ["v2.4", "v3"], [folder] * 2),
                        strict=True))
    _save("search", {**SEARCH, "runs": runs})
    for label, r in runs.items():
        p = r["pick"]
        print(f"{label}: front {len(r['front'])}, pick trial {p['trial']}: score {p['score']:.3f}"
              f", {p['latency_ms']:.3f} ms, {p['params_m']:.2f} M params, {p['macs_g']:.3f} GMACs")


def report() -> None:
    print(json.dumps(_load(), indent=1)[:20000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("folds", "select", "rows", "lofo", "search", "report"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--folder", default=None, help="search: keep the studies here")
    args = parser.parse_args()
    if args.part == "folds":
        folds(args.jobs)
    elif args.part == "select":
        select(args.jobs)
    elif args.part == "rows":
        rows_report(args.jobs)
    elif args.part == "lofo":
        lofo()
    elif args.part == "search":
        search(args.folder)
    else:
        report()


if __name__ == "__main__":
    sys.exit(main())
