"""What a candidate is: architectures, the SwiftFormer search space and the model builder.

Architectures, presets, errors and the space are light and imported at once. The model builder
and statistics need torch and timm (seconds to import), so they load on first use (PEP 562
``__getattr__``): ``swiftnas --help`` and every error path of the CLI import this package.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._torchvision_compat import ensure_torchvision_importable
from .arch import ArchConfig, StageConfig
from .errors import InvalidArchError, SearchSpaceError, SwiftNASError, UnknownPresetError
from .presets import PRESETS, TIMM_NAMES, get_preset
from .ref import ModelLike, ModelRef
from .space import RandomSuggester, StageChoices, SwiftFormerSpace, attention_indices

if TYPE_CHECKING:
    from .model import SwiftFormerNAS, build_model, create_timm_model, example_input
    from .stats import ArchStats, arch_stats, count_macs

_LAZY = {
    "SwiftFormerNAS": "model", "build_model": "model", "create_timm_model": "model",
    "example_input": "model", "ArchStats": "stats", "arch_stats": "stats",
    "count_macs": "stats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "TIMM_NAMES",
    "ArchConfig",
    "ArchStats",
    "InvalidArchError",
    "ModelLike",
    "ModelRef",
    "RandomSuggester",
    "SearchSpaceError",
    "StageChoices",
    "StageConfig",
    "SwiftFormerNAS",
    "SwiftFormerSpace",
    "SwiftNASError",
    "UnknownPresetError",
    "arch_stats",
    "attention_indices",
    "build_model",
    "count_macs",
    "create_timm_model",
    "ensure_torchvision_importable",
    "example_input",
    "get_preset",
]
