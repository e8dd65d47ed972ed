"""Where evaluations run: in the driver process, or on Ray workers.

Both executors have the same small interface (``capacity``, ``submit``, ``wait``, ``close``), so
the driver's ask/tell loop does not care which one it has. Workers only compute; the driver
stores results, so a killed worker cannot corrupt the database.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from nas.evaluators.cluster import start_ray
from search_spaces import ArchConfig

from .evaluation import Evaluation, EvaluationSettings, evaluate_arch, worker_evaluate
from .spec import SearchError

Result = tuple[int, "Evaluation | BaseException"]


class InlineExecutor:
    """Evaluates in the driver process, one at a time (``--workers 0``; no Ray needed)."""

    capacity = 1

    def __init__(self, settings: EvaluationSettings) -> None:
        self.settings = settings
        self._queue: deque[tuple[int, ArchConfig]] = deque()
        self._next = 0

    def submit(self, arch: ArchConfig) -> int:
        self._next += 1
        self._queue.append((self._next, arch))
        return self._next

    def wait(self, timeout: float) -> list[Result]:
        if not self._queue:
            return []
        handle, arch = self._queue.popleft()
        try:
            return [(handle, evaluate_arch(arch, self.settings))]
        except Exception as exc:  # a candidate that fails to evaluate fails its trial only
            return [(handle, exc)]

    def close(self) -> None:
        self._queue.clear()


def queued_tasks(workers: int) -> int:
    """Tasks submitted beyond the ``workers`` running ones: one per four workers, at least one."""
    return max(1, workers // 4)


class RayExecutor:
    """Evaluates on ``workers`` Ray workers (a local Ray, or the cluster at ``address``).

    A task whose worker process dies is retried by Ray (``max_retries``) on another worker; only
    when the retries are used up does its trial fail.
    """

    def __init__(self, settings: EvaluationSettings, *, workers: int,
                 address: str | None = None, max_retries: int = 2) -> None:
        try:
            import ray
        except ImportError:
            raise SearchError(
                "--workers needs Ray, which is not installed; run "
                "`pip install -e '.[distributed]'`, or use --workers 0 to evaluate in this process"
            ) from None
        self._ray = ray
        # K evaluations running plus a small queue that Ray holds: a worker that finishes starts
        # the next task at once instead of waiting for the driver's tell, ask and submit
        self.capacity = workers + queued_tasks(workers)
        self._started = False
        self._started = start_ray(address, num_cpus=workers)
        self._remote = ray.remote(num_cpus=1, max_retries=max_retries)(worker_evaluate)
        self._settings_ref = ray.put(settings)
        self._handles: dict[Any, int] = {}
        self._next = 0

    def submit(self, arch: ArchConfig) -> int:
        self._next += 1
        ref = self._remote.remote(arch.to_json(indent=None), self._settings_ref)
        self._handles[ref] = self._next
        return self._next

    def wait(self, timeout: float) -> list[Result]:
        if not self._handles:
            return []
        ready, _ = self._ray.wait(list(self._handles), num_returns=1, timeout=timeout)
        out: list[Result] = []
        for ref in ready:
            handle = self._handles.pop(ref)
            try:
                out.append((handle, self._ray.get(ref)))
            except Exception as exc:  # RayTaskError (the evaluation raised), WorkerCrashedError
                out.append((handle, exc))
        return out

    def close(self) -> None:
        for ref in self._handles:
            self._ray.cancel(ref, force=True)
        self._handles.clear()
        if self._started:
            self._started = False
            self._ray.shutdown()


def make_executor(settings: EvaluationSettings, *, workers: int,
                  ray_address: str | None = None) -> InlineExecutor | RayExecutor:
    """The executor for validated options (``study.check_run_options`` checks them, and the
    Ray address's reachability, once per run)."""
    if workers == 0:
        return InlineExecutor(settings)
    return RayExecutor(settings, workers=workers, address=ray_address)
