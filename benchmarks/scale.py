"""Large studies: reading them (`studies`, `pareto`) and the search driver's ceiling.

    python -m benchmarks.scale create --trials 10000 [--storage URL] [--synthetic]
    python -m benchmarks.scale read [--storage ...]
    python -m benchmarks.scale driver --storage URL --sizes 100,1000 [--measure 200]
    python -m benchmarks.scale drivers --storage URL --drivers 1,2,4 [--measure 100]
    python -m benchmarks.scale ask --storage URL --sampler nsga2,tpe,random
    python -m benchmarks.scale workers --storage URL --workers 2 --seconds 0.05,0.2,1
    python -m benchmarks.scale optuna-loop --storage (URL | journal:PATH) --sizes 100,1000

``create`` runs a real 8-trial study, then adds trials through Optuna's own ``add_trials`` until
the study holds ``--trials``: each a freshly sampled architecture (its parameters and record)
with the record, flat metrics and constraint of a real trial and jittered objectives, so the rows
are what a long search writes (``--synthetic``: a study of the synthetic evaluator, which the
driver benchmarks below run on).
``driver``, ``drivers``: the search driver's ceiling, with the torch-free synthetic evaluator
(``StudySpec.synthetic_seed``), so every evaluation is instant and what remains is the driver's
own work: ask, sampling, suggests, locks, heartbeats, the evaluation cache, attributes, tell.
``read`` times the two commands as fresh processes (3 runs each; median), start-up included.
"""

from __future__ import annotations

import argparse
import copy
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nas.search import StudySpec

DEFAULT_STORAGE = "sqlite:///" + str(Path(__file__).parent / "work" / "scale.db")
STUDY = "scale"


def _spec(sampler: str = "random", seed: int | None = 0, *,
          synthetic: bool = True) -> StudySpec:
    """The benchmark study's options (synthetic evaluations unless ``synthetic`` is off)."""
    from nas.search import StudySpec

    return StudySpec(name=STUDY, latency_budget_ms=1.2, sampler=sampler, seed=seed,
                     synthetic_seed=0 if synthetic else None)


def create(storage: str, trials: int, synthetic: bool = False) -> None:
    import optuna
    from optuna.trial import TrialState, create_trial

    from nas.search import SEARCH_SPACE, run_study
    from search_spaces.space import RandomSuggester

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sqlite = storage.startswith("sqlite:///")
    target = Path(storage.removeprefix("sqlite:///") if sqlite else "scale.db")
    if sqlite:
        target.parent.mkdir(parents=True, exist_ok=True)
    # built on a RAM disk (one commit per added trial costs an fsync on disk), then copied
    work = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    url = f"sqlite:///{work / target.name}"
    run_study(_spec(synthetic=synthetic), url, 8)
    study = optuna.load_study(study_name=STUDY, storage=url)
    templates = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    space, suggester = SEARCH_SPACE, RandomSuggester(seed=0)
    rng = random.Random(0)
    t0 = time.perf_counter()
    batch = []
    for i in range(trials - len(templates)):
        t = templates[i % len(templates)]
        suggester.params = {}
        arch = space.sample(suggester)  # a fresh architecture per trial, as a long search has
        acc = t.values[0] * rng.uniform(0.9, 1.1)
        lat = t.values[1] * rng.uniform(0.7, 1.3)
        attrs = copy.deepcopy(t.user_attrs)
        attrs["swiftnas"]["arch"] = arch.to_dict()
        attrs["swiftnas"]["latency_ms"] = attrs["latency_ms"] = lat
        attrs["swiftnas"]["proxy_scores"]["score"] = attrs["proxy_score"] = acc
        batch.append(create_trial(
            state=TrialState.COMPLETE, values=[acc, lat], params=dict(suggester.params),
            distributions={k: t.distributions[k] for k in suggester.params}, user_attrs=attrs,
            system_attrs={"constraints": (lat - 1.2,)}))
        if len(batch) == 500:
            study.add_trials(batch)
            batch = []
            print(f"\r{i + 1 + len(templates)} trials", end="", file=sys.stderr)
    study.add_trials(batch)
    if sqlite:
        shutil.copyfile(work / target.name, target)
    else:  # a server: Optuna's own copy, trial by trial
        from nas.search.study import optuna_storage

        optuna_storage(storage)  # Optuna's tables with swiftnas's engine settings
        optuna.copy_study(from_study_name=STUDY, from_storage=url, to_storage=storage)
    shutil.rmtree(work)
    print(f"\ncreated {trials} trials in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def read(storage: str) -> None:
    exe = shutil.which("swiftnas", path=str(Path(sys.executable).parent))
    assert exe
    for cmd in (["studies", "--storage", storage],
                ["pareto", "--study", STUDY, "--storage", storage]):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([exe, *cmd], capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
        print(f"swiftnas {cmd[0]}: median {statistics.median(times):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})")


def driver(storage: str, sizes: list[int], measure: int, sampler: str) -> list[dict[str, float]]:
    """Trials/s of the driver (synthetic evaluations) on ``storage`` when the study already holds
    each of ``sizes`` trials: grow the study to the size, then time ``measure`` more trials.
    A study that already holds more trials (a copy of the 10,000-trial study) starts there."""
    import optuna

    from nas.search import run_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = _spec(sampler)
    out = []
    for size in sizes:
        run_study(spec, storage, size)  # grow (no-op when the study holds enough)
        have = optuna.load_study(study_name=STUDY, storage=storage).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        done: list[float] = []
        t0 = time.perf_counter()
        run_study(spec, storage, len(have) + measure,
                  on_progress=lambda _, done=done: done.append(time.perf_counter()))
        # start-up (open the study, count it, the sampler's first full read) until the first
        # trial is told, then the steady rate over the remaining trials
        startup = done[0] - t0
        rate = (len(done) - 1) / (done[-1] - done[0])
        out.append({"trials_in_study": len(have), "startup_s": startup, "trials_per_s": rate})
        print(f"{sampler} at {len(have)} trials: start-up {startup:.1f} s, then {rate:.1f} "
              f"trials/s ({1000 / rate:.0f} ms per trial)", flush=True)
    return out


def drivers(storage: str, counts: list[int], measure: int) -> None:
    """Aggregate trials/s of N drivers (separate processes) on one study, synthetic evaluations.
    The rate is taken over the middle 80% of the new trials' completion times, which leaves out
    the processes' start-up and the tail where the last driver finishes alone."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for n in counts:
        subprocess.run([sys.executable, __file__, "driver-one", "--storage", storage,
                        "--trials", "50"], check=True)  # the study exists and is warm
        study = optuna.load_study(study_name=STUDY, storage=storage)
        before = {t.number for t in study.get_trials(deepcopy=False)}
        target = len([t for t in study.get_trials(deepcopy=False)
                      if t.state == optuna.trial.TrialState.COMPLETE]) + n * measure
        procs = [subprocess.Popen([sys.executable, __file__, "driver-one", "--storage", storage,
                                   "--trials", str(target)]) for _ in range(n)]
        if any(p.wait() != 0 for p in procs):
            raise SystemExit("a driver failed")
        done = sorted(t.datetime_complete for t in optuna.load_study(
            study_name=STUDY, storage=storage).get_trials(deepcopy=False)
            if t.number not in before and t.state == optuna.trial.TrialState.COMPLETE)
        lo, hi = int(0.1 * len(done)), int(0.9 * len(done)) - 1
        rate = (hi - lo) / (done[hi] - done[lo]).total_seconds()
        print(f"{n} driver(s): {len(done)} trials, {rate:.1f} trials/s together", flush=True)


def ask_times(storage: str, samplers: list[str], asks: int = 20) -> None:
    """Median time of one ``study.ask()`` plus sampling the architecture, per sampler, on the
    study as it is (each asked trial is then told FAIL: the benchmark study gains failed trials)."""
    import optuna

    from nas.search import StudySpec
    from nas.search.sampling import make_sampler
    from nas.search.spec import SEARCH_SPACE
    from nas.search.study import optuna_storage
    from nas.search.trial_cache import OrderedCachedStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in samplers:  # the driver's storage and sampler
        study = optuna.load_study(study_name=STUDY,
                                  storage=OrderedCachedStorage(optuna_storage(storage)),
                                  sampler=make_sampler(StudySpec("x", 1.2, sampler=name), 0))
        n = len(study.get_trials(deepcopy=False))
        times = []
        for _ in range(asks):
            t0 = time.perf_counter()
            trial = study.ask()
            SEARCH_SPACE.sample(trial)
            times.append(time.perf_counter() - t0)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        print(f"{name}: ask + sample at {n} trials: median {1000 * statistics.median(times):.0f}"
              f" ms (first {1000 * times[0]:.0f} ms)", flush=True)


def worker_idle(storage: str, workers: int, durations: list[float], measure: int) -> None:
    """Idle share of each Ray worker when evaluations take a fixed ``durations`` seconds: the
    real driver and RayExecutor, with the workers' evaluation replaced by a sleep (so the cores
    stay free for the driver) that reports its process id and start and end times. A worker is
    idle when it waits for the driver's next task; the window runs from the first task's start to
    the last task's end, without the first and last 10% of the tasks."""
    import dataclasses
    import os
    import zlib

    import optuna

    import nas.search.executors as executors
    from nas.search import StudySpec, run_study
    from nas.search.evaluation import evaluate_arch
    from nas.search.study import prepare_settings
    from search_spaces import ArchConfig, get_preset

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    template = evaluate_arch(get_preset("xs"), prepare_settings(StudySpec("t", 1.2)))
    for seconds in durations:
        def sleepy(arch_json: str, settings: object, seconds: float = seconds,
                   template: object = template) -> object:
            t0 = time.time()
            time.sleep(seconds)
            u = zlib.crc32(arch_json.encode()) / 2**32
            return dataclasses.replace(  # type: ignore[type-var]
                template, arch=ArchConfig.from_json(arch_json), latency_ms=0.5 + 1.5 * u,
                proxy_scores={**template.proxy_scores,  # type: ignore[attr-defined]
                              "score": 10 + 5 * u, "_pid": os.getpid(), "_t0": t0,
                              "_t1": time.time()})

        executors.worker_evaluate = sleepy  # type: ignore[assignment]
        runs: list[dict[str, float]] = []
        name = f"idle-{workers}w-{seconds:g}s"
        run_study(StudySpec(name=name, latency_budget_ms=1.2, seed=0), storage, measure,
                  workers=workers, on_evaluation=lambda ev, runs=runs: runs.append(
                      ev.proxy_scores))
        # the middle 80% of the run: Ray's start-up and the tail where the last tasks finish
        # (the study reaches its trial count) are not what the driver's pace decides
        starts, ends = sorted(r["_t0"] for r in runs), sorted(r["_t1"] for r in runs)
        start, end = starts[len(runs) // 10], ends[-1 - len(runs) // 10]
        busy: dict[float, float] = {}
        for r in runs:
            overlap = max(0.0, min(r["_t1"], end) - max(r["_t0"], start))
            busy[r["_pid"]] = busy.get(r["_pid"], 0.0) + overlap
        idle = [100 * (1 - b / (end - start)) for b in busy.values()]
        print(f"{workers} workers, {seconds:g} s evaluations, {len(runs)} tasks: idle per "
              f"worker {', '.join(f'{i:.1f}%' for i in sorted(idle))}; "
              f"{len(runs) / (end - start):.1f} evaluations/s", flush=True)


def optuna_loop(storage: str, sizes: list[int], measure: int) -> None:
    """Optuna alone, no swiftnas code: ask, the 20 categorical suggests, one attribute, the
    constraint and tell per trial, NSGA-II, instant objectives. What each storage itself costs
    per trial: an Optuna URL (RDB), or ``journal:PATH`` (Optuna's ``JournalStorage`` on a file)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from nas.search.spec import SEARCH_SPACE

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend: object = (JournalStorage(JournalFileBackend(storage.removeprefix("journal:")))
                       if storage.startswith("journal:") else storage)
    study = optuna.create_study(study_name="loop", storage=backend,  # type: ignore[arg-type]
                                directions=["maximize", "minimize"], load_if_exists=True,
                                sampler=optuna.samplers.NSGAIISampler(seed=0))

    def one() -> None:
        trial = study.ask()
        arch = SEARCH_SPACE.sample(trial)
        acc, lat = float(sum(s.width for s in arch.stages)), arch.resolution / 200
        trial.set_user_attr("swiftnas", {"arch": arch.to_dict(), "latency_ms": lat})
        study._storage.set_trial_system_attr(trial._trial_id, "constraints", [lat - 1.2])
        study.tell(trial, [acc, lat])

    for size in sizes:
        while len(study.get_trials(deepcopy=False)) < size:
            one()
        t0 = time.perf_counter()
        for _ in range(measure):
            one()
        rate = measure / (time.perf_counter() - t0)
        print(f"Optuna alone on {storage.split(':')[0]} at {size} trials: {rate:.1f} trials/s "
              f"({1000 / rate:.0f} ms per trial)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["create", "read", "driver", "drivers", "driver-one",
                                         "ask", "optuna-loop", "workers"])
    parser.add_argument("--storage", default=DEFAULT_STORAGE)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--sizes", default="100,1000", help="driver: study sizes to time at")
    parser.add_argument("--measure", type=int, default=200, help="driver: trials timed per size")
    parser.add_argument("--sampler", default="nsga2")
    parser.add_argument("--synthetic", action="store_true",
                        help="create: a synthetic-evaluator study (for driver, drivers)")
    parser.add_argument("--drivers", default="1,2,4", help="drivers: processes per run")
    parser.add_argument("--workers", type=int, default=2, help="workers: Ray workers")
    parser.add_argument("--seconds", default="0.05,0.2,1",
                        help="workers: evaluation durations to time")
    args = parser.parse_args()
    if args.part == "create":
        create(args.storage, args.trials, args.synthetic)
    elif args.part == "read":
        read(args.storage)
    elif args.part == "drivers":
        drivers(args.storage, [int(x) for x in args.drivers.split(",")], args.measure)
    elif args.part == "driver-one":  # one driver process of `drivers`
        import optuna

        from nas.search import run_study

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        run_study(_spec(args.sampler, seed=None), args.storage, args.trials)
    elif args.part == "driver":
        driver(args.storage, [int(x) for x in args.sizes.split(",")], args.measure, args.sampler)
    elif args.part == "workers":
        worker_idle(args.storage, args.workers, [float(x) for x in args.seconds.split(",")],
                    args.measure)
    elif args.part == "optuna-loop":
        optuna_loop(args.storage, [int(x) for x in args.sizes.split(",")], args.measure)
    else:
        ask_times(args.storage, args.sampler.split(","))


if __name__ == "__main__":
    main()
