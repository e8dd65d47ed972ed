"""``swiftnas train``: train one candidate for real, from timm's library parts.

timm's ``train.py`` is not in the timm wheel, so the loop is built here from what is:
``timm.optim.create_optimizer_v2`` (AdamW), ``timm.scheduler.create_scheduler_v2`` (cosine, per
step), ``timm.loss`` (label smoothing, or soft targets with ``timm.data.Mixup``) and
``timm.utils.ModelEmaV3``. AMP is used on CUDA.

Reproducible and resumable: the model is initialised from the seed, each epoch's shuffle comes
from (seed, epoch), and a checkpoint plus ``metrics.csv`` are written atomically after every
epoch. A killed run given the same command again continues from its last finished epoch and
ends in the same state as an uninterrupted run.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from search_spaces import ModelRef

from .checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    read_checkpoint_meta,
    read_metrics,
    save_checkpoint,
    write_metrics,
)
from .data import TrainingData
from .errors import TrainingError
from .recipe import TrainRecipe

# What to train: a swiftnas architecture, or any timm model by name (its ``key`` names the
# stored result; ``build(num_classes)`` makes it with random weights).
TrainTarget = ModelRef


@dataclass
class StepInfo:
    """What the progress display shows, after every training step."""

    epoch: int  # 1-based
    epochs: int
    step: int  # within the epoch, 1-based
    steps: int
    loss: float
    images_per_s: float


@dataclass
class TrainResult:
    top1: float  # percent, on the validation set, after the last epoch
    top5: float
    train_seconds: float  # summed over epochs (also across resumed sittings)
    epochs: int
    steps: int
    final_loss: float
    device: str
    metrics: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA device is available here; "
                            "use --device cpu (or auto)")
    if device not in ("cpu", "cuda"):
        raise TrainingError(f"--device must be auto, cpu or cuda, but got {device!r}")
    return torch.device(device)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import timm

    return {"swiftnas": version("swiftnas"), "torch": torch.__version__,
            "timm": timm.__version__, "python": platform.python_version()}


def _evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device,
              num_classes: int) -> tuple[float, float]:
    from timm.utils import accuracy

    model.eval()
    k = min(5, num_classes)
    correct1 = correct5 = 0.0
    n = 0
    with torch.inference_mode():
        for x, y in _batches(loader):
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                out = model(x)
            top1, topk = accuracy(out.float(), y, topk=(1, k))
            correct1 += float(top1) * len(y) / 100
            correct5 += float(topk) * len(y) / 100
            n += len(y)
    return 100.0 * correct1 / max(n, 1), 100.0 * correct5 / max(n, 1)


def recalibrate_batchnorm(model: torch.nn.Module, data: TrainingData, *, batches: int,
                          batch_size: int, seed: int, device: torch.device) -> None:
    """Replace every BatchNorm's running statistics by their exact average over ``batches``
    training batches (a fixed shuffle of ``seed``), as PreciseBN does."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    loader = DataLoader(data.train, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed),
                        num_workers=data.loader_workers)
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for i, (x, _) in enumerate(_batches(loader)):
            if i >= batches:
                break
            model(x.to(device))
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    model.train(was_training)


def _batches(loader: DataLoader) -> Iterator[Any]:
    """The loader's batches; an error raised in a loader worker process arrives wrapped in a
    traceback (``Caught TrainingError in DataLoader worker``): keep its one-line message."""
    try:
        yield from loader
    except TrainingError as exc:
        raise TrainingError(str(exc).strip().splitlines()[-1].removeprefix(
            "nas.training.errors.TrainingError: ")) from None


def train(target: TrainTarget, data: TrainingData, recipe: TrainRecipe, out: Path, *,
          device: str = "auto", on_step: Callable[[StepInfo], None] | None = None,
          identity: dict[str, Any] | None = None) -> TrainResult:
    """Train ``target`` on ``data`` with ``recipe``, checkpointing into ``out`` (resuming from
    it when it holds this same run's checkpoint)."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    dev = resolve_device(device)
    identity = identity or {}
    torch.manual_seed(recipe.seed)
    model = target.build(data.num_classes).to(dev)
    # SwiftFormer's lr is given per 1024 images; scale linearly as its recipe does
    lr = recipe.lr * recipe.batch_size / 1024
    optimizer = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=recipe.weight_decay)
    ema = ModelEmaV3(model, decay=0.998, device=dev) if recipe.ema else None

    workers = data.loader_workers
    val_loader = DataLoader(data.val, batch_size=max(recipe.batch_size, 256), shuffle=False,
                            num_workers=workers)
    steps_per_epoch = math.ceil(len(data.train) / recipe.batch_size)  # type: ignore[arg-type]
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=recipe.epochs,
                                       warmup_epochs=recipe.warmup_epochs, min_lr=lr * 0.01,
                                       warmup_lr=lr * 0.01, step_on_epochs=False,
                                       updates_per_epoch=steps_per_epoch)
    mixup = (Mixup(mixup_alpha=recipe.mixup, label_smoothing=recipe.smoothing,
                   num_classes=data.num_classes) if recipe.mixup > 0 else None)
    criterion: torch.nn.Module = (SoftTargetCrossEntropy() if mixup else
                                  LabelSmoothingCrossEntropy(smoothing=recipe.smoothing))
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    out.mkdir(parents=True, exist_ok=True)
    start_epoch, step_count, seconds = 0, 0, 0.0
    metrics: list[dict[str, Any]] = []
    ckpt = out / CHECKPOINT
    if ckpt.is_file():
        meta = read_checkpoint_meta(ckpt)
        if meta.get("identity") != identity:
            raise TrainingError(f"--out {str(out)!r} holds a checkpoint of another run (other "
                                "architecture, data or recipe); choose another --out, or "
                                "delete it to start over")
        meta = load_checkpoint(ckpt, model=model, optimizer=optimizer,
                               ema=ema.module if ema else None)
        start_epoch, step_count, seconds = meta["epoch"], meta["step"], meta["seconds"]
        # the checkpoint carries the rows of the epochs it holds (older ones did not): a kill
        # after the checkpoint but before metrics.csv was rewritten loses no row
        metrics = meta.get("metrics") or read_metrics(out)[:start_epoch]
        write_metrics(out, metrics)  # rows after the checkpoint are re-run

    final_loss = float(metrics[-1]["train_loss"]) if metrics else float("nan")
    top1, top5 = ((float(metrics[-1]["val_top1"]), float(metrics[-1]["val_top5"])) if metrics
                  else (float("nan"), float("nan")))
    for epoch in range(start_epoch, recipe.epochs):
        model.train()
        # the shuffle depends on (seed, epoch) only, so a resumed epoch replays exactly
        gen = torch.Generator().manual_seed(recipe.seed * 100_003 + epoch)
        torch.manual_seed(recipe.seed * 100_003 + epoch)  # dropout, mixup, augmentation
        loader = DataLoader(data.train, batch_size=recipe.batch_size, shuffle=True,
                            generator=gen, num_workers=workers, drop_last=False)
        started = time.perf_counter()
        loss_sum, seen = 0.0, 0
        for i, (x, y) in enumerate(_batches(loader)):
            x, y = x.to(dev), y.to(dev)
            if mixup is not None:
                if len(y) % 2:  # timm's Mixup needs an even batch
                    x, y = x[:-1], y[:-1]
                x, y = mixup(x, y)
            with torch.autocast(dev.type, enabled=use_amp):
                loss = criterion(model(x), y)
            if not torch.isfinite(loss):
                raise TrainingError(f"the loss became {float(loss)} at epoch {epoch + 1}, step "
                                    f"{i + 1}; lower --lr (now {recipe.lr:g})")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step_count += 1
            scheduler.step_update(num_updates=step_count)
            if ema is not None:
                ema.update(model, step=step_count)
            loss_sum += float(loss.detach()) * len(x)
            seen += len(x)
            if on_step:
                elapsed = time.perf_counter() - started
                on_step(StepInfo(epoch + 1, recipe.epochs, i + 1, steps_per_epoch,
                                 loss_sum / seen, seen / elapsed if elapsed > 0 else 0.0))
        epoch_seconds = time.perf_counter() - started
        seconds += epoch_seconds
        final_loss = loss_sum / max(seen, 1)
        evaluated = ema.module if ema else model
        recalibrate_batchnorm(evaluated, data, batches=recipe.precise_bn_batches,
                              batch_size=recipe.batch_size, seed=recipe.seed * 100_003 + epoch,
                              device=dev)
        top1, top5 = _evaluate(evaluated, val_loader, dev, data.num_classes)
        metrics.append({"epoch": epoch + 1, "step": step_count, "train_loss": f"{final_loss:.6f}",
                        "val_top1": f"{top1:.3f}", "val_top5": f"{top5:.3f}",
                        "lr": f"{optimizer.param_groups[0]['lr']:.3e}",
                        "seconds": f"{epoch_seconds:.2f}",
                        "images_per_s": f"{seen / epoch_seconds:.1f}"})
        # the checkpoint holds the metrics rows too (one atomic write), so a kill before
        # metrics.csv is rewritten loses nothing: a resume restores the rows from it
        save_checkpoint(out, model=model, optimizer=optimizer, ema=ema.module if ema else None,
                        meta={"epoch": epoch + 1, "step": step_count, "seconds": seconds,
                              "identity": identity, "metrics": metrics})
        write_metrics(out, metrics)
    return TrainResult(top1=top1, top5=top5,
                       train_seconds=seconds, epochs=recipe.epochs, steps=step_count,
                       final_loss=final_loss, device=dev.type, metrics=metrics)


def evaluate_checkpoint(target: TrainTarget, data: TrainingData, out: Path, *,
                        device: str = "cpu", batch_size: int = 256) -> tuple[float, float]:
    """Top-1 and top-5 of the weights saved in ``out``'s checkpoint (the EMA's when used)."""
    from .checkpoint import model_weights

    dev = resolve_device(device)
    model = target.build(data.num_classes)
    model.load_state_dict(model_weights(out / CHECKPOINT))
    loader = DataLoader(data.val, batch_size=batch_size, shuffle=False)
    return _evaluate(model.to(dev), loader, dev, data.num_classes)
