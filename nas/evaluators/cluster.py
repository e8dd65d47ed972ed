"""Where evaluations and trainings run: joining or starting Ray (search workers, training
tasks), and failing fast on an address nothing listens on."""

from __future__ import annotations

import logging
import socket
from typing import Any

from search_spaces.errors import SwiftNASError


class ClusterError(SwiftNASError, ValueError):
    """Ray cannot be started or reached (one line on the command line, exit 2)."""


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
        raise ClusterError(
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
        raise ClusterError(f"--ray-address {address!r} is not HOST:PORT or ray://HOST:PORT; e.g. "
                          "ray://head:10001 (Ray Client) or head:6379 (GCS), or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach Ray at {address!r} ({exc.strerror or exc}) within "
                          f"{timeout_s:g} s; check that the cluster runs (`ray status` on its "
                          "head) and the address, or omit --ray-address to start a local Ray"
                          ) from None
