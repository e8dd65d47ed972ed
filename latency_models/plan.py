"""Which architectures to measure on a new phone: ``swiftnas latency plan``.

A new device (or a new measurement protocol) is calibrated by a scale and an offset on top of
the shared per-operation costs, so its few measurements should (a) span the latency range the
user will search, which pins the scale and the offset apart, and (b) fall where the predictor is
least sure, which is where a measurement teaches it most. The rule, applied to a pool of
candidates (the SwiftFormer presets, the study's feasible front when given, and random samples
of the space):

1. predict every candidate's latency on a reference device (the named device when the predictor
   knows it, else :data:`~latency_models.defaults.DEFAULT_DEVICE`): the order of latencies
   carries over between phones, the scale is what the measurements will calibrate;
2. place ``n`` targets evenly over log predicted latency, from the fastest to the slowest
   candidate (both ends included);
3. for each target take, among the candidates within half a target spacing of it, the one with
   the widest 90% interval (ties: the closest); when none lies that close, the closest one.

The kit holds a Core ML package per chosen architecture, one ``manifest.json``, a
``measurements.csv`` that ``swiftnas latency import`` takes once ``latency_ms`` is filled in,
and ``MEASURE.md``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_spaces import ArchConfig, SwiftNASError
from search_spaces.text import command_hint, markdown_text

from .architectures import FeatureCache
from .predictor import LatencyPredictor, PredictorError


class PlanError(SwiftNASError, ValueError):
    """A measurement plan cannot be made as asked (the message says why and how to fix it)."""


@dataclass(frozen=True)
class PlanCandidate:
    label: str  # where it came from: "preset xs", "study s14 trial 7", "space sample 3"
    arch: ArchConfig | None  # None: a measured row the few-shot benchmark names by its label
    latency_ms: float = math.nan
    low_ms: float = math.nan
    high_ms: float = math.nan

    @property
    def key(self) -> str:
        return self.arch.key() if self.arch is not None else f"label:{self.label}"

    @property
    def log_width(self) -> float:
        """Width of the 90% interval in log space (how unsure the predictor is)."""
        return math.log(self.high_ms / self.low_ms)


def choose(candidates: Sequence[PlanCandidate], n: int) -> list[PlanCandidate]:
    """The module docstring's rule: ``n`` candidates spread over log latency, the least certain
    near each target. Deterministic for a given pool."""
    if n < 1:
        raise PlanError(f"--n must be at least 1, but got {n}")
    unique: dict[str, PlanCandidate] = {}
    for c in candidates:
        unique.setdefault(c.key, c)
    pool = sorted(unique.values(), key=lambda c: (c.latency_ms, c.key))
    if len(pool) < n:
        raise PlanError(f"only {len(pool)} distinct candidates for --n {n}; lower --n or raise "
                        "--pool")
    logs = [math.log(c.latency_ms) for c in pool]
    lo, hi = logs[0], logs[-1]
    targets = [(lo + hi) / 2] if n == 1 else [lo + i * (hi - lo) / (n - 1) for i in range(n)]
    half = (hi - lo) / (2 * max(n - 1, 1))
    chosen: list[int] = []
    for t in targets:
        free = [i for i in range(len(pool)) if i not in chosen]
        near = [i for i in free if abs(logs[i] - t) <= half]
        if near:
            # widths rounded: equal relative intervals (one group's) differ in the last bits,
            # and that noise must not outrank closeness to the target
            best = max(near, key=lambda i: (round(pool[i].log_width, 6), -abs(logs[i] - t)))
        else:
            best = min(free, key=lambda i: abs(logs[i] - t))
        chosen.append(best)
    return [pool[i] for i in sorted(chosen, key=lambda i: logs[i])]


def predict_pool(predictor: LatencyPredictor, candidates: Sequence[PlanCandidate],
                 reference_device: str, cache: FeatureCache,
                 on_progress: Callable[[int, int], None] | None = None) -> list[PlanCandidate]:
    out = []
    for i, c in enumerate(candidates):
        assert c.arch is not None  # the plan's pool is ArchConfigs
        p = predictor.predict(device=reference_device, model=c.arch, cache=cache)
        out.append(PlanCandidate(c.label, c.arch, p.latency_ms, p.low_ms, p.high_ms))
        if on_progress:
            on_progress(i + 1, len(candidates))
    return out


def reference_device(predictor: LatencyPredictor, device: str) -> str:
    """``device`` when the predictor is calibrated for it, else the default device."""
    from .defaults import DEFAULT_DEVICE

    try:
        predictor.resolve_group(device)
        return device
    except PredictorError:
        return DEFAULT_DEVICE


_MEASURE_MD = """# Measuring this kit on {device}

{n} Core ML packages (`packages/`), chosen by `swiftnas latency plan` to calibrate {device}:
they span the predicted latency range of the candidates and sit where the predictor is least
sure (see `manifest.json` for each one's prediction on {reference}).

For each package:

1. Open it in Xcode (15 or newer), select the **Performance** tab, connect {device} and create
   a report with **Compute Units: All** (the Neural Engine when it can).
2. Read the **median prediction time** after Xcode's warm-up runs (it runs each model several
   times; use at least 10 runs if you benchmark in your own app, batch 1, and discard the
   first).
3. Write it in milliseconds in the `latency_ms` column of that model's row in
   `measurements.csv`. Put your iOS version in `os` and a name for your protocol in `source`
   (e.g. `me-xcode-perf`); leave the other columns as they are.

Then:

```console
$ swiftnas latency import measurements.csv --storage sqlite:///swiftnas.db
$ swiftnas latency calibrate --storage sqlite:///swiftnas.db --out my_predictor.json
$ {predict}
```

`calibrate` (seconds) fits this phone's scale and offset and keeps the shared per-operation
costs; `swiftnas latency fit --storage ... --out ...` refits everything (minutes).

Weights are random: latency does not depend on them. Do not change a package's input size.
"""


def write_kit(chosen: Sequence[PlanCandidate], *, device: str, reference: str, out_dir: Path,
              verbose: bool = False,
              on_progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Write the measurement kit into ``out_dir`` (a new or empty folder), all or nothing."""
    from .coreml import export_coreml, measurement_row, write_measurement_rows

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PlanError(f"--out {str(out_dir)!r} exists and is not empty; choose a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        models: list[dict[str, Any]] = []
        rows = []
        for i, c in enumerate(chosen):
            if c.arch is None:
                raise PlanError(f"a kit holds swiftnas architectures; {c.label} is a timm model")
            name = f"m{i + 1:02d}_{c.arch.key()}"
            prediction = {"latency_ms": c.latency_ms, "low_ms": c.low_ms, "high_ms": c.high_ms,
                          "device": reference}
            export_coreml(out_dir=tmp / "packages", model=c.arch, name=name,
                          prediction=prediction, verbose=verbose, sidecars=False)
            models.append({"name": name, "package": f"packages/{name}.mlpackage",
                           "from": c.label, "arch_key": c.arch.key(), "arch": c.arch.to_dict(),
                           "predicted_on_reference": prediction})
            rows.append(measurement_row(name, model=c.arch, resolution=c.arch.resolution,
                                        device=device))
            if on_progress:
                on_progress(i + 1, len(chosen))
        manifest = {"device": device, "reference_device": reference, "n": len(chosen),
                    "rule": "spread over log predicted latency, widest interval near each "
                            "target (latency_models/plan.py)",
                    "input": "image (RGB, normalisation folded in)", "models": models}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        write_measurement_rows(tmp / "measurements.csv", rows)
        # the device is user text: Markdown-escaped in prose, one quoted word in the command
        (tmp / "MEASURE.md").write_text(_MEASURE_MD.format(
            device=markdown_text(device), n=len(chosen), reference=markdown_text(reference),
            predict=command_hint("latency", "predict", "--predictor", "my_predictor.json",
                                 "--arch", "xs", "--device", device)))
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(str(p.relative_to(out_dir)) for p in out_dir.iterdir())
