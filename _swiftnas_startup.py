"""Make ``import timm`` work when torchvision's compiled ops cannot load, in every interpreter.

The only torchvision wheel that matches torch 2.13.0 on PyPI (0.28.0) is a CUDA build. On the
CPU-only torch this project pins, its ``_C`` extension fails to load, and
``torchvision/_meta_registrations.py`` then crashes at import time with
``RuntimeError: operator torchvision::nms does not exist`` because it registers fake kernels for
ops that were never defined. timm imports torchvision, so timm fails too.

:func:`ensure_torchvision_importable` tries to load torchvision's extension the way torchvision
does; only when that fails does it define the ``torchvision::nms`` and ``torchvision::qnms``
schemas so the fake-kernel registrations succeed. torchvision's C++ ops stay unusable; swiftnas
never calls them.

It must run before torchvision is first imported, in any interpreter of the environment (a user's
script, timm's ``train.py``, a Ray worker), not only in processes that import swiftnas first. So
the package installs ``swiftnas-startup.pth`` into site-packages (see ``setup.py``). Python runs
its ``import _swiftnas_startup`` line at start-up, and :func:`install` puts a meta-path finder in
front that fires once, on the first ``import torchvision``. Start-up itself stays cheap: torch is
imported only then, never for a plain ``python`` or ``swiftnas --help``.

This module is top-level and imports nothing from swiftnas, so the hook never loads a package
``__init__`` (``search_spaces`` imports torch and timm).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

_NMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
_library: object = None  # kept alive: dropping it would unregister the ops


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
    import torch

    try:
        torch.ops.load_library(path)
        return False
    except (OSError, RuntimeError):
        pass
    if hasattr(torch.ops.torchvision, "nms"):  # someone else already defined them
        return True
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms" + _NMS_SCHEMA)
    library.define("qnms" + _NMS_SCHEMA)
    _library = library
    return True


class _BeforeTorchvision:  # a meta-path finder (importlib.abc is not imported: start-up cost)
    """Runs :func:`ensure_torchvision_importable` on the first ``import torchvision``, once."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname != "torchvision":
            return None
        uninstall()
        # on any failure here, torchvision's own import reports what is wrong
        with contextlib.suppress(Exception):
            ensure_torchvision_importable()
        return None  # the regular finders import torchvision itself


def install() -> None:
    """Hook the first ``import torchvision`` (called from ``swiftnas-startup.pth``)."""
    hooked = any(isinstance(finder, _BeforeTorchvision) for finder in sys.meta_path)
    if hooked or "torchvision" in sys.modules:
        return
    sys.meta_path.insert(0, _BeforeTorchvision())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _BeforeTorchvision)]
