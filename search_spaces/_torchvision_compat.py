"""Kept for imports inside the package: the logic lives in the top-level ``_swiftnas_startup``."""

from _swiftnas_startup import ensure_torchvision_importable

__all__ = ["ensure_torchvision_importable"]
