"""Search quality and throughput of `swiftnas search` with the shipped proxy and predictor.

    python -m benchmarks.search quality [--trials 300] [--seeds 0 1 2] [--jobs 2]
                                        [--population-size 50]
        NSGA-II vs random at equal trials on iPhone 14 (budget 2.5 ms, so every preset is
        reachable): for each seed, does a feasible trial dominate XS/S/L1/L3 (higher accuracy
        score at no greater predicted latency)? Hypervolume of the feasible front, mean over
        seeds. Studies run as separate processes (one torch thread each), one SQLite file each.
    python -m benchmarks.search throughput [--trials 40]
        Trials per minute with evaluation in the driver (--workers 0) and on 1 and 2 Ray
        workers, each on an empty storage (no cache hits), and the framework overhead: the part
        of the steady-state wall time x workers not spent in proxy and predictor code.
    python -m benchmarks.search demo [--trials 150] [--seeds 0 1 2 3 4] [--jobs 2]
        `make demo`'s study (iPhone 14, budget 1.2 ms, NSGA-II population 10, starting from the
        presets) per seed: after how many trials a trial first dominates each preset that fits
        the budget. The median is what `swiftnas search` quotes when no preset is dominated yet
        (nas/search/study.py: DEMO_TRIALS_TO_DOMINATE).
    python -m benchmarks.search report
        Print results/search.json as Markdown tables.

Hypervolume: 2-D area dominated by the feasible front, bounded by the reference point (score
12.0, below every score seen in these studies (lowest 12.26); latency = the budget); larger is
better. ``--folder`` reuses the studies in a folder (complete studies are not re-run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "search.json"
DEVICE = "iPhone 14"
BUDGET_MS = 2.5
SAMPLERS = ("nsga2", "random")
REF_SCORE = 12.0


def _load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _save(key: str, value: object) -> None:
    data = _load()
    data[key] = value
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` (score up, latency down) inside the reference box."""
    from nas.search import nondominated

    pts = [p for p in points if p[0] > ref[0] and p[1] < ref[1]]
    front = sorted((pts[i] for i in nondominated(pts)), key=lambda p: p[1])
    # Along the front, score rises with latency: between one point's latency and the next's,
    # the best score reachable is that point's.
    area = 0.0
    for i, (score, lat) in enumerate(front):
        next_lat = front[i + 1][1] if i + 1 < len(front) else ref[1]
        area += (score - ref[0]) * (next_lat - lat)
    return area


def _one_study(sampler: str, seed: int, trials: int, folder: str, population: int,
               budget_ms: float = BUDGET_MS, presets: bool = False) -> None:
    """Run in a child process: one study, one torch thread. Sampler comparisons start from
    the sampler alone (no presets queued), so that both samplers start alike."""
    import torch

    torch.set_num_threads(1)
    from nas.search import StudySpec, run_study

    url = f"sqlite:///{folder}/{sampler}_{seed}.db"
    spec = StudySpec(name=f"{sampler}-{seed}", latency_budget_ms=budget_ms, device=DEVICE,
                     sampler=sampler, seed=seed, population_size=population,
                     start_from_presets=presets)
    t0 = time.perf_counter()
    p = run_study(spec, url, trials)
    print(json.dumps({"sampler": sampler, "seed": seed, "seconds": time.perf_counter() - t0,
                      "evaluated": p.evaluated, "cache_hits": p.cache_hits}), flush=True)


def _run_studies(runs: list[tuple[str, int]], trials: int, folder: str, population: int,
                 jobs: int, *, budget_ms: float = BUDGET_MS, presets: bool = False) -> float:
    """Run each (sampler, seed) study as a child process, ``jobs`` at a time; wall seconds."""
    runs = list(runs)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs: list[subprocess.Popen] = []
    t0 = time.perf_counter()
    while runs or procs:
        while runs and len(procs) < jobs:
            sampler, seed = runs.pop(0)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "benchmarks.search", "_one", sampler, str(seed),
                 str(trials), folder, str(population), str(budget_ms), str(int(presets))],
                env=env))
            print(f"started {sampler} seed {seed}", flush=True)
        for p in list(procs):
            if p.poll() is not None:
                procs.remove(p)
                if p.returncode:
                    raise SystemExit(f"a study failed (exit {p.returncode})")
        time.sleep(2)
    return time.perf_counter() - t0


def _folder(folder: str | None) -> str:
    folder = folder or tempfile.mkdtemp(prefix="swiftnas-bench-", dir="/dev/shm" if Path(
        "/dev/shm").is_dir() else None)
    Path(folder).mkdir(parents=True, exist_ok=True)
    print(f"studies in {folder}", flush=True)
    return folder


def quality(trials: int, seeds: list[int], jobs: int, population: int,
            samplers: list[str], folder: str | None) -> None:
    import optuna

    from nas.search import load_study, pareto_front, reference_candidates, study_candidates

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = _folder(folder)
    wall = _run_studies([(s, seed) for seed in seeds for s in samplers], trials, folder,
                        population, jobs)

    studies = {}
    for seed in seeds:
        for sampler in samplers:
            loaded = load_study(f"sqlite:///{folder}/{sampler}_{seed}.db", f"{sampler}-{seed}")
            studies[(sampler, seed)] = (loaded, study_candidates(loaded.study),
                                        reference_candidates(loaded))
    ref = (REF_SCORE, BUDGET_MS)
    per_run = []
    for (sampler, seed), (_, cands, refs) in studies.items():
        front = pareto_front(cands, references=refs)
        dominated = sorted({r for c in front for r in c.dominates})
        per_run.append({
            "sampler": sampler, "seed": seed, "trials": len(cands),
            "distinct": len({c.arch.key() for c in cands}),
            "feasible": sum(c.feasible for c in cands), "front": len(front),
            "presets_dominated": dominated,
            "hypervolume": hypervolume([c.point for c in cands if c.feasible], ref),
            "best_per_preset": {
                r.name: max((c.accuracy_score - r.accuracy_score for c in front
                             if c.latency_ms <= r.latency_ms), default=None)
                for r in refs
            },
        })
        print(per_run[-1], flush=True)
    summary = {}
    for sampler in samplers:
        rows = [r for r in per_run if r["sampler"] == sampler]
        hv = [r["hypervolume"] for r in rows]
        summary[sampler] = {
            "hypervolume_mean": statistics.mean(hv),
            "hypervolume_std": statistics.stdev(hv) if len(hv) > 1 else 0.0,
            "seeds_dominating_all_presets": sum(len(r["presets_dominated"]) == 4 for r in rows),
        }
    refs = next(iter(studies.values()))[2]
    _save("quality" if population == 50 else f"quality_pop{population}", {
        "trials": trials, "seeds": seeds, "population_size": population, "device": DEVICE,
        "budget_ms": BUDGET_MS,
        "reference_point": ref, "wall_seconds": wall, "jobs": jobs,
        "presets": {r.name: {"score": r.accuracy_score, "latency_ms": r.latency_ms}
                    for r in refs},
        "runs": per_run, "summary": summary,
    })
    print(json.dumps(summary, indent=2))


DEMO_BUDGET_MS = 1.2  # the Makefile's `make demo`


def demo(trials: int, seeds: list[int], jobs: int, folder: str | None) -> None:
    """After how many trials `make demo`'s study first dominates each preset in its budget."""
    import optuna

    from nas.search import load_study, reference_candidates, study_candidates
    from nas.search.pareto import dominates

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = _folder(folder)
    wall = _run_studies([("nsga2", seed) for seed in seeds], trials, folder, 10, jobs,
                        budget_ms=DEMO_BUDGET_MS, presets=True)
    runs = []
    for seed in seeds:
        loaded = load_study(f"sqlite:///{folder}/nsga2_{seed}.db", f"nsga2-{seed}")
        cands = sorted(study_candidates(loaded.study), key=lambda c: c.trial)
        refs = [r for r in reference_candidates(loaded) if r.latency_ms <= DEMO_BUDGET_MS]
        first = {r.name: next((c.trial + 1 for c in cands
                               if c.feasible and dominates(c.point, r.point)), None)
                 for r in refs}
        runs.append({"seed": seed, "trials": len(cands), "first_dominated_after": first})
        print(runs[-1], flush=True)
    names = list(runs[0]["first_dominated_after"])
    medians = {}
    for n in names:
        # a seed that never dominated counts as more than the trials run
        reached = [r["first_dominated_after"][n] or trials + 1 for r in runs]
        medians[n] = statistics.median(reached)
    _save("demo", {"trials": trials, "seeds": seeds, "budget_ms": DEMO_BUDGET_MS,
                   "device": DEVICE, "population_size": 10, "wall_seconds": wall,
                   "runs": runs, "median_trials_to_dominate": medians})
    print(json.dumps(medians, indent=2))


def throughput(trials: int) -> None:
    import torch

    from nas.search import StudySpec, run_study

    torch.set_num_threads(1)  # the in-process case matches a Ray worker: one thread
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    rows = []
    for workers in (0, 1, 2):
        folder = tempfile.mkdtemp(prefix="swiftnas-tp-", dir="/dev/shm")
        spec = StudySpec(name=f"tp-{workers}", latency_budget_ms=BUDGET_MS, seed=123,
                         population_size=20, start_from_presets=False)
        stamps: list[tuple[float, float]] = []  # (time, proxy + predictor seconds)

        def record(ev, stamps=stamps) -> None:
            stamps.append((time.perf_counter(), ev.proxy_seconds + ev.latency_seconds))

        t0 = time.perf_counter()
        p = run_study(spec, f"sqlite:///{folder}/tp.db", trials, workers=workers,
                      on_evaluation=record)
        wall = time.perf_counter() - t0
        k = max(workers, 1)
        # Steady state: from the K-th result on (Ray start-up and worker imports excluded).
        steady = stamps[k - 1:]
        span = steady[-1][0] - steady[0][0]
        busy = sum(s for _, s in steady[1:])
        row = {
            "workers": workers, "trials": p.completed_this_run, "evaluated": p.evaluated,
            "wall_seconds": wall, "trials_per_minute_total": 60 * p.completed_this_run / wall,
            "trials_per_minute_steady": 60 * (len(steady) - 1) / span,
            "mean_eval_seconds": statistics.mean(s for _, s in stamps),
            "overhead_fraction": 1 - busy / (span * k),
        }
        rows.append(row)
        print(row, flush=True)
    _save("throughput", {"cpu_count": os.cpu_count(), "rows": rows})


def report() -> None:
    data = _load()
    for key in sorted(k for k in data if k.startswith("quality")):
        q = data[key]
        print(f"Search quality: {q['trials']} trials, seeds {q['seeds']}, {q['device']}, budget "
              f"{q['budget_ms']} ms, NSGA-II population {q.get('population_size', 50)}\n")
        print("| sampler | seed | feasible | front | presets dominated | hypervolume |")
        print("|---|---|---|---|---|---|")
        for r in q["runs"]:
            dominated = ", ".join(n.removeprefix("SwiftFormer-") for n in r["presets_dominated"])
            print(f"| {r['sampler']} | {r['seed']} | {r['feasible']} | {r['front']} | "
                  f"{dominated or '-'} | {r['hypervolume']:.4f} |")
        for s, m in q["summary"].items():
            print(f"\n{s}: hypervolume {m['hypervolume_mean']:.4f} ± {m['hypervolume_std']:.4f}"
                  f", seeds dominating all four presets: {m['seeds_dominating_all_presets']}")
    t = data.get("throughput")
    if t:
        print(f"\nThroughput ({t['cpu_count']} cores):\n")
        print("| workers | trials/min (steady) | trials/min (incl. start-up) | "
              "eval s/trial | overhead |")
        print("|---|---|---|---|---|")
        for r in t["rows"]:
            print(f"| {r['workers']} | {r['trials_per_minute_steady']:.1f} | "
                  f"{r['trials_per_minute_total']:.1f} | {r['mean_eval_seconds']:.2f} | "
                  f"{100 * r['overhead_fraction']:.1f}% |")


def main() -> None:
    import search_spaces  # noqa: F401  (before timm)

    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        _one_study(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5],
                   int(sys.argv[6]), float(sys.argv[7]), bool(int(sys.argv[8])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("quality", "demo", "throughput", "report"))
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--population-size", type=int, default=50, help="NSGA-II")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--folder", default=None, help="reuse the studies in this folder")
    args = parser.parse_args()
    if args.part == "quality":
        quality(args.trials or 300, args.seeds, args.jobs, args.population_size, args.samplers,
                args.folder)
    elif args.part == "demo":
        demo(args.trials or 150, args.seeds if args.seeds != [0, 1, 2] else [0, 1, 2, 3, 4],
             args.jobs, args.folder)
    elif args.part == "throughput":
        throughput(args.trials or 40)
    else:
        report()


if __name__ == "__main__":
    main()
