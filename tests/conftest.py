from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

import search_spaces  # noqa: F401  (first: makes `import timm` work, see _torchvision_compat)

# One thread: CI has 2 cores and pytest-xdist is not used; more threads only add contention.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
