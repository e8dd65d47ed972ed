"""The published SwiftFormer variants as :class:`ArchConfig` constants.

Values are those of timm's ``swiftformer_xs/s/l1/l3`` entrypoints (``timm/models/swiftformer.py``):
MLP ratio 4 everywhere, attention in the last block of every stage, 224 px input.
"""

from __future__ import annotations

from .arch import ArchConfig
from .errors import UnknownPresetError

PRESETS: dict[str, ArchConfig] = {
    "xs": ArchConfig.from_lists(depths=[3, 3, 6, 4], widths=[48, 56, 112, 220]),
    "s": ArchConfig.from_lists(depths=[3, 3, 9, 6], widths=[48, 64, 168, 224]),
    "l1": ArchConfig.from_lists(depths=[4, 3, 10, 5], widths=[48, 96, 192, 384]),
    "l3": ArchConfig.from_lists(depths=[4, 4, 12, 6], widths=[64, 128, 320, 512]),
}

#: timm model name of each preset, for parity checks and reference rows.
TIMM_NAMES: dict[str, str] = {name: f"swiftformer_{name}" for name in PRESETS}


def get_preset(name: str) -> ArchConfig:
    """The preset called ``name`` (case-insensitive; ``swiftformer_xs`` works too)."""
    normalised = name.lower().removeprefix("swiftformer_").removeprefix("swiftformer-")
    try:
        return PRESETS[normalised]
    except KeyError:
        raise UnknownPresetError(
            f"Unknown preset {name!r}. Available presets: {', '.join(PRESETS)}."
        ) from None
