"""NAS-Bench-Macro (Su et al., CVPR 2021): CIFAR-10 accuracies of 6,561 MobileNetV2-style networks.

Used as ground truth for training-free proxies. The data file ships in
``nas/data/nas-bench-macro_cifar10.json`` (a copy of the shared data, Apache-2.0, licence and
README beside it); the README describes the network, which
:func:`build_network` rebuilds so that parameters and FLOPs match the file for every code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from search_spaces.errors import SwiftNASError

STAGE_WIDTHS = (64, 128, 256)
STAGE_LAYERS = (2, 3, 3)
STEM_WIDTH = 32
HEAD_WIDTH = 1280
NUM_CLASSES = 10
INPUT_SIZE = (3, 32, 32)
DATA_ENV = "SWIFTNAS_NBM_PATH"
SHIPPED_PATH = Path(__file__).with_name("data") / "nas-bench-macro_cifar10.json"


class BenchmarkDataError(SwiftNASError, ValueError):
    """A benchmark file is missing or malformed."""


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int, kernel: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        self.layers = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        out = self.layers(x)
        return x + out if self.use_residual else out


def _layer(digit: str, cin: int, cout: int, stride: int) -> nn.Module:
    if digit == "0":
        if stride == 1 and cin == cout:
            return nn.Identity()
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    if digit == "1":
        return _InvertedResidual(cin, cout, stride, expansion=3, kernel=3)
    return _InvertedResidual(cin, cout, stride, expansion=6, kernel=5)


def validate_code(code: str) -> str:
    if len(code) != sum(STAGE_LAYERS) or set(code) - set("012"):
        raise BenchmarkDataError(
            f"NAS-Bench-Macro codes are {sum(STAGE_LAYERS)} digits over 0/1/2, but got {code!r}. "
            "Use a key of the benchmark file, e.g. '01201120'."
        )
    return code


def build_network(code: str) -> nn.Module:
    """The CIFAR-10 network of ``code`` with random weights."""
    validate_code(code)
    layers: list[nn.Module] = [
        nn.Conv2d(3, STEM_WIDTH, 3, 1, 1, bias=False), nn.BatchNorm2d(STEM_WIDTH), nn.ReLU(),
    ]
    cin, pos = STEM_WIDTH, 0
    for width, n in zip(STAGE_WIDTHS, STAGE_LAYERS, strict=True):
        for i in range(n):
            layers.append(_layer(code[pos], cin, width, 2 if i == 0 else 1))
            cin, pos = width, pos + 1
    layers += [
        nn.Conv2d(cin, HEAD_WIDTH, 1, bias=False), nn.BatchNorm2d(HEAD_WIDTH), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(HEAD_WIDTH, NUM_CLASSES),
    ]
    return nn.Sequential(*layers)


def canonical_code(code: str) -> str:
    """Codes that differ only in where identities sit after a stage's first layer are one
    network (a stride-1 identity is a no-op): move those identities to the stage's end."""
    validate_code(code)
    out, pos = [], 0
    for n in STAGE_LAYERS:
        stage = code[pos:pos + n]
        rest = stage[1:].replace("0", "")
        out.append(stage[0] + rest + "0" * (n - 1 - len(rest)))
        pos += n
    return "".join(out)


@dataclass(frozen=True)
class BenchmarkEntry:
    code: str
    mean_acc: float
    params: int
    flops: int


def default_data_path() -> Path:
    """``$SWIFTNAS_NBM_PATH``, else the copy shipped in ``nas/data/`` (Apache-2.0, licence
    beside it)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return SHIPPED_PATH


def load(path: str | Path | None = None) -> dict[str, BenchmarkEntry]:
    """All 6,561 entries keyed by code."""
    path = Path(path) if path is not None else default_data_path()
    if not path.is_file():
        raise BenchmarkDataError(
            f"NAS-Bench-Macro data not found at {str(path)!r}. Set {DATA_ENV} to the path of "
            "nas-bench-macro_cifar10.json, or unset it to use the copy shipped with swiftnas."
        )
    raw = json.loads(path.read_text())
    return {
        code: BenchmarkEntry(code, float(v["mean_acc"]), int(v["params"]), int(v["flops"]))
        for code, v in raw.items()
    }


def distinct(entries: dict[str, BenchmarkEntry]) -> dict[str, BenchmarkEntry]:
    """One entry per distinct network (3,969), keyed by canonical code; accuracy averaged over
    the codes that spell the same network."""
    groups: dict[str, list[BenchmarkEntry]] = {}
    for e in entries.values():
        groups.setdefault(canonical_code(e.code), []).append(e)
    out = {}
    for canon, members in sorted(groups.items()):
        acc = sum(m.mean_acc for m in members) / len(members)
        out[canon] = BenchmarkEntry(canon, acc, members[0].params, members[0].flops)
    return out


def iter_codes() -> Iterator[str]:
    from itertools import product

    for digits in product("012", repeat=sum(STAGE_LAYERS)):
        yield "".join(digits)
