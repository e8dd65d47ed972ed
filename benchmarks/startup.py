"""Start-up time of the command line, as a user meets it.

    python -m benchmarks.startup            # measure, write results/startup.json, print a table
    python -m benchmarks.startup --runs 9

Each command runs ``--runs`` times as a fresh process (the installed ``swiftnas`` console
script); the table gives the median and the maximum wall time. Targets (issue "Fit the
ecosystem"): ``--help``, ``--version`` and every ``<group> --help`` under 0.5 s; ``latency predict
--arch xs --device "iPhone 14"`` under 5 s. Run it on an idle machine: a busy one measures the
other job.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "startup.json"
GROUPS = ["space", "proxy", "latency", "db", "accuracy"]
COMMANDS: list[tuple[list[str], float]] = [
    (["--help"], 0.5),
    (["--version"], 0.5),
    *[([group, "--help"], 0.5) for group in GROUPS],
    (["search", "--help"], 0.5),
    (["latency", "predict", "--arch", "xs", "--device", "iPhone 14"], 5.0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    exe = shutil.which("swiftnas", path=str(Path(sys.executable).parent))
    if exe is None:
        sys.exit("the swiftnas console script is not installed beside this Python")
    rows = []
    for cmd, target in COMMANDS:
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run([exe, *cmd], capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
        rows.append({"command": "swiftnas " + " ".join(cmd), "median_s": statistics.median(times),
                     "max_s": max(times), "target_s": target,
                     "met": max(times) < target})
        r = rows[-1]
        print(f"{r['command']:<60} median {r['median_s']:.2f} s  max {r['max_s']:.2f} s  "
              f"(target < {target:g} s: {'yes' if r['met'] else 'NO'})", flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": args.runs, "measured_at": time.strftime("%Y-%m-%d"),
                                   "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
