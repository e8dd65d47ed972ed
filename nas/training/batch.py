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


class TrainingTasks:
    """Trainings as Ray tasks (``_train_task``: workers train, only the caller writes to
    storage). Checks the address and that Ray is installed when made; starts (or joins) Ray
    with the first task. With CUDA one GPU per task, otherwise an equal share of the CPU
    threads. A task whose worker died is retried ``max_retries`` times and resumes from its
    checkpoint."""

    def __init__(self, data_spec: str, recipe: TrainRecipe, *, workers: int,
                 ray_address: str | None = None, max_retries: int = 2) -> None:
        if ray_address is not None:
            from nas.evaluators.cluster import check_reachable

            check_reachable(ray_address)
        try:
            import ray
        except ImportError:
            raise TrainingError("training on Ray workers needs Ray: `pip install -e "
                                "'.[distributed]'`") from None
        import torch

        self._ray, self._address, self._retries = ray, ray_address, max_retries
        self.cuda = torch.cuda.is_available()
        self.device = "cuda" if self.cuda else "cpu"
        self._gpus = torch.cuda.device_count() if self.cuda else None
        self.threads = max(1, (os.cpu_count() or 1) // workers) if ray_address is None else 1
        self._data = data_spec
        self._recipe = {k: v for k, v in recipe.to_dict().items() if k != "version"}
        self._remote: Any = None
        self._started = False

    def submit(self, arch_json: str, out: Path) -> Any:
        """Start one training into ``out`` (resuming its checkpoint); returns its Ray ref."""
        if self._remote is None:
            from nas.evaluators.cluster import start_ray

            self._started = start_ray(self._address, num_cpus=os.cpu_count() or 1,
                                      num_gpus=self._gpus)
            self._remote = self._ray.remote(
                num_gpus=1 if self.cuda else 0, num_cpus=1 if self.cuda else self.threads,
                max_retries=self._retries)(_train_task)
        return self._remote.remote(arch_json, self._data, self._recipe, str(out), self.device,
                                   self.threads)

    def wait_one(self, refs: list[Any]) -> Any:
        """The first of ``refs`` to finish."""
        return self._ray.wait(refs, num_returns=1)[0][0]

    def result(self, ref: Any) -> tuple[TrainResult, str, str]:
        """(result, dataset name, dataset digest); raises what the task raised."""
        return self._ray.get(ref)

    def close(self) -> None:
        if self._started:
            self._started = False
            self._ray.shutdown()


def run_batch(jobs: list[BatchJob], data_spec: str, recipe: TrainRecipe, out: Path, *,
              store: Storage, workers: int, ray_address: str | None = None,
              force: bool = False, max_retries: int = 2,
              on_done: Callable[[BatchJob, TrainedResult, bool], None] | None = None,
              ) -> list[TrainedResult]:
    """Train ``jobs`` on ``workers`` Ray workers; results are stored as they arrive."""
    if workers < 1:
        raise TrainingError(f"--workers must be >= 1, but got {workers}")
    tasks = TrainingTasks(data_spec, recipe, workers=workers, ray_address=ray_address,
                          max_retries=max_retries)
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
    try:
        pending: dict[Any, BatchJob] = {}
        queue = list(todo)
        failures: list[str] = []
        while queue or pending:
            while queue and len(pending) < workers:
                job = queue.pop(0)
                pending[tasks.submit(job.arch_json, out / job.label)] = job
            ref = tasks.wait_one(list(pending))
            job = pending.pop(ref)
            try:
                result, name, digest = tasks.result(ref)
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
        tasks.close()
    return done
