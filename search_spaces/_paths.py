"""Where the shipped data lives (``shared/data`` beside the checkout, or ``$SWIFTNAS_DATA_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "SWIFTNAS_DATA_DIR"
_CANDIDATES = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "data",  # checkout beside shared/
    Path("/work/shared/data"),  # this workplace's shared folder, for clones elsewhere (CI)
)


def shared_data_dir() -> Path:
    """The data folder; the first existing candidate, or the env variable's value if set."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    return _CANDIDATES[0]
