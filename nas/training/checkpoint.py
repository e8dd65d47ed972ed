"""Atomic training checkpoints in safetensors format, and the atomic ``metrics.csv``.

A checkpoint holds the model's, the optimizer's and (when used) the EMA's tensors, plus JSON
metadata (epoch, step, optimizer hyper-parameters, the run's identity). It is written to a
temporary file in the same folder and renamed over the old one, so a run killed at any moment
leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from search_spaces.files import atomic_write

from .errors import TrainingError

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.csv"
METRIC_FIELDS = ["epoch", "step", "train_loss", "val_top1", "val_top5", "lr", "seconds",
                 "images_per_s"]


def _optimizer_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[Any]]:
    tensors = {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{index}.{name}"] = (value if torch.is_tensor(value)
                                                else torch.tensor(value))
    return tensors, state["param_groups"]


def save_checkpoint(out: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    ema: torch.nn.Module | None, meta: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    optim, groups = _optimizer_tensors(optimizer.state_dict())
    tensors.update({k: v.contiguous() for k, v in optim.items()})
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().contiguous()
                        for k, v in ema.state_dict().items()})
    metadata = {"swiftnas": json.dumps(meta), "param_groups": json.dumps(groups)}
    atomic_write(out / CHECKPOINT, lambda p: save_file(tensors, str(p), metadata=metadata))


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(json.loads((f.metadata() or {})["swiftnas"]))
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise TrainingError(f"{str(path)!r} is not a swiftnas training checkpoint "
                            f"({type(exc).__name__}); delete it to start over") from None


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    ema: torch.nn.Module | None) -> dict[str, Any]:
    """Restore the three states in place; returns the metadata."""
    from safetensors import safe_open

    meta = read_checkpoint_meta(path)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            groups = json.loads((f.metadata() or {})["param_groups"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise TrainingError(f"cannot read checkpoint {str(path)!r} ({type(exc).__name__}); "
                            "delete it to start over") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if ema is not None:
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return meta


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model's (or the EMA's, when the run used one) weights from a checkpoint."""
    tensors = load_file(str(path))
    prefix = "ema." if any(k.startswith("ema.") for k in tensors) else "model."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def read_metrics(out: Path) -> list[dict[str, str]]:
    path = out / METRICS
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_metrics(out: Path, rows: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / METRICS, lambda p: p.write_text(buffer.getvalue()))
