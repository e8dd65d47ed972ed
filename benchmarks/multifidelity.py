"""Does training the candidates the acquisition rule picks pay, against training the top by a
fixed objective? Pool-based, on stored trainings only, so a rerun costs seconds.

    python -m benchmarks.multifidelity          # table + results/multifidelity.json

Pool: the 44 trained SwiftFormer-space candidates of ``results/trained_space.csv`` (seed 0, the
trained-space recipe: Fashion-MNIST 64 px, 5k images, 2 epochs), with their predicted iPhone 14
latency and proxies. Each seed draws a random 33 of them (the candidates a search found); every
strategy then spends the same number of trainings (6 or 12) on that pool, and is scored at 3
latency budgets (the 35/65/100% latency quantiles of the pool) by its regret: the best trained
top-1 of the whole pool within the budget minus the best top-1 among the candidates it trained.

Strategies:
- (a) ``default``: the default score's (score, latency) fronts, spread along latency;
- (b) ``params``: the same with log(params) as the score;
- (c) ``random``: uniformly random candidates;
- (d) ``loop``: the multi-fidelity search's rule (``nas.search.acquisition``): the first
  ``MIN_TRAINED`` picks as (a), then, after every training, the accuracy surrogate is refitted
  on what was trained (``AccuracySurrogate``, its Gaussian process, on the search's features)
  and the candidate with the largest upper confidence bound above the measured front at its
  latency is trained next.
Seed noise of one training on this recipe: 0.45 top-1 points (``trained_space.py report``).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from nas.proxies.settings import DEFAULT_SCORE_WEIGHTS, combine_score
from nas.search.acquisition import KAPPA, MIN_TRAINED, spread_front_picks, ucb_pick

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = range(10)
POOL = 33
TRAININGS = (6, 12)
QUANTILES = (0.35, 0.65, 1.0)
STRATEGIES = ("default", "params", "random", "loop")
SURROGATE_KIND = "gp"  # the surrogate's Matern GP; kappa and kind: see the README's numbers


def load_pool() -> list[dict[str, object]]:
    from search_spaces import PRESETS, ArchConfig

    with (RESULTS / "trained_space.csv").open() as f:
        # the default space's candidates (the token-mixer ones are benchmarks/mixers.py's)
        rows = [r for r in csv.DictReader(f)
                if r["seed"] == "0" and r.get("mixer", "additive") == "additive"]
    cands = json.loads((RESULTS / "trained_space_candidates.json").read_text())["candidates"]
    archs = [ArchConfig.from_dict(c["arch"]) for c in cands] + list(PRESETS.values())
    arch_of = {a.key(): a for a in archs}
    pool = []
    for r in rows:
        arch = arch_of.get(r["arch_key"])
        if arch is None:
            raise SystemExit(f"{r['label']}: architecture not in trained_space_candidates.json")
        values = {p: float(r[p]) for p in ("grad_norm", "params", "macs", "swap")}
        pool.append({"arch": arch, "latency": float(r["latency_ms"]), "top1": float(r["top1"]),
                     "params": int(float(r["params"])), "macs": int(float(r["macs"])),
                     "score": combine_score(DEFAULT_SCORE_WEIGHTS, values)})
    return pool


def features(pool: list[dict[str, object]]) -> np.ndarray:
    from nas.evaluators.surrogate import arch_features

    return np.array([arch_features(c["arch"], c["params"], c["macs"], {"score": c["score"]})
                     for c in pool])


def run_loop(pool: list[dict[str, object]], X: np.ndarray, n: int,
             kappa: float = KAPPA) -> list[int]:
    from nas.evaluators.surrogate import AccuracySurrogate, feature_names

    lat = [float(c["latency"]) for c in pool]  # type: ignore[arg-type]
    score = [float(c["score"]) for c in pool]  # type: ignore[arg-type]
    trained = spread_front_picks(lat, score, min(MIN_TRAINED, n))
    while len(trained) < n:
        measured = {i: float(pool[i]["top1"]) for i in trained}  # type: ignore[arg-type]
        sur = AccuracySurrogate.fit(X[trained].tolist(), list(measured.values()),
                                    names=feature_names(4), kind=SURROGATE_KIND)
        mean, std = sur.predict_rows(X.tolist())
        pick = ucb_pick(lat, mean, std, measured, kappa=kappa)
        if pick is None:
            break
        trained.append(pick)
    return trained


def picks(strategy: str, pool: list[dict[str, object]], X: np.ndarray, n: int,
          rng: np.random.Generator) -> list[int]:
    lat = [float(c["latency"]) for c in pool]  # type: ignore[arg-type]
    if strategy == "default":
        return spread_front_picks(lat, [float(c["score"]) for c in pool], n)  # type: ignore[arg-type]
    if strategy == "params":
        return spread_front_picks(lat, [float(c["params"]) for c in pool], n)  # type: ignore[arg-type]
    if strategy == "random":
        return [int(i) for i in rng.choice(len(pool), n, replace=False)]
    return run_loop(pool, X, n)


def regrets(pool: list[dict[str, object]], chosen: list[int]) -> list[float]:
    lat = np.array([c["latency"] for c in pool], float)
    top1 = np.array([c["top1"] for c in pool], float)
    out = []
    for q in QUANTILES:
        inside = lat <= np.quantile(lat, q)
        got = [top1[i] for i in chosen if inside[i]]
        out.append(float(top1[inside].max() - (max(got) if got else top1[inside].min())))
    return out


def main() -> None:
    full = load_pool()
    X_full = features(full)
    table: dict[str, dict[str, list[list[float]]]] = {
        s: {str(n): [] for n in TRAININGS} for s in STRATEGIES}
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        idx = sorted(rng.choice(len(full), POOL, replace=False).tolist())
        pool, X = [full[i] for i in idx], X_full[idx]
        for n in TRAININGS:
            for strategy in STRATEGIES:
                chosen = picks(strategy, pool, X, n, np.random.default_rng(1000 + seed))
                table[strategy][str(n)].append(regrets(pool, chosen))
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    budgets = [f"{int(q * 100)}% quantile" for q in QUANTILES]
    print(f"Regret (top-1 points; mean +- standard error over {len(SEEDS)} seeds of {POOL} of "
          f"{len(full)} candidates) of the best trained candidate under each latency budget:")
    print("| trainings | strategy | " + " | ".join(budgets) + " | mean |")
    print("|---|---|" + "---|" * (len(budgets) + 1))
    summary: dict[str, dict[str, object]] = {}
    for n in TRAININGS:
        for s in STRATEGIES:
            r = np.array(table[s][str(n)])
            mean, se = r.mean(0), r.std(0) / np.sqrt(len(r))
            cells = " | ".join(f"{m:.2f} +- {e:.2f}" for m, e in zip(mean, se, strict=True))
            print(f"| {n} | {s} | {cells} | {r.mean():.2f} |")
            summary[f"{s}@{n}"] = {"mean": mean.tolist(), "se": se.tolist(),
                                   "overall": float(r.mean())}
    (RESULTS / "multifidelity.json").write_text(json.dumps(
        {"method": __doc__, "budgets": budgets, "pool": POOL, "seeds": len(SEEDS),
         "score_weights": DEFAULT_SCORE_WEIGHTS, "regret": summary,
         "per_seed": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
