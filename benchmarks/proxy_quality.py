"""Reproduce the proxy-quality numbers in the README.

    python -m benchmarks.proxy_quality reference   # 300 reference networks: each proxy vs accuracy
                                                   # and vs the reference scores, network by network
    python -m benchmarks.proxy_quality full        # all 3,969 distinct NAS-Bench-Macro networks:
                                                   # default score vs the free baselines
    python -m benchmarks.proxy_quality rescore     # after the default score's weights change:
                                                   # its column and numbers from stored proxies
    python -m benchmarks.proxy_quality swiftformer # 100 SwiftFormer candidates: rank fidelity of
                                                   # each proxy at 64/96/128 px vs 224 px, speed
    python -m benchmarks.proxy_quality speed       # default score of SwiftFormer-XS, one core
    python -m benchmarks.proxy_quality report      # markdown tables of the stored results

Each part writes ``benchmarks/results/proxy_<part>.json`` and prints a table. Ground truth comes
from ``shared/data/proxy/``; nothing here is tuned on the numbers it reports except where said
(the default score's one weight was fitted on the 300 reference networks; ``full`` reports it on
the 3,669 networks outside them as well as on all 3,969).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent.parent

from nas import nas_bench_macro as nbm  # noqa: E402
from nas.proxies.evaluate import (  # noqa: E402
    ModelSpec,
    nas_bench_macro_specs,
    run_evaluation,
    summarise,
)

RESULTS = ROOT / "benchmarks" / "results"
REFERENCE_CSV = nbm.default_data_path().parent / "nbm_proxy_scores_300.csv"
REFERENCE_PROXIES = {"naswot": "naswot", "swap": "swap", "grad_norm": "grad_norm",
                     "synflow": "synflow", "meco": "meco", "act_units": "relu_units"}
FULL_PROXIES = ["score", "swap", "naswot", "grad_norm", "synflow", "act_units", "depth", "params",
                "macs"]


def _progress(total: int):  # type: ignore[no-untyped-def]
    start, done = time.perf_counter(), [0]

    def on_row(_row) -> None:  # type: ignore[no-untyped-def]
        done[0] += 1
        if done[0] % 25 == 0 or done[0] == total:
            rate = done[0] / (time.perf_counter() - start)
            print(f"  {done[0]}/{total} networks, {rate:.2f}/s", file=sys.stderr, flush=True)

    return on_row


def _write(part: str, data: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"proxy_{part}.json"
    path.write_text(json.dumps(data, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")


def part_reference(args: argparse.Namespace) -> None:
    rows = list(csv.DictReader(REFERENCE_CSV.open()))[:: args.every]
    specs = [ModelSpec(r["arch"], "nas-bench-macro", float(r["mean_acc"]), nbm.INPUT_SIZE,
                       nbm.NUM_CLASSES) for r in rows]
    proxies = args.proxies or [*REFERENCE_PROXIES, "score"]
    result: dict = {"networks": len(rows)}
    for seed in args.seeds:
        evaluated = run_evaluation(specs, proxies, batch_size=64, seed=seed, workers=args.workers,
                                   on_row=_progress(len(specs)))
        by_name = {r.name: r for r in evaluated}
        for q in summarise(evaluated, proxies):
            entry: dict = {"spearman_vs_accuracy": q.spearman, "kendall_vs_accuracy": q.kendall,
                           "seconds_per_network": q.seconds_per_network, "failures": q.failures}
            if q.proxy in REFERENCE_PROXIES:
                ref_col = REFERENCE_PROXIES[q.proxy]
                ref_col = f"{ref_col}_s{seed}" if f"{ref_col}_s{seed}" in rows[0] else ref_col
                ours = [by_name[r["arch"]].scores[q.proxy] for r in rows]
                ref = [float(r[ref_col]) for r in rows]
                acc = [float(r["mean_acc"]) for r in rows]
                entry["reference_spearman_vs_accuracy"] = float(spearmanr(ref, acc)[0])
                entry["spearman_vs_reference_scores"] = float(spearmanr(ours, ref)[0])
            result.setdefault(f"seed{seed}", {})[q.proxy] = entry
    print(f"{'proxy':<10} {'seed':>4} {'rho(acc)':>9} {'ref rho':>8} {'rho(ref)':>9} {'s/net':>7}")
    for seed_key, per_proxy in result.items():
        if not seed_key.startswith("seed"):
            continue
        for name, e in per_proxy.items():
            print(f"{name:<10} {seed_key[4:]:>4} {e['spearman_vs_accuracy']:>9.3f} "
                  f"{e.get('reference_spearman_vs_accuracy', float('nan')):>8.3f} "
                  f"{e.get('spearman_vs_reference_scores', float('nan')):>9.3f} "
                  f"{e['seconds_per_network']:>7.3f}")
    _write("reference" + (f"_{'_'.join(proxies)}" if args.proxies else ""), result)


def part_full(args: argparse.Namespace) -> None:
    specs = nas_bench_macro_specs(sample=args.sample, seed=0)
    reference = {r["arch"] for r in csv.DictReader(REFERENCE_CSV.open())}
    print(f"scoring {len(specs)} distinct networks with {FULL_PROXIES}", file=sys.stderr)
    rows = run_evaluation(specs, FULL_PROXIES, batch_size=64, seed=0, workers=args.workers,
                          on_row=_progress(len(specs)))
    held_out = [r for r in rows if r.name not in reference]
    result = {"networks": len(rows), "held_out_networks": len(held_out), "proxies": {}}
    print(f"{'proxy':<10} {'rho all':>8} {'tau all':>8} {'rho held-out':>13} {'fail':>5}")
    for q_all, q_out in zip(summarise(rows, FULL_PROXIES), summarise(held_out, FULL_PROXIES),
                            strict=True):
        result["proxies"][q_all.proxy] = {
            "spearman": q_all.spearman, "kendall": q_all.kendall,
            "spearman_held_out": q_out.spearman, "kendall_held_out": q_out.kendall,
            "failures": q_all.failures, "seconds_per_network": q_all.seconds_per_network,
        }
        print(f"{q_all.proxy:<10} {q_all.spearman:>8.3f} {q_all.kendall:>8.3f} "
              f"{q_out.spearman:>13.3f} {q_all.failures:>5}")
    scores_path = RESULTS / "proxy_full_scores.csv"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with scores_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["code", "mean_acc", *FULL_PROXIES])
        for r in rows:
            writer.writerow([r.name, r.accuracy, *(r.scores.get(p, "") for p in FULL_PROXIES)])
    _write("full", result)


def part_rescore(args: argparse.Namespace) -> None:
    """The default score is a function of proxies the full run stores per network: after its
    weights change, recompute its column and its correlations from those (exact; no network
    is rebuilt). Its seconds per network stay those of the run."""
    from scipy.stats import kendalltau

    from nas.proxies import DEFAULT_SCORE

    scores_path = RESULTS / "proxy_full_scores.csv"
    with scores_path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["score"] = repr(DEFAULT_SCORE.combine({k: float(r[k]) for k in DEFAULT_SCORE.weights}))
    with scores_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    reference = {r["arch"] for r in csv.DictReader(REFERENCE_CSV.open())}
    full = json.loads((RESULTS / "proxy_full.json").read_text())
    entry = full["proxies"]["score"]
    for suffix, subset in (("", rows), ("_held_out", [r for r in rows
                                                        if r["code"] not in reference])):
        x = [float(r["score"]) for r in subset]
        y = [float(r["mean_acc"]) for r in subset]
        entry[f"spearman{suffix}"] = float(spearmanr(x, y)[0])
        entry[f"kendall{suffix}"] = float(kendalltau(x, y)[0])
    entry["weights"] = dict(DEFAULT_SCORE.weights)
    _write("full", full)
    print(f"score {dict(DEFAULT_SCORE.weights)}: Spearman {entry['spearman']:.3f} "
          f"({entry['spearman_held_out']:.3f} held out)")


def _swiftformer_scores(archs, proxies, resolution, batch_size, seed):  # type: ignore[no-untyped-def]
    import torch

    from nas.proxies import ProxyBatch, compute_proxies
    from search_spaces import build_model

    out = {p: [] for p in proxies}
    seconds = []
    for arch in archs:
        torch.manual_seed(seed)
        model = build_model(arch)
        batch = ProxyBatch.gaussian(input_size=(3, resolution, resolution), num_classes=1000,
                                    batch_size=batch_size, seed=seed)
        start = time.perf_counter()
        scores = compute_proxies(proxies, model, batch, model_name=arch.key())
        seconds.append(time.perf_counter() - start)
        for p in proxies:
            out[p].append(scores[p])
        if len(seconds) % 20 == 0:
            print(f"    {len(seconds)}/{len(archs)}", file=sys.stderr, flush=True)
    return out, float(np.mean(seconds))


def part_swiftformer(args: argparse.Namespace) -> None:
    import torch

    from search_spaces import SwiftFormerSpace

    torch.set_num_threads(1)
    proxies = ["score", "swap", "naswot", "grad_norm", "synflow", "act_units"]
    archs = SwiftFormerSpace().sample_random(args.candidates, seed=0)
    settings = [(224, args.batch_size), (64, 32), (96, 32), (128, 32)]
    scores, seconds = {}, {}
    for resolution, batch_size in settings:
        print(f"  {len(archs)} candidates at {resolution} px, batch {batch_size}", file=sys.stderr,
              flush=True)
        scores[(resolution, batch_size)], seconds[(resolution, batch_size)] = _swiftformer_scores(
            archs, proxies, resolution, batch_size, seed=0)
    base_key = settings[0]
    result = {"candidates": len(archs), "reference_setting": {"resolution": base_key[0],
              "batch_size": base_key[1]}, "settings": []}
    print(f"{'res':>4} {'batch':>5} {'s/cand':>7} {'speed-up':>8}  " +
          " ".join(f"{p:>9}" for p in proxies))
    for key in settings:
        fidelity = {p: float(spearmanr(scores[key][p], scores[base_key][p])[0]) for p in proxies}
        speedup = seconds[base_key] / seconds[key]
        result["settings"].append({"resolution": key[0], "batch_size": key[1],
                                   "seconds_per_candidate": seconds[key], "speedup": speedup,
                                   "rank_fidelity_spearman": fidelity})
        print(f"{key[0]:>4} {key[1]:>5} {seconds[key]:>7.3f} {speedup:>8.1f}  " +
              " ".join(f"{fidelity[p]:>9.3f}" for p in proxies))
    _write("swiftformer", result)


def part_speed(args: argparse.Namespace) -> None:
    import torch

    from nas.proxies import DEFAULT_SETTINGS, score_arch
    from search_spaces import PRESETS

    torch.set_num_threads(1)
    score_arch(PRESETS["xs"])  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        score_arch(PRESETS["xs"])
        times.append(time.perf_counter() - start)
    result = {"model": "swiftformer_xs", "settings": DEFAULT_SETTINGS.__dict__,
              "median_seconds": float(np.median(times)), "runs": times}
    print(f"default score of SwiftFormer-XS ({DEFAULT_SETTINGS}): median "
          f"{result['median_seconds']:.3f} s on one core")
    _write("speed", result)


def part_report(args: argparse.Namespace) -> None:
    """Markdown tables of the stored results (what the README shows)."""
    def load(name: str) -> dict | None:
        path = RESULTS / f"proxy_{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    ref = load("reference") or load("reference_naswot_swap_synflow_grad_norm_act_units_score")
    if ref:
        print(f"On the {ref.get('networks', 300)} reference networks (seed 0, batch 64, 32 px):\n")
        print("| proxy | Spearman vs accuracy | reference Spearman | Spearman vs reference "
              "scores | s / network |")
        print("|---|---|---|---|---|")
        for name, e in ref["seed0"].items():
            print(f"| {name} | {e['spearman_vs_accuracy']:.3f} | "
                  f"{e.get('reference_spearman_vs_accuracy', float('nan')):.3f} | "
                  f"{e.get('spearman_vs_reference_scores', float('nan')):.3f} | "
                  f"{e['seconds_per_network']:.3f} |")
    scores_csv = RESULTS / "proxy_full_scores.csv"
    if not ref and scores_csv.exists():
        # The full run scores the 300 reference networks too (same seed, batch, input).
        ours = {r["code"]: r for r in csv.DictReader(scores_csv.open())}
        rows = [r for r in csv.DictReader(REFERENCE_CSV.open()) if r["arch"] in ours]
        acc = [float(r["mean_acc"]) for r in rows]
        print(f"On the {len(rows)} reference networks (seed 0, batch 64, 32 px), taken from the "
              "full run:\n")
        print("| proxy | Spearman vs accuracy | reference Spearman | Spearman vs reference "
              "scores |")
        print("|---|---|---|---|")
        for name in ["naswot", "swap", "synflow", "grad_norm", "act_units", "score"]:
            mine = [float(ours[r["arch"]][name]) for r in rows]
            line = f"| {name} | {spearmanr(mine, acc)[0]:.3f} |"
            col = REFERENCE_PROXIES.get(name)
            if col:
                col = f"{col}_s0" if f"{col}_s0" in rows[0] else col
                ref_scores = [float(r[col]) for r in rows]
                line += (f" {spearmanr(ref_scores, acc)[0]:.3f} |"
                         f" {spearmanr(mine, ref_scores)[0]:.3f} |")
            else:
                line += " - | - |"
            print(line)
    full = load("full")
    if full:
        print(f"\nOn all {full['networks']} distinct NAS-Bench-Macro networks "
              f"({full['held_out_networks']} of them outside the 300 used to fit the score):\n")
        print("| proxy | Spearman | Kendall | Spearman, held-out | failures |")
        print("|---|---|---|---|---|")
        for name, e in full["proxies"].items():
            print(f"| {name} | {e['spearman']:.3f} | {e['kendall']:.3f} | "
                  f"{e['spearman_held_out']:.3f} | {e['failures']} |")
    sf = load("swiftformer")
    if sf:
        names = list(sf["settings"][0]["rank_fidelity_spearman"])
        print(f"\nSwiftFormer space, {sf['candidates']} random candidates: Spearman of each "
              f"proxy's ranking vs the same proxy at {sf['reference_setting']['resolution']} px "
              f"(batch {sf['reference_setting']['batch_size']}):\n")
        print("| px | batch | s / candidate | speed-up | " + " | ".join(names) + " |")
        print("|---|---|---|---|" + "---|" * len(names))
        for s in sf["settings"]:
            print(f"| {s['resolution']} | {s['batch_size']} | {s['seconds_per_candidate']:.2f} | "
                  f"{s['speedup']:.1f}x | " + " | ".join(
                      f"{s['rank_fidelity_spearman'][n]:.3f}" for n in names) + " |")
    speed = load("speed")
    if speed:
        print(f"\nDefault score of SwiftFormer-XS at {speed['settings']['resolution']} px, batch "
              f"{speed['settings']['batch_size']}: median {speed['median_seconds']:.2f} s on one "
              "core.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["reference", "full", "rescore", "swiftformer", "speed",
                                         "report"])
    parser.add_argument("--workers", type=int, default=2, help="processes (one thread each)")
    parser.add_argument("--sample", type=int, default=None, help="full: score only N networks")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="reference: seeds")
    parser.add_argument("--proxies", nargs="+", default=None, help="reference: proxies")
    parser.add_argument("--every", type=int, default=1,
                        help="reference: use every k-th of the 300 networks")
    parser.add_argument("--candidates", type=int, default=100, help="swiftformer: candidates")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="swiftformer: batch at 224 px (16 saturates SWAP: 2^16 patterns)")
    args = parser.parse_args()
    {"reference": part_reference, "full": part_full, "rescore": part_rescore,
     "swiftformer": part_swiftformer,
     "speed": part_speed, "report": part_report}[args.part](args)


if __name__ == "__main__":
    main()
