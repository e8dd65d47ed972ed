"""Reading a large study: how long `swiftnas studies` and `swiftnas pareto` take.

    python benchmarks/scale.py create --trials 10000 [--storage sqlite:///bench_scale.db]
    python benchmarks/scale.py read [--storage ...]

``create`` runs a real 8-trial study, then adds copies of its trials with jittered objectives
through Optuna's own ``add_trials`` (so the rows are what a long search writes: parameters, the
``swiftnas`` record, the flat metrics and the constraint) until the study holds ``--trials``.
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
import time
from pathlib import Path

DEFAULT_STORAGE = "sqlite:///" + str(Path(__file__).parent / "work" / "scale.db")
STUDY = "scale"


def create(storage: str, trials: int) -> None:
    import optuna
    from optuna.trial import TrialState, create_trial

    from nas.search import StudySpec, run_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    run_study(StudySpec(name=STUDY, latency_budget_ms=1.2, sampler="random", seed=0), storage, 8)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    templates = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    rng = random.Random(0)
    t0 = time.perf_counter()
    batch = []
    for i in range(trials - len(templates)):
        t = templates[i % len(templates)]
        acc = t.values[0] * rng.uniform(0.9, 1.1)
        lat = t.values[1] * rng.uniform(0.7, 1.3)
        attrs = copy.deepcopy(t.user_attrs)
        attrs["swiftnas"]["latency_ms"] = attrs["latency_ms"] = lat
        attrs["swiftnas"]["proxy_scores"]["score"] = attrs["proxy_score"] = acc
        batch.append(create_trial(
            state=TrialState.COMPLETE, values=[acc, lat], params=t.params,
            distributions=t.distributions, user_attrs=attrs,
            system_attrs={"constraints": (lat - 1.2,)}))
        if len(batch) == 500:
            study.add_trials(batch)
            batch = []
            print(f"\r{i + 1 + len(templates)} trials", end="", file=sys.stderr)
    study.add_trials(batch)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["create", "read"])
    parser.add_argument("--storage", default=DEFAULT_STORAGE)
    parser.add_argument("--trials", type=int, default=10_000)
    args = parser.parse_args()
    create(args.storage, args.trials) if args.part == "create" else read(args.storage)


if __name__ == "__main__":
    main()
