"""Build measured architectures (timm names or swiftnas ArchConfigs) and cache their features.

Features depend only on (architecture, resolution, feature-set version), so they are cached by
that key: in memory for a process, and in an optional JSON file that survives restarts (the fit
command uses one under the user's cache directory).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces import ArchConfig, SwiftNASError
from search_spaces.files import atomic_write_text
from search_spaces.ref import ModelLike, ModelRef

from .featureset import FEATURE_SET_VERSION, LatencyFeatures

if TYPE_CHECKING:
    from torch import nn

# torch and timm (seconds to import) load only when a model is built: a prediction from cached
# features (`swiftnas latency predict --arch xs`) needs neither.


class UnknownModelError(SwiftNASError, ValueError):
    """A timm name that timm 1.0.31 does not know."""


def _check_timm_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise UnknownModelError(
            f"unknown timm model {name!r}{hint}; use a name from `timm.list_models()`"
        )


def check_timm_names(rows: Iterable[Any]) -> None:
    """Every row's ``timm_name`` (when set) is a timm model; the first that is not raises,
    naming its row (``origin``)."""
    for m in rows:
        if m.timm_name:
            try:
                _check_timm_name(m.timm_name)
            except UnknownModelError as exc:
                raise UnknownModelError(f"{m.origin}: column 'timm_name': {exc}") from None


def default_resolution(timm_name: str) -> int:
    """The input side timm's default pretrained config uses for ``timm_name``."""
    import timm

    _check_timm_name(timm_name)
    cfg = timm.models.get_pretrained_cfg(timm_name)
    size = cfg.input_size if cfg is not None else (3, 224, 224)
    return int(size[-1])


def build_timm_for_latency(timm_name: str) -> nn.Module:
    """``timm_name`` with random weights in its deployed form (reparameterised where it can be).

    Built on ``meta`` (no memory, no init cost) when reparameterisation works there; models whose
    reparameterisation needs real tensors (MobileOne, FastViT, GhostNetV3) are built on CPU.
    """
    import timm
    import torch
    from timm.utils.model import reparameterize_model

    _check_timm_name(timm_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            model = timm.create_model(timm_name, pretrained=False)
        model.eval()
        try:
            return reparameterize_model(model)
        except RuntimeError:
            model = timm.create_model(timm_name, pretrained=False).eval()
            return reparameterize_model(model)


def build_arch_for_latency(arch: ArchConfig) -> nn.Module:
    import torch

    from search_spaces import build_model

    # only shapes matter here: timm's truncated-normal init on meta tensors went through
    # torch's reference decompositions and was half of a candidate's feature extraction
    with torch.device("meta"):
        return build_model(arch, init_weights=False).eval()


def build_for_latency(ref: ModelRef) -> nn.Module:
    """``ref`` in its deployed form on the meta device, for feature extraction."""
    if ref.arch is not None:
        return build_arch_for_latency(ref.arch)
    return build_timm_for_latency(ref.timm_name)


class FeatureCache:
    """Features by (architecture key, resolution); thread-safe; optionally backed by a JSON file."""

    def __init__(self, path: str | Path | None = None, *,
                 preload: str | Path | None = None) -> None:
        """``path``: this cache's own file (read, and written by ``save``); ``preload``: a
        read-only file whose features are used too (the shipped calibration features)."""
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._items: dict[str, LatencyFeatures] = {}
        self._dirty = False
        for source in (preload, self.path):
            if source is not None and Path(source).exists():
                self._items.update(self._read(Path(source)))

    @staticmethod
    def _read(path: Path) -> dict[str, LatencyFeatures]:
        try:
            data = json.loads(path.read_text())
            if data.get("version") != FEATURE_SET_VERSION:
                return {}
            return {k: LatencyFeatures.from_dict(v) for k, v in data["items"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # a damaged cache is only a slower start: rebuild it

    def __len__(self) -> int:
        return len(self._items)

    def get(self, model: ModelLike, resolution: int | None = None) -> LatencyFeatures:
        """The features of ``model`` at ``resolution`` (default: its own)."""
        ref = ModelRef.of(model)
        if resolution is None:
            resolution = (ref.arch.resolution if ref.arch is not None
                          else default_resolution(ref.timm_name))
        if ref.arch is not None and resolution != ref.arch.resolution:
            ref = ModelRef(arch=dataclasses.replace(ref.arch, resolution=resolution))
        # the cache file's key (its format predates ModelRef): arch:KEY or timm:NAME
        key = f"{'arch:' if ref.arch is not None else ''}{ref.key}@{resolution}"
        with self._lock:
            hit = self._items.get(key)
        if hit is not None:
            return hit
        from .features import extract_features, extract_swiftformer_features

        extract = extract_swiftformer_features if ref.arch is not None else extract_features
        features = extract(build_for_latency(ref), resolution, name=ref.name)
        with self._lock:
            self._items[key] = features
            self._dirty = True
        return features

    def save(self) -> None:
        """Write the cache file atomically (write to a temp file, then rename)."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            data = {"version": FEATURE_SET_VERSION,
                    "items": {k: v.to_dict() for k, v in self._items.items()}}
            self._dirty = False
        atomic_write_text(self.path, json.dumps(data))


def user_cache_dir() -> Path:
    base = os.environ.get("SWIFTNAS_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "swiftnas" if base else Path.home() / ".cache" / "swiftnas"
