"""One ``swiftnas train`` run end to end: resolve what to train, load the data, look in the
results cache, train (resuming), store the result."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nas.storage import Storage, open_storage

from .data import load_data
from .errors import TrainingError
from .recipe import TrainRecipe
from .results import TrainedResult, experiment_identity, find_result, record_training
from .trainer import StepInfo, TrainTarget, resolve_device, train, versions


@dataclass
class TrainOutcome:
    result: TrainedResult
    cached: bool  # found in storage; nothing was trained
    steps: int = 0
    final_loss: float = float("nan")


def _out_checks(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {str(out)!r} is a file; pass a folder (it is created)")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TrainingError(f"--out {str(out)!r} lies under the file {str(parent)!r}")
            break


def run_training(target: TrainTarget, data_spec: str, recipe: TrainRecipe, out: Path, *,
                 store: Storage | str, device: str = "auto", force: bool = False,
                 on_step: Callable[[StepInfo], None] | None = None,
                 on_data: Callable[[str, int, int, int], None] | None = None) -> TrainOutcome:
    """Train ``target`` unless storage already holds this experiment (or ``force``).

    ``store`` may be a URL: it is opened only once the device, the output folder and the data
    pass their checks, so a refused run creates no database."""
    resolve_device(device)  # a CUDA request without CUDA fails before any work
    _out_checks(out)
    data = load_data(data_spec, recipe.resolution, train_subset=recipe.train_subset,
                     val_subset=recipe.val_subset)
    if isinstance(store, str):
        store = open_storage(store)
    if on_data:
        on_data(data.name, data.num_classes, len(data.train), len(data.val))  # type: ignore[arg-type]
    ident = experiment_identity(target.key, data.name, data.digest, recipe)
    if not force:
        hit = find_result(store, **ident)
        if hit is not None:
            return TrainOutcome(hit, cached=True)
    elif (out / "checkpoint.safetensors").exists() and (out / "metrics.csv").exists():
        # --force retrains from scratch: the old run's files would otherwise be resumed
        for name in ("checkpoint.safetensors", "metrics.csv"):
            (out / name).unlink()
    outcome = train(target, data, recipe, out, device=device, on_step=on_step, identity=ident)
    result = record_training(store, ident, arch_json=target.arch_json, outcome=outcome,
                             recipe=recipe, origin=str(out.resolve()), versions=versions())
    summary = {**result.to_dict(), "recipe": recipe.to_dict(), "steps": outcome.steps,
               "final_loss": outcome.final_loss, "versions": versions()}
    from search_spaces.files import atomic_write

    atomic_write(out / "result.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
    return TrainOutcome(result, cached=False, steps=outcome.steps, final_loss=outcome.final_loss)
