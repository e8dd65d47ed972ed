"""A training recipe: every setting that changes what a run learns, and its canonical key.

Two runs with the same (architecture, dataset digest, recipe key) are the same experiment; the
second is a cache hit unless ``--force``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from .errors import TrainingError

RECIPE_VERSION = 1  # bump when the training loop changes what a recipe means


@dataclass(frozen=True)
class TrainRecipe:
    epochs: int  # full passes over the (subset of the) training set
    resolution: int = 64  # input pixels; a multiple of 32 (SwiftFormer downsamples 32x)
    batch_size: int = 128
    lr: float = 1e-3  # AdamW peak learning rate, as SwiftFormer's recipe (per 1024 images)
    weight_decay: float = 0.025
    warmup_epochs: int = 0
    smoothing: float = 0.1  # label smoothing
    mixup: float = 0.0  # mixup alpha; 0 turns mixup off (short runs learn better without it)
    ema: bool = False  # also evaluate an EMA of the weights (timm ModelEmaV3)
    # BatchNorm statistics recomputed on this many training batches before each evaluation
    # ("precise BN"): after a short schedule the running averages lag the weights so far that
    # eval-mode accuracy was near chance (11% against 62% with batch statistics, XS, 16 steps)
    precise_bn_batches: int = 20
    seed: int = 0
    train_subset: int | None = None  # first N of a fixed permutation of the training images
    val_subset: int | None = None

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise TrainingError(f"--epochs must be a positive number, but got {self.epochs}")
        if self.resolution < 32 or self.resolution % 32:
            raise TrainingError(f"--resolution must be a multiple of 32 (SwiftFormer downsamples "
                                f"32x), but got {self.resolution}; e.g. 64 or 224")
        if self.batch_size <= 0:
            raise TrainingError(f"--batch-size must be positive, but got {self.batch_size}")
        if not self.lr > 0:
            raise TrainingError(f"--lr must be positive, but got {self.lr}")
        if self.precise_bn_batches < 0:
            raise TrainingError(f"--precise-bn-batches must be >= 0, but got "
                                f"{self.precise_bn_batches}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise TrainingError(f"--warmup-epochs must be in [0, epochs), but got "
                                f"{self.warmup_epochs}")

    def to_dict(self) -> dict[str, object]:
        return {"version": RECIPE_VERSION, **asdict(self)}

    def key(self) -> str:
        """A short stable key of everything in the recipe."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return "r" + hashlib.sha256(text.encode()).hexdigest()[:16]

    def label(self) -> str:
        """A readable summary for tables."""
        subset = f" {self.train_subset} imgs" if self.train_subset else ""
        return f"{self.epochs} ep {self.resolution}px b{self.batch_size} lr{self.lr:g}" \
               f"{subset} s{self.seed}"
