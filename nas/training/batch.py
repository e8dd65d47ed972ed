"""``swiftnas train-batch``: train several of a study's candidates at once as Ray tasks.

Workers only train (into their own output folder, checkpointing every epoch); the driver alone
writes to storage, so a killed worker cannot corrupt it. Ray retries a task whose worker died
(``max_retries``), and the retry resumes from the task's last checkpoint. A batch run again is
resumable too: finished candidates are cache hits, unfinished ones continue from their
checkpoints. On a cluster, ``--out`` must be a folder every node sees (a shared filesystem) for
retries to resume rather than restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.storage import Storage

from .data import load_data
from .errors import TrainingError
from .recipe import TrainRecipe
from .results import TrainedResult, experiment_identity, find_result, record_training
from .trainer import TrainResult, TrainTarget, train, versions


@dataclass(frozen=True)
class BatchJob:
    label: str  # e.g. "trial_17"
    arch_json: str


def _train_task(arch_json: str, data_spec: str, recipe: dict[str, Any], out: str,
                device: str, threads: int) -> tuple[TrainResult, str, str]:
    """A Ray task: train one candidate, resuming from ``out``; no storage access."""
    import torch

    from search_spaces import ArchConfig

    torch.set_num_threads(threads)
    rec = TrainRecipe(**recipe)
    data = load_data(data_spec, rec.resolution, train_subset=rec.train_subset,
                     val_subset=rec.val_subset)
    target = TrainTarget(arch=ArchConfig.from_json(arch_json))
    ident = experiment_identity(target.key, data.name, data.digest, rec)
    result = train(target, data, rec, Path(out), device=device, identity=ident)
    return result, data.name, data.digest


def parse_trials(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        numbers = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise TrainingError(f"--trials must be comma-separated trial numbers, e.g. 3,17,42, "
                            f"but got {text[:80]!r}") from None
    if not numbers or any(n < 0 for n in numbers):
        raise TrainingError(f"--trials must name trial numbers >= 0, but got {text[:80]!r}")
    return list(dict.fromkeys(numbers))


def run_batch(jobs: list[BatchJob], data_spec: str, recipe: TrainRecipe, out: Path, *,
              store: Storage, workers: int, ray_address: str | None = None,
              force: bool = False, max_retries: int = 2,
              on_done: Callable[[BatchJob, TrainedResult, bool], None] | None = None,
              ) -> list[TrainedResult]:
    """Train ``jobs`` on ``workers`` Ray workers; results are stored as they arrive."""
    if workers < 1:
        raise TrainingError(f"--workers must be >= 1, but got {workers}")
    if ray_address is not None:
        from nas.evaluators.cluster import check_reachable

        check_reachable(ray_address)
    try:
        import ray
    except ImportError:
        raise TrainingError("train-batch needs Ray: `pip install -e '.[distributed]'`") from None
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    # validated here, in the driver: a bad --data fails before any worker starts
    data = load_data(data_spec, recipe.resolution, train_subset=recipe.train_subset,
                     val_subset=recipe.val_subset)
    done: list[TrainedResult] = []
    todo: list[BatchJob] = []
    from search_spaces import ArchConfig

    for job in jobs:
        ident = experiment_identity(ArchConfig.from_json(job.arch_json).key(), data.name,
                                    data.digest, recipe)
        hit = None if force else find_result(store, **ident)
        if hit is not None:
            done.append(hit)
            if on_done:
                on_done(job, hit, True)
        else:
            todo.append(job)
    if not todo:
        return done
    out.mkdir(parents=True, exist_ok=True)
    from nas.evaluators.cluster import start_ray

    started = start_ray(ray_address, num_cpus=os.cpu_count() or 1,
                        num_gpus=torch.cuda.device_count() if cuda else None)
    try:
        threads = max(1, (os.cpu_count() or 1) // workers) if ray_address is None else 1
        # one GPU per task with CUDA; otherwise a set of CPU threads per task
        remote = ray.remote(num_gpus=1 if cuda else 0, num_cpus=1 if cuda else threads,
                            max_retries=max_retries)(_train_task)
        recipe_dict = {k: v for k, v in recipe.to_dict().items() if k != "version"}
        pending: dict[Any, BatchJob] = {}
        queue = list(todo)
        failures: list[str] = []
        while queue or pending:
            while queue and len(pending) < workers:
                job = queue.pop(0)
                ref = remote.remote(job.arch_json, data_spec, recipe_dict,
                                    str(out / job.label), device, threads)
                pending[ref] = job
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    result, name, digest = ray.get(ref)
                except Exception as exc:  # retries used up, or training raised: go on
                    failures.append(f"{job.label}: {' '.join(str(exc).split())[-300:]}")
                    continue
                ident = experiment_identity(ArchConfig.from_json(job.arch_json).key(), name,
                                            digest, recipe)
                stored = record_training(store, ident, arch_json=job.arch_json,
                                         outcome=result, recipe=recipe,
                                         origin=str((out / job.label).resolve()),
                                         versions=versions())
                done.append(stored)
                if on_done:
                    on_done(job, stored, False)
        if failures:
            raise TrainingError(f"{len(failures)} of {len(todo)} trainings failed (first: "
                                f"{failures[0]}); the others are stored; rerun to retry")
    finally:
        if started:
            ray.shutdown()
    return done
