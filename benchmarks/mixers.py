"""The seed's question, measured: which token mixer should a SwiftFormer's attention blocks use?

    python -m benchmarks.mixers            # both parts (about a minute), results/mixers.json
    python -m benchmarks.mixers latency    # predicted latency per mixer and resolution; LOFO
    python -m benchmarks.mixers accuracy   # best trained top-1 per space at 3 latency budgets

Latency: SwiftFormer-XS and -S with every attention block's mixer swapped (additive, mhsa with
4 heads, separable; and mhsa in the last two stages only, as EfficientFormer places it),
predicted for the iPhone 14 (the SwiftFormer paper's table) at 224, 256 and 320 px, with the 90%
interval. And the predictor's leave-one-family-out error per mixer, on the
calibration families that use it: additive = SwiftFormer's rows; mhsa = the rows of DeiT, PiT,
ViT, EfficientFormer(V2), MobileViT and FastViT whose models have attention products
(``latency_models.evaluation.mixer_of_row``). No calibration
family uses separable attention, so it has no such number: it is priced from its operations
alone, with an unseen family's interval.

Paired: the same eight architectures (those with attention blocks among the default space's first
candidate of each bin) trained again with every attention block swapped to mhsa and to
separable (``trained_space.py run --only swaps``): the top-1 change is the mixer's, plus one
training's noise.

Accuracy: the trained benchmark (``python -m benchmarks.trained_space run --only mixers``)
trains one candidate per latency bin (8 bins, 0.5-2.5 ms) from each of four spaces: additive
only (the default space's first pass over the bins), mhsa only, separable only and mixed (two
mixers or more). The same sampling and the same training budget (8 trainings) per space; at each
latency budget, the best trained top-1 among a space's candidates within it. One training's
seed noise (0.45 points, from the benchmark's seed repeats) is the scale of a real difference.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from benchmarks.common import calibration_rows, feature_cache

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "mixers.json"
DEVICE = "iPhone 14"
MIXERS = {"additive": {}, "mhsa": {"heads": 4}, "separable": {}}
RESOLUTIONS = (224, 256, 320)
BUDGETS_MS = (1.0, 1.5, 2.5)  # three latency budgets over the trained bins (0.5-2.5 ms)
SETS = ("additive", "mhsa", "separable", "mixed")


# the columns of the latency table: a mixer in every stage, and mhsa where EfficientFormer and
# MobileViT put self-attention (the two low-resolution stages, 196 and 49 tokens at 224 px)
VARIANTS = {"additive": ("additive",) * 4, "mhsa": ("mhsa",) * 4,
            "separable": ("separable",) * 4, "mhsa late": ("additive", "additive", "mhsa", "mhsa")}


def with_mixer(arch, mixer: str | tuple[str, ...], resolution: int):  # type: ignore[no-untyped-def]
    """``arch`` at ``resolution`` with every stage's mixer (or stage ``i``'s ``mixer[i]``)."""
    from search_spaces import ArchConfig

    mixers = (mixer,) * 4 if isinstance(mixer, str) else mixer
    data = arch.to_dict()
    data["resolution"] = resolution
    for st, m in zip(data["stages"], mixers, strict=True):
        st.pop("heads", None)
        st.update({"mixer": m, **MIXERS[m]})
    return ArchConfig.from_dict(data)


def latency_part() -> dict[str, object]:
    from latency_models.defaults import load_default_predictor
    from search_spaces import PRESETS

    predictor = load_default_predictor()
    cache = feature_cache()
    table = []
    for preset in ("xs", "s"):
        for res in RESOLUTIONS:
            row: dict[str, object] = {"preset": preset, "resolution": res}
            for variant, mixers in VARIANTS.items():
                p = predictor.predict(with_mixer(PRESETS[preset], mixers, res), device=DEVICE,
                                      cache=cache)
                row[variant] = {"ms": round(p.latency_ms, 3), "low": round(p.low_ms, 3),
                              "high": round(p.high_ms, 3)}
            table.append(row)
    return {"device": DEVICE, "predicted": table, "lofo": _lofo_per_mixer(predictor, cache)}


def _lofo_per_mixer(predictor, cache) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The shipped predictor's leave-one-family-out predictions (stored by its fit) over the
    calibration rows that measure each mixer (``latency_models.evaluation.lofo_by_mixer``)."""
    from latency_models.evaluation import lofo_by_mixer, mixer_of_row

    by_key = {(r["model"], r["group"]): r["predicted_ms"]
              for r in predictor.metrics.get("cv_rows", []) if r["predicted_ms"] is not None}
    rows = [m for m in calibration_rows() if (m.model, m.group) in by_key]
    feats = [cache.get(m.ref, m.input_resolution)
             for m in rows]
    out = lofo_by_mixer(rows, [by_key[(m.model, m.group)] for m in rows], feats)
    errors: dict[str, list[float]] = {}  # per family, over the rows that measure a mixer
    for m, f in zip(rows, feats, strict=True):
        if mixer_of_row(m, f) is not None:
            errors.setdefault(m.family_name, []).append(
                abs(by_key[(m.model, m.group)] / m.latency_ms - 1))
    return {**out, "per_family_mape": {fam: round(100 * float(np.mean(e)), 1)
                                       for fam, e in sorted(errors.items())}}


def accuracy_part() -> dict[str, object]:
    from benchmarks.trained_space import CSV_PATH, first_of_each_bin

    with CSV_PATH.open() as f:
        rows = [r for r in csv.DictReader(f) if r["seed"] == "0"]
    # additive: the default space's first candidate of each bin, so that every space has the
    # same sampling and training budget
    first_pass = {label for label, _ in first_of_each_bin()}
    pools: dict[str, list[dict[str, str]]] = {s: [] for s in SETS}
    for r in rows:
        mixer = r.get("mixer") or "additive"
        if mixer not in pools or (mixer == "additive" and r["label"] not in first_pass):
            continue  # the paired swaps are read by _paired
        pools[mixer].append(r)
    out: dict[str, object] = {"budgets_ms": list(BUDGETS_MS), "trained": {}, "best": {}}
    for s, pool in pools.items():
        out["trained"][s] = len(pool)  # type: ignore[index]
        best = {}
        for b in BUDGETS_MS:
            within = [float(r["top1"]) for r in pool if float(r["latency_ms"]) <= b]
            best[str(b)] = round(max(within), 2) if within else None
        out["best"][s] = best  # type: ignore[index]
    out["score_spearman"] = _score_check(pools)
    out["paired"] = _paired(rows)
    return out


def _paired(rows: list[dict[str, str]]) -> dict[str, object]:
    """The same architecture trained with each mixer: top-1 and predicted latency of each
    swap minus those of its additive original (``trained_space.py run --only swaps``)."""
    by_label = {r["label"]: r for r in rows}
    out: dict[str, object] = {}
    for mixer in ("mhsa", "separable"):
        pairs = [(by_label[r["label"].split("_")[0]], r) for r in rows
                 if r.get("mixer") == f"swap_{mixer}" and r["label"].split("_")[0] in by_label]
        if not pairs:
            continue
        d_top1 = np.array([float(b["top1"]) - float(a["top1"]) for a, b in pairs])
        ratio = np.array([float(b["latency_ms"]) / float(a["latency_ms"]) for a, b in pairs])
        out[mixer] = {
            "pairs": len(pairs),
            "mean_delta_top1": round(float(d_top1.mean()), 2),
            "se_delta_top1": round(float(d_top1.std(ddof=1) / np.sqrt(len(pairs))), 2)
            if len(pairs) > 1 else None,
            "wins": int((d_top1 > 0).sum()),
            "median_latency_ratio": round(float(np.median(ratio)), 2),
            "rows": [{"label": a["label"], "additive_top1": float(a["top1"]),
                      "top1": float(b["top1"]), "additive_ms": float(a["latency_ms"]),
                      "ms": float(b["latency_ms"])} for a, b in pairs]}
    return out


def _score_check(pools: dict[str, list[dict[str, str]]]) -> dict[str, object]:
    """Spearman of the default score (and of params) with trained top-1 within each space's
    candidates and over all of them: does the default objective hold across mixers?"""
    from scipy.stats import spearmanr

    out: dict[str, object] = {}
    everything = [r for pool in pools.values() for r in pool]
    for name, rs in {**pools, "all": everything}.items():
        if len(rs) < 4:
            out[name] = None
            continue
        top1 = [float(r["top1"]) for r in rs]
        out[name] = {"n": len(rs),
                     "score": round(float(spearmanr([float(r["score"]) for r in rs], top1)[0]), 3),
                     "params": round(float(spearmanr([float(r["params"]) for r in rs], top1)[0]),
                                     3)}
    return out


def report(results: dict[str, object]) -> None:
    lat = results.get("latency")
    if isinstance(lat, dict):
        print(f"Predicted {DEVICE} latency (ms, 90% interval) with every attention block's mixer "
              "swapped:\n")
        print("| model | px | additive | mhsa (4 heads) | separable | mhsa in stages 2-3 |\n"
              "|---|---|---|---|---|---|")
        for row in lat["predicted"]:
            cells = [f"{row[m]['ms']:.3f} ({row[m]['low']:.2f}-{row[m]['high']:.2f})"
                     for m in VARIANTS]
            print(f"| {row['preset'].upper()} | {row['resolution']} | " + " | ".join(cells) + " |")
        print("\nLeave-one-family-out error of the shipped predictor, per mixer:\n")
        print("| mixer | rows | families | MAPE | median APE |\n|---|---|---|---|---|")
        for m in MIXERS:
            v = lat["lofo"].get(m)
            if v is None:
                print(f"| {m} | 0 | none measured | - | - |")
            else:
                print(f"| {m} | {v['rows']} | {', '.join(v['families'])} | {v['mape']:.1f}% | "
                      f"{v['median_ape']:.1f}% |")
    acc = results.get("accuracy")
    if isinstance(acc, dict):
        print("\nBest trained top-1 (Fashion-MNIST proxy task) within each latency budget, "
              "same sampling and training budget per space:\n")
        heads = " | ".join(f"<= {b:g} ms" for b in acc["budgets_ms"])
        print(f"| space | trained | {heads} |\n|---|---|" + "---|" * len(acc["budgets_ms"]))
        for s in SETS:
            cells = " | ".join("-" if v is None else f"{v:.2f}" for v in acc["best"][s].values())
            print(f"| {s} | {acc['trained'][s]} | {cells} |")
        paired = acc.get("paired") or {}
        if paired:
            print("\nThe same architectures with every attention block's mixer swapped "
                  "(top-1 points and predicted latency against the additive original):\n")
            print("| mixer | pairs | mean top-1 change | better in | median latency ratio |\n"
                  "|---|---|---|---|---|")
            for m, v in paired.items():
                se = "" if v["se_delta_top1"] is None else f" ± {v['se_delta_top1']:.2f}"
                print(f"| {m} | {v['pairs']} | {v['mean_delta_top1']:+.2f}{se} | "
                      f"{v['wins']} of {v['pairs']} | {v['median_latency_ratio']:.2f}x |")
        print("\nDefault score vs trained top-1 (Spearman) within each space:\n")
        print("| space | n | score | params |\n|---|---|---|---|")
        for s, v in acc["score_spearman"].items():
            print(f"| {s} | " + ("- | - | - |" if v is None else
                                 f"{v['n']} | {v['score']:.3f} | {v['params']:.3f} |"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", choices=["all", "latency", "accuracy"], default="all")
    args = parser.parse_args()
    results: dict[str, object] = json.loads(OUT.read_text()) if OUT.is_file() else {}
    if args.part in ("all", "latency"):
        results["latency"] = latency_part()
    if args.part in ("all", "accuracy"):
        results["accuracy"] = accuracy_part()
    RESULTS.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    report(results)


if __name__ == "__main__":
    main()
