"""Choose the default accuracy score by the decision a budgeted search makes.

    python -m benchmarks.default_score             # table + results/default_score.json
    python -m benchmarks.default_score timm-vits   # proxies of results/timm_vits.jsonl's models
                                                   # -> results/proxy_timm_vits.csv (resumable)

A search returns the best candidate under a latency budget, so a score is judged on the trained
SwiftFormer-space candidates (``results/trained_space.csv``, seed 0, from ``trained_space.py``)
by
- **budgeted regret**: at budget B, the trained top-1 of the best candidate within B minus that
  of the candidate the score ranks first within B, averaged over budgets at the 20/35/50/65/80/
  100% quantiles of the predicted latency (top-1 points; one run's seed noise is ~0.45);
- **Spearman at fixed latency**: the partial rank correlation of score and top-1 given the
  latency rank (how well the score orders candidates of about the same latency);
- global Spearman, for reference.

Candidate scores are log-linear, ``sum_i w_i log(proxy_i)``, in two families: the proxies one
forward-backward pass gives (grad_norm, params, macs, swap; weights on a 0.05 simplex grid) and
the one-parameter mix ``w log(grad_norm) + (1 - w) log(params)``. A family's weights are chosen on
training folds by (regret, then -Spearman at fixed latency, then simplicity) and scored on the
held-out fold: repeated stratified 4-fold (20 repeats, strata = latency quartiles), so every
number called out-of-fold comes from candidates the choice never saw. The shipped default is the
rule applied to all candidates with the family whose out-of-fold numbers are better.

Second checks, reported and never used to choose: global Spearman on 44 timm vision transformers
(``results/proxy_timm_vits.csv``: families with different initialisations, which is where
grad_norm is weak) and on NAS-Bench-Macro's CNNs (``results/proxy_full_scores.csv``).
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.stats import rankdata, spearmanr

RESULTS = Path(__file__).resolve().parent / "results"
QUANTILES = (0.2, 0.35, 0.5, 0.65, 0.8, 1.0)
BASELINES = ("params", "grad_norm", "synflow", "macs", "swap", "naswot", "act_units")
PREVIOUS = {"swap": 1.0, "grad_norm": 0.3, "params": 0.35, "macs": 0.5}  # swiftnas before
FOLDS, REPEATS = 4, 20
VIT_PROXIES = ["swap", "grad_norm", "act_units", "params", "macs", "depth"]


# ------------------------------------------------------------------------------ metrics
def budgeted_regret(score: np.ndarray, top1: np.ndarray, latency: np.ndarray) -> float:
    out = []
    for q in QUANTILES:
        inside = latency <= np.quantile(latency, q)
        out.append(top1[inside].max() - top1[inside][np.argmax(score[inside])])
    return float(np.mean(out))


def spearman_at_fixed_latency(score: np.ndarray, top1: np.ndarray,
                              latency: np.ndarray) -> float:
    r = np.corrcoef([rankdata(score), rankdata(top1), rankdata(latency)])
    sa, sl, al = r[0, 1], r[0, 2], r[1, 2]
    return float((sa - sl * al) / np.sqrt((1 - sl ** 2) * (1 - al ** 2)))


def rho(x: np.ndarray, y: np.ndarray) -> float:
    return float(spearmanr(x, y)[0])


# ------------------------------------------------------------------------------ data
# The candidates as they were when the default was chosen (latencies predicted by v2.4): the
# decision reproduces from them. `--data results/trained_space.csv` runs on today's export.
DECISION_DATA = RESULTS / "trained_space_decision.csv"


def load_trained(path: Path = DECISION_DATA) -> dict[str, np.ndarray]:
    with path.open() as f:
        # the default space's candidates (the token-mixer ones are benchmarks/mixers.py's)
        rows = [r for r in csv.DictReader(f)
                if r["seed"] == "0" and r.get("mixer", "additive") == "additive"]
    names = ["latency_ms", "top1", "score", *BASELINES]
    return {n: np.array([float(r[n]) for r in rows]) for n in names}


def load_other(path: Path, accuracy: str) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with path.open() as f:
        rows = [r for r in csv.DictReader(f)
                if all(r.get(c) not in ("", None) for c in (accuracy, *PREVIOUS))]
    return {"top1": np.array([float(r[accuracy]) for r in rows]),
            **{n: np.array([float(r[n]) for r in rows]) for n in PREVIOUS}}


# ------------------------------------------------------------------------------ families
def simplex_family() -> list[dict[str, float]]:
    grid = np.round(np.arange(0, 1.0001, 0.05), 2)
    out = []
    for a, b, c in itertools.product(grid, repeat=3):
        if a + b + c <= 1 + 1e-9:
            w = {"grad_norm": a, "params": b, "macs": c, "swap": round(1 - a - b - c, 2)}
            out.append({k: float(v) for k, v in w.items() if v > 0})
    return out


def mix_family() -> list[dict[str, float]]:
    out = []
    for w in np.round(np.arange(0, 1.0001, 0.1), 1):
        out.append({k: float(v) for k, v in (("grad_norm", w), ("params", round(1 - w, 1)))
                    if v > 0})
    return out


def scores(cols: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    return sum(w * np.log(cols[p]) for p, w in weights.items())  # type: ignore[return-value]


def choose(cols: dict[str, np.ndarray], family: list[dict[str, float]],
           idx: np.ndarray) -> int:
    """The rule: lowest regret on ``idx`` (to 0.001 points), then highest Spearman at fixed
    latency, then the fewest proxies."""
    def key(i: int) -> tuple[float, float, int]:
        s = scores(cols, family[i])[idx]
        return (round(budgeted_regret(s, cols["top1"][idx], cols["latency_ms"][idx]), 3),
                -spearman_at_fixed_latency(s, cols["top1"][idx], cols["latency_ms"][idx]),
                len(family[i]))
    return min(range(len(family)), key=key)


def folds(latency: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    strata = np.digitize(latency, np.quantile(latency, [0.25, 0.5, 0.75]))
    return [(tr, te) for rep in range(REPEATS)
            for tr, te in StratifiedKFold(FOLDS, shuffle=True, random_state=rep).split(
                latency, strata)]


def metrics(s: np.ndarray, cols: dict[str, np.ndarray], idx: np.ndarray) -> tuple[float, float]:
    t, lat = cols["top1"][idx], cols["latency_ms"][idx]
    return budgeted_regret(s[idx], t, lat), spearman_at_fixed_latency(s[idx], t, lat)


# ------------------------------------------------------------------------------ report
def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DECISION_DATA,
                        help="trained candidates CSV (default: the data of the decision)")
    args = parser.parse_args()
    cols = load_trained(args.data)
    everyone = np.arange(len(cols["top1"]))
    splits = folds(cols["latency_ms"])
    fixed = {"previous default": scores(cols, PREVIOUS),
             **{b: np.log(cols[b]) for b in BASELINES}}
    oof: dict[str, list[tuple[float, float]]] = {name: [] for name in fixed}
    families = {"grad_norm/params mix": mix_family(), "4-proxy simplex": simplex_family()}
    picks: dict[str, Counter[str]] = {f: Counter() for f in families}
    for name in families:
        oof[f"chosen on folds ({name})"] = []
    for k, (train, test) in enumerate(splits):
        for name, s in fixed.items():
            oof[name].append(metrics(s, cols, test))
        for fname, fam in families.items():
            i = choose(cols, fam, train)
            picks[fname][json.dumps(fam[i])] += 1
            oof[f"chosen on folds ({fname})"].append(metrics(scores(cols, fam[i]), cols, test))
        print(f"\rfold {k + 1}/{len(splits)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    summary = {n: {"regret": float(np.mean([m[0] for m in v])),
                   "regret_se": float(np.std([m[0] for m in v]) / np.sqrt(len(v))),
                   "spearman_fixed_latency": float(np.mean([m[1] for m in v])),
                   "spearman_fixed_latency_se": float(np.std([m[1] for m in v]) / np.sqrt(len(v)))}
               for n, v in oof.items()}
    best_family = min(families, key=lambda f: (summary[f"chosen on folds ({f})"]["regret"],
                                               -summary[f"chosen on folds ({f})"]
                                               ["spearman_fixed_latency"]))
    final = families[best_family][choose(cols, families[best_family], everyone)]
    fixed[f"chosen default {final}"] = scores(cols, final)

    vits = load_other(RESULTS / "proxy_timm_vits.csv", "accuracy")
    nbm = load_other(RESULTS / "proxy_full_scores.csv", "mean_acc")

    def second(data: dict[str, np.ndarray] | None, name: str) -> float | None:
        if data is None:
            return None
        if name == "previous default":
            return rho(scores(data, PREVIOUS), data["top1"])
        if name.startswith("chosen default"):
            return rho(scores(data, final), data["top1"])
        return rho(data[name], data["top1"]) if name in data else None

    table = []
    for name, s in fixed.items():
        reg, par = metrics(s, cols, everyone)
        table.append({"score": name, "spearman": rho(s, cols["top1"]),
                      "spearman_fixed_latency": par, "regret": reg,
                      "timm_vits_spearman": second(vits, name),
                      "nas_bench_macro_spearman": second(nbm, name)})
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    print(f"All {len(cols['top1'])} candidates (in sample; for the fixed scores this is also "
          "out of sample, nothing is fitted):")
    print("| score | global Spearman | Spearman at fixed latency | mean regret (points) | "
          "timm ViTs Spearman | NAS-Bench-Macro Spearman |")
    print("|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['score']} | {r['spearman']:.3f} | {r['spearman_fixed_latency']:.3f} | "
              f"{r['regret']:.2f} | {fmt(r['timm_vits_spearman'])} | "
              f"{fmt(r['nas_bench_macro_spearman'])} |")
    print(f"\nOut of fold ({REPEATS} x {FOLDS}-fold, held-out folds of ~"
          f"{len(everyone) // FOLDS} candidates; mean +- standard error over folds):")
    print("| score | regret | Spearman at fixed latency |")
    print("|---|---|---|")
    for name, v in sorted(summary.items(), key=lambda kv: kv[1]["regret"]):
        print(f"| {name} | {v['regret']:.3f} +- {v['regret_se']:.3f} | "
              f"{v['spearman_fixed_latency']:.3f} +- {v['spearman_fixed_latency_se']:.3f} |")
    print(f"\nfamily with the better out-of-fold numbers: {best_family}; weights picked on "
          "folds:", dict(picks[best_family].most_common(5)))
    print(f"shipped default (the rule on all candidates): {final}")
    report = {"method": __doc__, "in_sample": table, "out_of_fold": summary,
              "folds": {"k": FOLDS, "repeats": REPEATS}, "family": best_family,
              "picks_on_folds": {f: dict(c) for f, c in picks.items()}, "chosen": final}
    if args.data.resolve() != DECISION_DATA.resolve():  # a what-if: never the decision's file
        print(f"(--data {args.data}: not written to default_score.json)")
        return
    (RESULTS / "default_score.json").write_text(json.dumps(report, indent=2) + "\n")


def score_timm_vits() -> None:
    """Proxies of every model in timm_vits.jsonl, one row per model as it finishes (a rerun
    skips the models already in the CSV)."""
    import torch

    from nas.proxies.evaluate import jsonl_specs, score_spec

    torch.set_num_threads(1)
    out = RESULTS / "proxy_timm_vits.csv"
    done: set[str] = set()
    if out.is_file():
        with out.open() as f:
            done = {r["model"] for r in csv.DictReader(f)}
    else:
        with out.open("w", newline="") as f:
            csv.writer(f).writerow(["model", "accuracy", *VIT_PROXIES])
    for spec in jsonl_specs(RESULTS / "timm_vits.jsonl"):
        if spec.name in done:
            continue
        row = score_spec(spec, VIT_PROXIES, 64, 0)
        with out.open("a", newline="") as f:
            csv.writer(f).writerow([spec.name, spec.accuracy,
                                    *(row.scores.get(p, "") for p in VIT_PROXIES)])
        print(f"{spec.name}: {row.errors or 'ok'}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    score_timm_vits() if sys.argv[1:] == ["timm-vits"] else main()
