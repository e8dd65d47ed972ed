"""Validating proxies against trained accuracies: Spearman and Kendall over a benchmark.

A benchmark is a list of :class:`ModelSpec` (how to build the network, its input and its trained
accuracy). Two sources ship: NAS-Bench-Macro (:func:`nas_bench_macro_specs`) and any user JSONL
file of timm models (:func:`jsonl_specs`).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .. import nas_bench_macro as nbm
from ._base import ProxyBatch, ProxyError
from .catalog import compute_proxies, get_proxy


@dataclass(frozen=True)
class ModelSpec:
    """A picklable recipe for one benchmark network (so evaluation can run in worker processes)."""

    name: str
    source: str  # "nas-bench-macro" | "timm" | "swiftnas" (name is ArchConfig JSON)
    accuracy: float
    input_size: tuple[int, int, int]
    num_classes: int
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        if self.source == "nas-bench-macro":
            return nbm.build_network(self.name)
        if self.source == "swiftnas":
            from search_spaces import ArchConfig, build_model

            return build_model(ArchConfig.from_json(self.name), num_classes=self.num_classes)
        from search_spaces import create_timm_model

        return create_timm_model(self.name, num_classes=self.num_classes, **self.model_kwargs)


def nas_bench_macro_specs(
    *, sample: int | None = None, seed: int = 0, path: str | Path | None = None,
) -> list[ModelSpec]:
    """Distinct NAS-Bench-Macro networks (all 3,969, or a seeded sample of them)."""
    entries = list(nbm.distinct(nbm.load(path)).values())
    if sample is not None and sample < len(entries):
        entries = random.Random(seed).sample(entries, sample)
    return [
        ModelSpec(e.code, "nas-bench-macro", e.mean_acc, nbm.INPUT_SIZE, nbm.NUM_CLASSES)
        for e in entries
    ]


def jsonl_specs(path: str | Path) -> list[ModelSpec]:
    """Specs from a JSONL file of ``{"timm_model", "model_kwargs", "input_size", "num_classes",
    "accuracy"}`` lines. Errors name the line and the field."""
    path = Path(path)
    if not path.is_file():
        raise ProxyError(f"Benchmark file {str(path)!r} does not exist. Pass a JSONL file or "
                         "'nas-bench-macro'.")
    specs = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProxyError(f"{where} is not valid JSON ({exc.msg}). Write one JSON object per "
                             "line.") from None
        missing = {"timm_model", "accuracy"} - set(row)
        if missing:
            raise ProxyError(f"{where} is missing {sorted(missing)}. Each line needs timm_model "
                             "and accuracy; model_kwargs, input_size, num_classes are optional.")
        accuracy = row["accuracy"]
        if isinstance(accuracy, bool) or not isinstance(accuracy, int | float) or not math.isfinite(
            accuracy
        ):
            raise ProxyError(f"{where}: `accuracy` must be a number, but got {accuracy!r}.")
        size = row.get("input_size", [3, 224, 224])
        if not (isinstance(size, list) and len(size) == 3 and all(
            isinstance(v, int) and v > 0 for v in size
        )):
            raise ProxyError(f"{where}: `input_size` must be [C, H, W] positive integers, but got "
                             f"{size!r}.")
        specs.append(ModelSpec(
            name=str(row["timm_model"]), source="timm", accuracy=float(accuracy),
            input_size=(size[0], size[1], size[2]), num_classes=int(row.get("num_classes", 1000)),
            model_kwargs=dict(row.get("model_kwargs") or {}),
        ))
    if len(specs) < 3:
        raise ProxyError(f"{path.name} has {len(specs)} models; rank correlations need at least "
                         "3.")
    return specs


@dataclass
class EvaluationRow:
    name: str
    accuracy: float
    scores: dict[str, float]
    seconds: dict[str, float]
    errors: dict[str, str]


def score_spec(
    spec: ModelSpec, proxies: Sequence[str], batch_size: int, seed: int
) -> EvaluationRow:
    """All ``proxies`` on one network; a failing proxy is recorded, not raised."""
    import torch

    torch.manual_seed(seed)
    model = spec.build()
    batch = ProxyBatch.gaussian(
        input_size=spec.input_size, num_classes=spec.num_classes, batch_size=batch_size, seed=seed
    )
    scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    try:
        scores = compute_proxies(proxies, model, batch, model_name=spec.name, timings=seconds)
    except ProxyError:  # retry one by one so one failing proxy does not hide the others
        for name in proxies:
            timing: dict[str, float] = {}
            try:
                scores.update(compute_proxies([name], model, batch, model_name=spec.name,
                                              timings=timing))
                seconds.update(timing)
            except ProxyError as exc:
                errors[name] = str(exc)
    return EvaluationRow(spec.name, spec.accuracy, scores, seconds, errors)


def _worker(args: tuple[ModelSpec, Sequence[str], int, int]) -> EvaluationRow:
    import torch

    torch.set_num_threads(1)
    return score_spec(*args)


def run_evaluation(
    specs: Sequence[ModelSpec], proxies: Sequence[str], *, batch_size: int = 64, seed: int = 0,
    workers: int = 1, on_row: Callable[[EvaluationRow], None] | None = None,
) -> list[EvaluationRow]:
    """Score every spec; ``workers > 1`` uses that many processes (one torch thread each)."""
    proxies = [get_proxy(p).name for p in proxies]
    jobs = [(s, proxies, batch_size, seed) for s in specs]
    rows: list[EvaluationRow] = []
    if workers <= 1:
        for job in jobs:
            rows.append(score_spec(*job))
            if on_row:
                on_row(rows[-1])
        return rows
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        for row in pool.imap(_worker, jobs, chunksize=4):
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


@dataclass(frozen=True)
class ProxyQuality:
    proxy: str
    n: int  # networks with a finite score
    failures: int
    spearman: float
    kendall: float
    seconds_per_network: float


def summarise(rows: Sequence[EvaluationRow], proxies: Sequence[str]) -> list[ProxyQuality]:
    from scipy.stats import kendalltau, spearmanr

    out = []
    for name in (get_proxy(p).name for p in proxies):
        ok = [r for r in rows if name in r.scores]
        scores = [r.scores[name] for r in ok]
        accs = [r.accuracy for r in ok]
        rho = float(spearmanr(scores, accs)[0]) if len(ok) >= 3 else float("nan")
        tau = float(kendalltau(scores, accs)[0]) if len(ok) >= 3 else float("nan")
        secs = sum(r.seconds.get(name, 0.0) for r in ok) / max(len(ok), 1)
        out.append(ProxyQuality(name, len(ok), len(rows) - len(ok), rho, tau, secs))
    return out

