"""Training-free accuracy proxies: a registry, the proxies, and the combined accuracy score."""

from . import score, zero_cost  # noqa: F401  (register the proxies)
from ._base import (
    Proxy,
    ProxyBatch,
    ProxyContext,
    ProxyError,
    available_proxies,
    compute_proxies,
    compute_proxy,
    get_proxy,
    register_proxy,
)
from .candidates import DEFAULT_SETTINGS, ProxySettings, score_arch, score_model
from .score import DEFAULT_SCORE, LogLinearScore

__all__ = [
    "DEFAULT_SCORE",
    "DEFAULT_SETTINGS",
    "LogLinearScore",
    "Proxy",
    "ProxyBatch",
    "ProxyContext",
    "ProxyError",
    "ProxySettings",
    "available_proxies",
    "compute_proxies",
    "compute_proxy",
    "get_proxy",
    "register_proxy",
    "score_arch",
    "score_model",
]
