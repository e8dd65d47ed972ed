"""Training-free accuracy proxies: a registry, the proxies, and the combined accuracy score.

Settings and errors import without torch; everything else loads on first use (PEP 562), so
that read-only commands (``swiftnas studies``, ``pareto``) start without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .settings import (
    DEFAULT_SCORE_WEIGHTS,
    DEFAULT_SETTINGS,
    LEGACY_SCORE_WEIGHTS,
    PREVIOUS_SCORE_WEIGHTS,
    ProxyError,
    ProxySettings,
    describe_score,
)

_LAZY = {
    "Proxy": "_base", "ProxyBatch": "_base", "ProxyContext": "_base",
    "available_proxies": "catalog", "compute_proxies": "catalog", "compute_proxy": "catalog",
    "get_proxy": "catalog", "register_proxy": "_base",
    "score_arch": "candidates", "score_model": "candidates",
    "DEFAULT_SCORE": "score", "LogLinearScore": "score",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module(f"{__name__}.catalog")  # registers the built-in proxies
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_SCORE",
    "DEFAULT_SCORE_WEIGHTS",
    "DEFAULT_SETTINGS",
    "LEGACY_SCORE_WEIGHTS",
    "PREVIOUS_SCORE_WEIGHTS",
    "LogLinearScore",
    "Proxy",
    "ProxyBatch",
    "ProxyContext",
    "ProxyError",
    "ProxySettings",
    "available_proxies",
    "compute_proxies",
    "compute_proxy",
    "describe_score",
    "get_proxy",
    "register_proxy",
    "score_arch",
    "score_model",
]
