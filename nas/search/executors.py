"""Where evaluations run: in the driver process, or on Ray workers.

Both executors have the same small interface (``capacity``, ``submit``, ``wait``, ``close``), so
the driver's ask/tell loop does not care which one it has. Workers only compute; the driver
stores results, so a killed worker cannot corrupt the database.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from typing import Any

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


def start_ray(address: str | None, *, num_cpus: int, num_gpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address``, or start a local Ray with ``num_cpus`` (and
    ``num_gpus``); True when this call started or joined it (the caller shuts it down), False
    when Ray was already initialised in this process. Workers get one OpenMP/MKL thread each
    unless a task sets its own."""
    import ray

    if ray.is_initialized():
        return False
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING,
                              "runtime_env": {"env_vars": env}}
    if address is None:
        # "local": a new Ray of our own even when a `ray start` cluster runs here (plain
        # ray.init() would join that cluster and refuse num_cpus)
        address, kwargs["num_cpus"] = "local", num_cpus
        if num_gpus:
            kwargs["num_gpus"] = num_gpus
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SearchError(
            f"cannot start or reach Ray at {address or 'a local instance'}: {exc}; "
            "check --ray-address (e.g. ray://host:10001 or host:6379), or omit it to "
            "start a local Ray"
        ) from exc
    return True


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a Ray address nothing listens on (ray.init would retry for minutes)."""
    if address in ("auto", "local"):
        return
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SearchError(f"--ray-address {address!r} is not HOST:PORT or ray://HOST:PORT; e.g. "
                          "ray://head:10001 (Ray Client) or head:6379 (GCS), or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise SearchError(f"cannot reach Ray at {address!r} ({exc.strerror or exc}) within "
                          f"{timeout_s:g} s; check that the cluster runs (`ray status` on its "
                          "head) and the address, or omit --ray-address to start a local Ray"
                          ) from None


def make_executor(settings: EvaluationSettings, *, workers: int,
                  ray_address: str | None = None) -> InlineExecutor | RayExecutor:
    """The executor for validated options (``study.check_run_options`` checks them, and the
    Ray address's reachability, once per run)."""
    if workers == 0:
        return InlineExecutor(settings)
    return RayExecutor(settings, workers=workers, address=ray_address)
