"""The proxy catalogue: the built-in proxies registered (importing this module imports them),
looked up by name and computed together, sharing their passes. Above ``_base`` (the registry
and the shared passes) and the modules that register into it, so nothing imports in a cycle."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import torch
from torch import nn

from . import score, zero_cost  # noqa: F401  (they register the built-in proxies)
from ._base import _REGISTRY, Proxy, ProxyBatch, ProxyContext, registered
from .settings import ProxyError


def available_proxies() -> list[str]:
    return list(_REGISTRY)


def get_proxy(name: str) -> Proxy:
    return registered(name)


def compute_proxies(
    names: Iterable[str], model: nn.Module, batch: ProxyBatch, *, model_name: str = "",
    timings: dict[str, float] | None = None,
) -> dict[str, float]:
    """Score ``model`` with each proxy in ``names``, sharing passes between them.

    A failing forward or a NaN/inf score raises :class:`ProxyError` naming the model and the
    proxy; scores are never NaN. ``timings``, if given, receives seconds per proxy.
    """
    proxies = [get_proxy(n) for n in names]  # unknown names fail before any work
    label = model_name or type(model).__name__
    ctx = ProxyContext(model, batch)
    was_training = model.training
    scores: dict[str, float] = {}
    try:
        for proxy in proxies:
            torch.manual_seed(batch.seed)  # proxies that draw random numbers draw the same ones
            start = time.perf_counter()
            try:
                value = float(proxy.fn(ctx))
            except ProxyError:
                raise
            except Exception as exc:  # the model's own forward failed: name model and proxy
                raise ProxyError(
                    f"Proxy {proxy.name!r} failed on model {label!r}: {type(exc).__name__}: "
                    f"{exc}. Check that the model runs on inputs of shape "
                    f"{tuple(batch.inputs.shape)} and returns class logits."
                ) from exc
            if timings is not None:
                timings[proxy.name] = time.perf_counter() - start
            if not math.isfinite(value):
                raise ProxyError(
                    f"Proxy {proxy.name!r} gave a non-finite score ({value}) on model {label!r}; "
                    "it is reported as a failure, not stored. Try another seed or a smaller "
                    "input resolution."
                )
            scores[proxy.name] = value
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return scores


def compute_proxy(name: str, model: nn.Module, batch: ProxyBatch, *, model_name: str = "") -> float:
    """Score ``model`` with one proxy (see :func:`compute_proxies`)."""
    return compute_proxies([name], model, batch, model_name=model_name)[get_proxy(name).name]
