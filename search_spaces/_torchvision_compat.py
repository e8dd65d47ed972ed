"""Make ``import timm`` work when torchvision's compiled ops cannot load.

The only torchvision wheel that matches torch 2.13.0 on PyPI (0.28.0) is a CUDA build. On the
CPU-only torch this project pins, its ``_C`` extension fails to load, and
``torchvision/_meta_registrations.py`` then crashes at import time with
``RuntimeError: operator torchvision::nms does not exist`` because it registers fake kernels for
ops that were never defined. timm imports torchvision, so timm fails too.

:func:`ensure_torchvision_importable` runs before the first timm import (from
``search_spaces/__init__.py``, so every process that touches a model, Ray workers included, gets
it). It tries to load torchvision's extension the way torchvision does; only when that fails does
it define the ``torchvision::nms`` and ``torchvision::qnms`` schemas so the fake-kernel
registrations succeed. torchvision's C++ ops stay unusable; swiftnas never calls them.
"""

from __future__ import annotations

import importlib.util
import os

import torch

_NMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
_library: torch.library.Library | None = None  # kept alive: dropping it would unregister the ops


def _torchvision_extension_path() -> str | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for name in os.listdir(location):
            if name.startswith("_C.") and name.endswith((".so", ".pyd")):
                return os.path.join(location, name)
    return None


def ensure_torchvision_importable() -> bool:
    """Define torchvision's op schemas if its extension cannot load.

    Returns True when the schemas were defined here (the extension is unusable), False when the
    extension loaded or torchvision is not installed. Safe to call more than once.
    """
    global _library
    if _library is not None:
        return True
    path = _torchvision_extension_path()
    if path is None:
        return False
    try:
        torch.ops.load_library(path)
        return False
    except (OSError, RuntimeError):
        pass
    if hasattr(torch.ops.torchvision, "nms"):  # someone else already defined them
        return True
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms" + _NMS_SCHEMA)
    _library.define("qnms" + _NMS_SCHEMA)
    return True
