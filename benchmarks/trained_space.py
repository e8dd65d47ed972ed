"""A trained SwiftFormer-space mini-benchmark: real short training of sampled candidates, to
validate the proxies (and the accuracy surrogate) on the space swiftnas searches.

    python -m benchmarks.trained_space pilot    # cost per candidate of the recipe (XS and L1)
    python -m benchmarks.trained_space run      # train the candidates (resumable, any sittings)
    python -m benchmarks.trained_space export   # stored results -> results/trained_space.csv
    python -m benchmarks.trained_space report   # proxies vs trained top-1, noise ceiling, front

Candidates: 40 architectures sampled from the default space with a fixed seed, stratified over
predicted iPhone 14 latency (8 bins from 0.5 to 2.5 ms, 5 each), plus XS/S/L1/L3; every 4th
sampled candidate (10) is trained again with a second seed for the seed-noise ceiling. Then, for
the token-mixer question (``benchmarks/mixers.py``), one candidate per bin from each of three
spaces: mhsa-only, separable-only and mixed (at least two mixers), with ``--only mixers``
training just those (``trained_space_mixers.json``); and, paired, the default space's first
candidate of each bin with every attention block swapped to mhsa and to separable
(``--only swaps``).
Training goes through the product path (``nas.training.run_training``), so results live in SQL
(``benchmarks/results/trained_space.db``, or ``--storage``) and a run killed at any point
resumes: finished candidates are cache hits, an unfinished one continues from its checkpoint.

The recipe is a proxy task that fits a 2-core CPU: Fashion-MNIST at 64 px (stages 3-4 keep 16
and 4 tokens), a fixed subset of 5k training images, 2 epochs, a fixed 5k of the test set. It
ranks architectures on a small 10-class problem after minutes of training; it is not ImageNet.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "benchmarks" / "results"
CSV_PATH = RESULTS / "trained_space.csv"
DEFAULT_DB = f"sqlite:///{RESULTS / 'trained_space.db'}"
WORK = ROOT / "benchmarks" / "work" / "trained_space"  # checkpoints (git-ignored)
DEVICE = "iPhone 14"
BINS = np.linspace(0.5, 2.5, 9)  # 8 latency bins
PER_BIN = 5
SEED_REPEATS = 10
SAMPLE_SEED = 2026
# Pilot (trained_space_pilot.json, 2 threads, idle): XS trains at 67 img/s and evaluates at
# 235 img/s at 64 px, L1 at 33 and 137; 8k images x 2 epochs + the 10k test set would cost
# 5-11 min per candidate (8 h for the 54 runs), so the recipe halves both sets.
RECIPE = {"epochs": 2, "resolution": 64, "batch_size": 128, "lr": 2e-3, "train_subset": 5000,
          "val_subset": 5000}
# the token-mixer candidate sets: which mixers each one's space offers in every stage
MIXER_SETS = {"mhsa": ("mhsa",), "separable": ("separable",),
              "mixed": ("additive", "mhsa", "separable")}
MIXER_PATH = RESULTS / "trained_space_mixers.json"
PROXIES = ["score", "swap", "naswot", "grad_norm", "synflow", "meco", "act_units", "params",
           "macs", "depth"]


def candidates() -> list[tuple[str, object]]:
    """(label, ArchConfig): the stratified sample, then the four presets. The sample is drawn
    once and kept in ``trained_space_candidates.json`` (a latency prediction costs about 0.5 s,
    and later sittings must train exactly the same list)."""
    from search_spaces import PRESETS, ArchConfig, get_preset

    path = RESULTS / "trained_space_candidates.json"
    if not path.is_file():
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(_draw_candidates(), indent=1) + "\n")
    drawn = json.loads(path.read_text())["candidates"]
    return [(c["label"], ArchConfig.from_dict(c["arch"])) for c in drawn] + \
        [(name, get_preset(name)) for name in PRESETS]


def _draw_candidates() -> dict[str, object]:
    """Fill 8 latency bins with 5 each from a seeded pool of 400 samples; bins the pool leaves
    short (random samples are rarely under 1 ms) are topped up from the nearest bins."""
    from latency_models.defaults import load_predictor
    from search_spaces import SwiftFormerSpace

    predictor = load_predictor()
    by_bin: list[list[tuple[float, object]]] = [[] for _ in range(len(BINS) - 1)]
    seen: set[str] = set()
    for arch in SwiftFormerSpace().sample_random(400, seed=SAMPLE_SEED):
        if arch.key() in seen:
            continue
        seen.add(arch.key())
        ms = predictor.predict(device=DEVICE, model=arch).latency_ms
        b = int(np.searchsorted(BINS, ms, side="right")) - 1
        if 0 <= b < len(by_bin):
            by_bin[b].append((ms, arch))
    chosen = [entries[:PER_BIN] for entries in by_bin]
    want = PER_BIN * len(by_bin)
    for b in np.argsort([-len(e) for e in by_bin]):  # top up from the fullest bins
        while sum(map(len, chosen)) < want and len(chosen[b]) < len(by_bin[b]):
            chosen[b].append(by_bin[b][len(chosen[b])])
    flat = [entry for group in chosen for entry in group]
    return {"seed": SAMPLE_SEED, "device": DEVICE, "bins_ms": BINS.tolist(),
            "per_bin": [len(g) for g in chosen],
            "candidates": [{"label": f"c{i:02d}", "predicted_ms": round(ms, 4),
                            "arch": arch.to_dict()}  # type: ignore[attr-defined]
                           for i, (ms, arch) in enumerate(flat)]}


def mixer_candidates() -> list[tuple[str, object]]:
    """(label, ArchConfig) of the token-mixer sets, one per latency bin each; drawn once and
    kept in ``trained_space_mixers.json``, like :func:`candidates`."""
    from search_spaces import ArchConfig

    if not MIXER_PATH.is_file():
        RESULTS.mkdir(exist_ok=True)
        MIXER_PATH.write_text(json.dumps(_draw_mixer_candidates(), indent=1) + "\n")
    drawn = json.loads(MIXER_PATH.read_text())["candidates"]
    return [(c["label"], ArchConfig.from_dict(c["arch"])) for c in drawn]


def _draw_mixer_candidates() -> dict[str, object]:
    """For each set, draw from its space (the default space with only the set's mixers, 2 or 4
    mhsa heads) until every bin has one (at most 600 draws; a bin still empty is said and left
    empty); "mixed" candidates must use two mixers or more."""
    import dataclasses

    from latency_models.defaults import load_predictor
    from search_spaces import SwiftFormerSpace
    from search_spaces.space import DEFAULT_STAGE_CHOICES

    predictor = load_predictor()
    out = []
    for set_name, mixers in MIXER_SETS.items():
        space = SwiftFormerSpace(stages=tuple(dataclasses.replace(st, mixers=mixers, heads=(2, 4))
                                              for st in DEFAULT_STAGE_CHOICES))
        by_bin: list[list[tuple[float, object]]] = [[] for _ in range(len(BINS) - 1)]
        for arch in space.sample_random(600, seed=SAMPLE_SEED):
            if len(arch.mixers) < (2 if set_name == "mixed" else 1) or \
                    not arch.mixers <= set(mixers):
                continue
            ms = predictor.predict(device=DEVICE, model=arch).latency_ms
            b = int(np.searchsorted(BINS, ms, side="right")) - 1
            if 0 <= b < len(by_bin) and len(by_bin[b]) < 2:  # a second one for top-ups
                by_bin[b].append((ms, arch))
            if all(by_bin):
                break
        chosen = [entries[:1] for entries in by_bin]
        for b in [b for b in range(len(by_bin)) if not by_bin[b]]:  # top up from the nearest
            spare = sorted((abs(f - b), f) for f in range(len(by_bin)) if len(by_bin[f]) > 1)
            print(f"{set_name}: bin {b} empty after 600 draws; a second candidate of bin "
                  f"{spare[0][1]} instead", file=sys.stderr)
            chosen[spare[0][1]].append(by_bin[spare[0][1]][1])
        for b, entries in enumerate(chosen):
            for k, (ms, arch) in enumerate(entries):
                out.append({"label": f"{set_name}{b:02d}" + "b" * k, "set": set_name,
                            "predicted_ms": round(ms, 4), "arch": arch.to_dict()})  # type: ignore[attr-defined]
    return {"seed": SAMPLE_SEED, "device": DEVICE, "bins_ms": BINS.tolist(),
            "candidates": out}


def first_of_each_bin() -> list[tuple[str, object]]:
    """The default space's first sampled candidate of each latency bin (8)."""
    drawn = json.loads((RESULTS / "trained_space_candidates.json").read_text())
    labels, start = [], 0
    for n in drawn["per_bin"]:
        if n:
            labels.append(drawn["candidates"][start]["label"])
        start += n
    by_label = dict(candidates())
    return [(label, by_label[label]) for label in labels]


def swap_jobs() -> list[tuple[str, object, int]]:
    """The paired comparison: each of :func:`first_of_each_bin` with every attention block's
    mixer swapped to mhsa (4 heads) and to separable, seed 0. The same architecture, so the
    difference in top-1 is the mixer's (and one training's noise)."""
    from search_spaces import ArchConfig

    out = []
    for label, arch in first_of_each_bin():
        if not arch.num_attn_blocks:  # type: ignore[attr-defined]
            continue  # nothing to swap
        for mixer, extra in (("mhsa", {"heads": 4}), ("separable", {})):
            data = arch.to_dict()  # type: ignore[attr-defined]
            for st in data["stages"]:
                st.update({"mixer": mixer, **extra})
            out.append((f"{label}_{mixer}", ArchConfig.from_dict(data), 0))
    return out


def _recipe(seed: int):  # type: ignore[no-untyped-def]
    from nas.training import TrainRecipe

    return TrainRecipe(seed=seed, **RECIPE)  # type: ignore[arg-type]


def jobs() -> list[tuple[str, object, int]]:
    cands = candidates()
    sampled, presets = cands[:-4], cands[-4:]
    # Strided over the latency bins (c00, c05, c10, ... then c01, c06, ...), so that a partial
    # run already spans the whole range; the presets after the first pass over the bins.
    order = [sampled[i] for r in range(PER_BIN) for i in range(r, len(sampled), PER_BIN)]
    bins = len(BINS) - 1
    seed0 = [(label, arch, 0) for label, arch in order[:bins] + presets + order[bins:]]
    # the seed repeats spread over the latency range (every 4th sampled candidate); they run
    # before the last pass over the bins, so a run cut short already has the noise ceiling
    # (those whose first seed runs earlier go first, to pair up sooner)
    position = {label: i for i, (label, _, _) in enumerate(seed0)}
    repeats = sorted(((label, arch, 1) for label, arch in sampled[:40:4][:SEED_REPEATS]),
                     key=lambda job: position[job[0]])
    last_pass = len(seed0) - bins
    return seed0[:last_pass] + repeats + seed0[last_pass:] + mixer_jobs() + swap_jobs()


def mixer_jobs() -> list[tuple[str, object, int]]:
    """The token-mixer candidates, seed 0: the bins in a spread order (0, 4, 2, 6, 1, 5, 3, 7),
    the three sets in turn within each, so that a partial run already covers every set and the
    whole latency range."""
    by_label = dict(mixer_candidates())
    spread = (0, 4, 2, 6, 1, 5, 3, 7)
    return [(label, by_label[label], 0) for b in spread for s in MIXER_SETS
            for label in (f"{s}{b:02d}", f"{s}{b:02d}b") if label in by_label]


def pilot(args: argparse.Namespace) -> None:
    """Images/s of one training epoch on 2,048 images for XS and L1 (2 threads)."""
    import torch

    from nas.training import TrainRecipe, TrainTarget, train
    from nas.training.data import load_data
    from search_spaces import get_preset

    torch.set_num_threads(args.threads)
    out = {}
    import shutil

    for name in ("xs", "l1"):
        shutil.rmtree(WORK / f"pilot_{name}", ignore_errors=True)
        recipe = TrainRecipe(epochs=1, resolution=64, batch_size=128, train_subset=2048,
                             val_subset=2048)
        data = load_data("fashion-mnist", 64, train_subset=2048, val_subset=2048)
        started = time.perf_counter()
        res = train(TrainTarget(arch=get_preset(name)), data, recipe,
                    WORK / f"pilot_{name}", identity={"pilot": name, "t": time.time()})
        total = time.perf_counter() - started
        train_ips = 2048 / res.train_seconds
        eval_ips = 2048 / max(total - res.train_seconds, 1e-9)
        n_train, epochs = RECIPE["train_subset"], RECIPE["epochs"]
        per_candidate = epochs * (n_train / train_ips + 10_000 / eval_ips)  # type: ignore[operator]
        out[name] = {"train_images_per_s": train_ips, "eval_images_per_s": eval_ips,
                     "recipe_seconds_per_candidate": per_candidate}
        print(f"{name}: train {train_ips:.0f} img/s, eval {eval_ips:.0f} img/s -> "
              f"{per_candidate / 60:.1f} min per candidate with {RECIPE}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "trained_space_pilot.json").write_text(json.dumps(
        {"threads": args.threads, "recipe": RECIPE, "models": out}, indent=2) + "\n")


def run(args: argparse.Namespace) -> None:
    import torch

    from nas.storage import open_storage
    from nas.training import TrainTarget, run_training

    torch.set_num_threads(args.threads)
    store = open_storage(args.storage)
    todo = {"mixers": mixer_jobs, "swaps": swap_jobs}.get(args.only or "", jobs)()
    for i, (label, arch, seed) in enumerate(todo, start=1):
        started = time.perf_counter()
        outcome = run_training(TrainTarget(arch=arch), "fashion-mnist", _recipe(seed),
                               WORK / f"{label}_s{seed}", store=store, device="cpu")
        r = outcome.result
        state = "stored" if outcome.cached else f"{time.perf_counter() - started:.0f} s"
        print(f"[{i}/{len(todo)}] {label} seed {seed}: top-1 {r.top1:.2f}% ({state})",
              flush=True)
        export(args)


def export(args: argparse.Namespace) -> None:
    """The stored results of the benchmark's jobs, with predicted latency and the proxies."""
    from latency_models.defaults import load_predictor
    from nas.proxies import DEFAULT_SCORE
    from nas.storage import open_storage
    from nas.training.data import load_data
    from nas.training.results import find_result

    store = open_storage(args.storage)
    digest = load_data("fashion-mnist", 64, train_subset=RECIPE["train_subset"],  # type: ignore[arg-type]
                       val_subset=RECIPE["val_subset"]).digest  # type: ignore[arg-type]
    predictor = load_predictor()
    old = {}
    if CSV_PATH.is_file():  # proxies are deterministic: keep the ones already computed
        with CSV_PATH.open() as f:
            old = {(r["label"], r["seed"]): r for r in csv.DictReader(f)}
    rows = []
    for label, arch, seed in jobs():
        hit = find_result(store, arch_key=arch.key(), dataset="fashion-mnist",  # type: ignore[attr-defined]
                          dataset_digest=digest, recipe_key=_recipe(seed).key())
        if hit is None:
            continue
        prev = old.get((label, str(seed)))
        if prev and prev.get("score"):
            proxies = {p: float(prev[p]) for p in PROXIES}
            # the default score is a function of stored proxies: follow its current weights
            proxies["score"] = DEFAULT_SCORE.combine(proxies)
        else:
            proxies = _proxies(arch)
        mixer = next((m for m in MIXER_SETS if label.startswith(m)), "additive")
        if "_" in label:  # a paired swap: c05_mhsa
            mixer = "swap_" + label.split("_", 1)[1]
        rows.append({"label": label, "seed": seed, "mixer": mixer, "arch_key": arch.key(),  # type: ignore[attr-defined]
                     "latency_ms": round(predictor.predict(arch, device=DEVICE).latency_ms, 4),  # type: ignore[arg-type]
                     "top1": hit.top1, "top5": hit.top5, "train_seconds": hit.train_seconds,
                     **{p: proxies[p] for p in PROXIES}})
    RESULTS.mkdir(exist_ok=True)
    with CSV_PATH.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["label", "seed", "mixer", "arch_key",
                                               "latency_ms", "top1", "top5", "train_seconds",
                                               *PROXIES])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} results -> {CSV_PATH.relative_to(ROOT)}", file=sys.stderr)


def _proxies(arch: object) -> dict[str, float]:
    """Every proxy of ``arch``; one that fails on it (synflow overflows to -inf on the deepest,
    widest candidates) is NaN, not the end of the export."""
    from nas.proxies import ProxySettings, score_arch
    from nas.proxies.settings import ProxyError

    settings = ProxySettings(num_classes=10)
    try:
        return score_arch(arch, proxies=PROXIES, settings=settings)  # type: ignore[arg-type]
    except ProxyError:
        out = {}
        for p in PROXIES:
            try:
                out[p] = score_arch(arch, proxies=[p], settings=settings)[p]  # type: ignore[arg-type]
            except ProxyError:
                out[p] = float("nan")
        return out


def report(args: argparse.Namespace) -> None:
    from scipy.stats import kendalltau, spearmanr

    with CSV_PATH.open() as f:
        rows = list(csv.DictReader(f))
    by_mixer = [r for r in rows if r["seed"] == "0" and r.get("mixer", "additive") != "additive"]
    main = [r for r in rows if r["seed"] == "0" and r.get("mixer", "additive") == "additive"]
    acc = np.array([float(r["top1"]) for r in main])
    print(f"{len(main)} candidates trained (seed 0), recipe {RECIPE}\n")
    print("| proxy | Spearman | Kendall |\n|---|---|---|")
    for p in PROXIES:
        x = np.array([float(r[p]) for r in main])
        print(f"| {p} | {spearmanr(x, acc)[0]:.3f} | {kendalltau(x, acc)[0]:.3f} |")
    by = {(r["label"]): float(r["top1"]) for r in main}
    pairs = [(by[r["label"]], float(r["top1"])) for r in rows if r["seed"] == "1"
             and r["label"] in by]
    if len(pairs) >= 3:
        a, b = zip(*pairs, strict=True)
        seed_diff = np.array(a) - np.array(b)
        diffs = np.abs(seed_diff)
        print(f"\nseed noise over {len(pairs)} pairs: Spearman {spearmanr(a, b)[0]:.3f}, "
              f"mean |diff| {diffs.mean():.2f} points, max {diffs.max():.2f}")
        # Noise ceiling: the Spearman a perfect predictor of the seed-averaged accuracy can
        # reach against one seed's top-1 over all the candidates. One run's noise is
        # sigma = sd(seed difference) / sqrt(2); the candidates' spread is the seed-0 one.
        sigma = float(np.std(seed_diff, ddof=1) / np.sqrt(2))
        rng = np.random.default_rng(0)
        sims = [spearmanr(acc, acc + rng.normal(0, sigma, len(acc)))[0] for _ in range(2000)]
        print(f"noise ceiling (one run's sd {sigma:.2f} points, 2,000 draws): Spearman "
              f"{np.mean(sims):.3f} [5-95%: {np.quantile(sims, 0.05):.3f}-"
              f"{np.quantile(sims, 0.95):.3f}]")
    _surrogate_report(main)
    _mixer_report(main, by_mixer)
    presets = [r for r in main if not r["label"].startswith("c")]
    print("\nfront check (trained candidates at no greater predicted latency, more accurate):")
    for p in presets:
        better = [r["label"] for r in main if r["label"].startswith("c")
                  and float(r["latency_ms"]) <= float(p["latency_ms"])
                  and float(r["top1"]) > float(p["top1"])]
        print(f"  {p['label']}: {float(p['top1']):.2f}% at {float(p['latency_ms']):.3f} ms; "
              f"{len(better)} better: {', '.join(better) or '-'}")


def _mixer_report(additive: list[dict[str, str]], others: list[dict[str, str]]) -> None:
    """The default score's rank correlation with trained top-1 within each mixer's
    candidates, and over all of them (is it still the right objective across mixers?)."""
    from scipy.stats import spearmanr

    if not others:
        return
    print("\n| candidates | n | Spearman(score, top-1) | Spearman(params, top-1) |\n"
          "|---|---|---|---|")
    groups = {"additive": additive, **{m: [r for r in others if r["mixer"] == m]
                                       for m in MIXER_SETS}, "all": additive + others}
    for name, rs in groups.items():
        if len(rs) < 3:
            print(f"| {name} | {len(rs)} | - | - |")
            continue
        top1 = [float(r["top1"]) for r in rs]
        print(f"| {name} | {len(rs)} | {spearmanr([float(r['score']) for r in rs], top1)[0]:.3f}"
              f" | {spearmanr([float(r['params']) for r in rs], top1)[0]:.3f} |")


def _surrogate_report(rows: list[dict[str, str]]) -> None:
    """Cross-validated rank correlation of the accuracy surrogate fitted on the first 10, 20
    and all trained points (in the benchmark's job order)."""
    from latency_models import FeatureCache
    from nas.evaluators.surrogate import MODELS, arch_features, cross_validate

    archs = {label: arch for label, arch in candidates()}
    cache = FeatureCache()
    X, y = [], []
    for r in rows:
        arch = archs[r["label"]]
        f = cache.get(arch)  # type: ignore[arg-type]
        X.append(arch_features(arch, f.params, int(f.total("macs")), {"score": float(r["score"])}))
        y.append(float(r["top1"]))
    print("\n| surrogate | n | CV | Spearman | Kendall | MAE (points) | 90% coverage |")
    print("|---|---|---|---|---|---|---|")
    for n in sorted({min(10, len(y)), min(20, len(y)), len(y)}):
        if n < 5:
            continue
        Z = np.asarray(X[:n], float)
        mean, std = Z.mean(0), Z.std(0)
        std[std == 0] = 1.0
        for kind in MODELS:
            m = cross_validate((Z - mean) / std, np.asarray(y[:n]), kind)
            print(f"| {kind} | {n} | {m['folds']}-fold | {m['spearman']:.3f} | "
                  f"{m['kendall']:.3f} | {m['mae']:.2f} | {100 * m['coverage90']:.0f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["pilot", "run", "export", "report"])
    parser.add_argument("--storage", default=DEFAULT_DB)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["mixers", "swaps"], default=None,
                        help="run: train only the token-mixer candidates, or only the paired "
                        "mixer swaps of the default space's candidates")
    args = parser.parse_args()
    {"pilot": pilot, "run": run, "export": export, "report": report}[args.part](args)


if __name__ == "__main__":
    main()
