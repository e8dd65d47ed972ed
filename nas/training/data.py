"""Training data for ``swiftnas train``: an ImageFolder root (``train/`` and ``val/``) or the
offline Fashion-MNIST of Debian's ``dataset-fashion-mnist``.

Both give a :class:`TrainingData`: two datasets of (image tensor, label), the class count (the
head is sized to it), and a digest of what was read, so a stored result names exactly the data
it was trained on.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import TrainingError

FASHION_MNIST = "fashion-mnist"
FASHION_MNIST_DIR = Path(os.environ.get("SWIFTNAS_FASHION_MNIST_DIR",
                                        "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}
# ImageNet statistics, as timm's SwiftFormer configs use (the model card's recipe)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class TrainingData:
    name: str  # "fashion-mnist", or the ImageFolder root's folder name
    digest: str  # SHA-256 over the file list (names and sizes) and the subset taken
    num_classes: int
    train: Dataset
    val: Dataset
    loader_workers: int = 0  # DataLoader processes: 0 for in-memory tensors, more to decode files


def _subset_indices(n: int, limit: int | None, seed: int) -> np.ndarray:
    """The first ``limit`` of a fixed permutation: a class-balanced-on-average subset that
    depends only on ``seed`` (not on the training seed), so recipes that differ only in their
    seed see the same images."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


# ------------------------------------------------------------------------------ Fashion-MNIST
def _read_idx(path: Path, *, images: bool) -> np.ndarray:
    """A gzipped IDX file (LeCun's MNIST format): big-endian header, then uint8 data."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise TrainingError(f"cannot read {str(path)!r} ({exc}); reinstall it: "
                            "`apt-get install --reinstall dataset-fashion-mnist`") from None
    dims = 3 if images else 1
    magic = 0x0800 + dims
    if len(raw) < 4 + 4 * dims or struct.unpack(">I", raw[:4])[0] != magic:
        raise TrainingError(f"{str(path)!r} is not an IDX {'image' if images else 'label'} "
                            "file; reinstall `dataset-fashion-mnist`")
    shape = struct.unpack(f">{dims}I", raw[4:4 + 4 * dims])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise TrainingError(f"{str(path)!r} is truncated; reinstall `dataset-fashion-mnist`")
    return data.reshape(shape)


class _GreyTensorDataset(Dataset):
    """uint8 grey images -> normalised 3-channel float tensors at ``resolution``.

    The images are resized once, up front, and kept as uint8 (60k at 64 px: 250 MB): resizing
    per sample in ``__getitem__`` halved training throughput on 2 cores."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, resolution: int) -> None:
        grey = torch.from_numpy(np.ascontiguousarray(images))
        resized = [torch.nn.functional.interpolate(
            chunk[:, None].to(torch.float32), size=(resolution, resolution), mode="bilinear",
            align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
            for chunk in grey.split(4096)]
        self.images = torch.cat(resized) if resized else grey[:, None]
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i].to(torch.float32).div_(255.0)
        return (x.expand(3, -1, -1) - self.mean) / self.std, self.labels[i]


def fashion_mnist(resolution: int, *, train_subset: int | None, val_subset: int | None,
                  subset_seed: int = 0) -> TrainingData:
    missing = [name for pair in FASHION_MNIST_FILES.values() for name in pair
               if not (FASHION_MNIST_DIR / name).is_file()]
    if missing:
        raise TrainingError(
            f"Fashion-MNIST is not installed ({len(missing)} files missing in "
            f"{str(FASHION_MNIST_DIR)!r}); install it: `sudo apt-get install dataset-fashion-mnist`"
            " (Debian's package, MIT licence, no download at run time)")
    h = hashlib.sha256()
    parts: dict[str, _GreyTensorDataset] = {}
    for split, limit in (("train", train_subset), ("val", val_subset)):
        images_file, labels_file = (FASHION_MNIST_DIR / n for n in FASHION_MNIST_FILES[split])
        images = _read_idx(images_file, images=True)
        labels = _read_idx(labels_file, images=False)
        if len(images) != len(labels):
            raise TrainingError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} "
                                "labels; reinstall `dataset-fashion-mnist`")
        keep = _subset_indices(len(labels), limit, subset_seed)
        for f in (images_file, labels_file):
            h.update(f"{f.name}:{f.stat().st_size};".encode())
        h.update(f"{split}:{len(keep)}:{subset_seed};".encode())
        parts[split] = _GreyTensorDataset(images[keep], labels[keep], resolution)
    return TrainingData(FASHION_MNIST, h.hexdigest(), 10, parts["train"], parts["val"])


# ------------------------------------------------------------------------------ ImageFolder
class _ImageFiles(Dataset):
    def __init__(self, samples: Sequence[tuple[Path, int]],
                 transform: Callable[[Any], torch.Tensor]) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise TrainingError(f"cannot read image {str(path)!r} ({type(exc).__name__}); "
                                "remove or replace the file and run the same command again"
                                ) from None
        return self.transform(image), label


def _scan_split(root: Path, split: str) -> tuple[list[str], list[tuple[Path, int]]]:
    folder = root / split
    if not folder.is_dir():
        raise TrainingError(f"data folder {str(root)!r} has no {split}/ folder; an ImageFolder "
                            "root holds train/CLASS/*.jpg and val/CLASS/*.jpg")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise TrainingError(f"{str(folder)!r} has no class folders; put each class's images "
                            f"in {split}/CLASS_NAME/")
    samples: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (folder / cls).rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise TrainingError(f"class folder {str(folder / cls)!r} holds no images "
                                f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove it")
        samples.extend((p, label) for p in files)
    return classes, samples


def image_folder(root: Path, resolution: int, *, train_subset: int | None,
                 val_subset: int | None, subset_seed: int = 0) -> TrainingData:
    from timm.data import create_transform

    train_classes, train_samples = _scan_split(root, "train")
    val_classes, val_samples = _scan_split(root, "val")
    if train_classes != val_classes:
        only = sorted(set(train_classes) ^ set(val_classes))[:5]
        raise TrainingError(f"train/ and val/ of {str(root)!r} have different class folders "
                            f"(e.g. {', '.join(only)}); both need the same classes")
    h = hashlib.sha256()
    chosen = {}
    for split, samples, limit in (("train", train_samples, train_subset),
                                  ("val", val_samples, val_subset)):
        keep = [samples[i] for i in _subset_indices(len(samples), limit, subset_seed)]
        for path, label in keep:
            h.update(f"{split}/{path.relative_to(root / split)}:{path.stat().st_size}:"
                     f"{label};".encode())
        chosen[split] = keep
    train_tf = create_transform(resolution, is_training=True, mean=MEAN, std=STD,
                                scale=(0.35, 1.0))
    val_tf = create_transform(resolution, is_training=False, mean=MEAN, std=STD)
    return TrainingData(root.resolve().name, h.hexdigest(), len(train_classes),
                        _ImageFiles(chosen["train"], train_tf), _ImageFiles(chosen["val"], val_tf),
                        loader_workers=min(4, os.cpu_count() or 1))


def check_data_spec(spec: str) -> None:
    """Refuse a --data that is neither Fashion-MNIST nor a folder, before any work."""
    if spec != FASHION_MNIST and not Path(spec).is_dir():
        raise TrainingError(f"data {spec!r} is neither 'fashion-mnist' nor an existing folder; "
                            "pass an ImageFolder root (with train/ and val/) or fashion-mnist")


def load_data(spec: str, resolution: int, *, train_subset: int | None = None,
              val_subset: int | None = None) -> TrainingData:
    """``spec`` is ``fashion-mnist`` or the path of an ImageFolder root."""
    for label, value in (("--train-subset", train_subset), ("--val-subset", val_subset)):
        if value is not None and value <= 0:
            raise TrainingError(f"{label} must be a positive number of images, but got {value}")
    if spec == FASHION_MNIST:
        return fashion_mnist(resolution, train_subset=train_subset, val_subset=val_subset)
    check_data_spec(spec)
    root = Path(spec)
    return image_folder(root, resolution, train_subset=train_subset, val_subset=val_subset)
