"""What a latency, a training or an export is of: a swiftnas ArchConfig or a timm model by name.

Every API that takes "an ArchConfig or a timm model" takes a :class:`ModelRef`, or anything
:meth:`ModelRef.of` turns into one. The CLI keeps its two flags (``--arch``, ``--model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .arch import ArchConfig
from .errors import SwiftNASError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelRef:
    """A timm model by name, or an ArchConfig (which wins when a measurement row names both)."""

    timm_name: str = ""
    arch: ArchConfig | None = None

    def __post_init__(self) -> None:
        if self.arch is None and not self.timm_name:
            raise SwiftNASError("a measurement names neither a timm model nor an ArchConfig")

    @classmethod
    def of(cls, model: ModelLike) -> ModelRef:
        """``model`` as a ModelRef: a ModelRef, an ArchConfig, or a timm model name."""
        if isinstance(model, ModelRef):
            return model
        if isinstance(model, ArchConfig):
            return cls(arch=model)
        if isinstance(model, str):
            return cls(timm_name=model)
        raise TypeError(f"a model is an ArchConfig or a timm name, not {type(model).__name__}")

    @property
    def key(self) -> str:
        """Its identity where results are stored: the architecture key, or ``timm:NAME``."""
        return self.arch.key() if self.arch is not None else f"timm:{self.timm_name}"

    @property
    def name(self) -> str:
        """How it is shown: the architecture key or the timm name."""
        return self.arch.key() if self.arch is not None else self.timm_name

    @property
    def arch_json(self) -> str:
        """The ArchConfig as one line of JSON ("" for a timm model)."""
        return self.arch.to_json(indent=None) if self.arch is not None else ""

    def build(self, num_classes: int = 1000) -> nn.Module:
        """The model with random weights (timm never downloads any here)."""
        from .model import build_model, create_timm_model

        if self.arch is not None:
            return build_model(self.arch, num_classes=num_classes)
        return create_timm_model(self.timm_name, num_classes=num_classes)


ModelLike = ModelRef | ArchConfig | str
