"""``swiftnas train`` and ``swiftnas accuracy``: trained accuracies, measured and stored."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from search_spaces.text import command_hint, masked_url

from ._common import OutputFormat, console, err_console, print_json

if TYPE_CHECKING:
    from search_spaces import ArchConfig, ModelRef

DEFAULT_STORAGE = "sqlite:///swiftnas.db"
STORAGE_HELP = ("SQLAlchemy URL where trained results are stored: sqlite:///swiftnas.db "
                "(default) or postgresql+psycopg://user:pass@host/db.")

accuracy_app = typer.Typer(
    rich_markup_mode=None,  # help texts are plain: '.[coreml]' must print as it is
    help="Trained accuracies: import results trained elsewhere, list "
                           "what is stored.", no_args_is_help=True)


def _target(storage: str, study: str | None, trial: int | None, arch: str | None,
            model: str | None) -> ModelRef:
    from nas.training import TrainingError, TrainTarget

    given = [n for n, v in (("--study/--trial", study or trial is not None), ("--arch", arch),
                            ("--model", model)) if v]
    if len(given) != 1:
        raise TrainingError("name exactly one thing to train: --study S --trial N, --arch "
                            f"ARCH.json (or a preset: xs, s, l1, l3) or --model TIMM_NAME; got "
                            f"{', '.join(given) or 'none'}")
    if study is not None or trial is not None:
        if study is None or trial is None:
            raise TrainingError("--study and --trial go together: --study NAME --trial N")
        return TrainTarget(arch=study_trial_arch(storage, study, trial))
    if arch is not None:
        from ._common import load_arch

        return TrainTarget(arch=load_arch(arch))
    from search_spaces import PRESETS, create_timm_model, get_preset

    assert model is not None
    preset = model.removeprefix("swiftformer_")
    if model.startswith("swiftformer_") and preset in PRESETS:
        return TrainTarget(arch=get_preset(preset))  # the same network, and its arch key
    create_timm_model(model, num_classes=2)  # an unknown name fails here, in one line
    return TrainTarget(timm_name=model)


DATA_HELP = ("fashion-mnist (Debian's dataset-fashion-mnist), or an ImageFolder root with "
             "train/ and val/ class folders.")

# Recipe options shared by `train` and `train-batch` (declared once, so they cannot drift).
DATA_OPT = typer.Option(..., "--data", help=DATA_HELP)
EPOCHS_OPT = typer.Option(..., "--epochs", help="Training epochs.")
RESOLUTION_OPT = typer.Option(64, "--resolution", help="Input pixels, a multiple of 32.")
BATCH_SIZE_OPT = typer.Option(128, "--batch-size", help="Images per step.")
LR_OPT = typer.Option(1e-3, "--lr", help="AdamW learning rate per 1024 images (scaled "
                    "linearly with --batch-size, as SwiftFormer's recipe).")
TRAIN_SUBSET_OPT = typer.Option(None, "--train-subset", help="Train on this many images "
                              "(a fixed random subset); default all.")
VAL_SUBSET_OPT = typer.Option(None, "--val-subset", help="Validate on this many images; "
                            "default all.")
SEED_OPT = typer.Option(0, "--seed", help="Seed of the initialisation and the shuffles.")


def train(
    study: str = typer.Option(None, "--study", help="Train a trial of this study (with --trial)."),
    trial: int = typer.Option(None, "--trial", help="Trial number (with --study)."),
    arch: str = typer.Option(None, "--arch", help="ArchConfig JSON file, or a preset (xs, s, "
                             "l1, l3)."),
    model: str = typer.Option(None, "--model", help="Any timm model name, e.g. "
                              "swiftformer_xs or resnet18 (random init, never downloads)."),
    data: str = DATA_OPT,
    epochs: int = EPOCHS_OPT,
    resolution: int = RESOLUTION_OPT,
    batch_size: int = BATCH_SIZE_OPT,
    lr: float = LR_OPT,
    weight_decay: float = typer.Option(0.025, "--weight-decay", help="AdamW weight decay."),
    warmup_epochs: int = typer.Option(0, "--warmup-epochs", help="Linear warm-up epochs."),
    mixup: float = typer.Option(0.0, "--mixup", help="Mixup alpha (0: off)."),
    smoothing: float = typer.Option(0.1, "--smoothing", help="Label smoothing."),
    ema: bool = typer.Option(False, "--ema", help="Evaluate an EMA of the weights (timm "
                             "ModelEmaV3)."),
    precise_bn_batches: int = typer.Option(20, "--precise-bn-batches", help="Recompute "
                                           "BatchNorm statistics on this many training batches "
                                           "before each evaluation (0: off)."),
    train_subset: int = TRAIN_SUBSET_OPT,
    val_subset: int = VAL_SUBSET_OPT,
    seed: int = SEED_OPT,
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (AMP on CUDA)."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.csv, the checkpoint "
                             "(checkpoint.safetensors) and result.json. A killed run resumes "
                             "from it when the same command is given again."),
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help=STORAGE_HELP),
    force: bool = typer.Option(False, "--force", help="Train even when storage already holds "
                               "this architecture, data and recipe."),
) -> None:
    """Train one candidate for real and store its accuracy (a cache hit when already stored)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from nas.training import TrainRecipe, run_training

    recipe = TrainRecipe(epochs=epochs, resolution=resolution, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, warmup_epochs=warmup_epochs, mixup=mixup,
                         smoothing=smoothing, ema=ema, seed=seed, train_subset=train_subset,
                         val_subset=val_subset, precise_bn_batches=precise_bn_batches)
    target = _target(storage, study, trial, arch, model)
    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                        TextColumn("{task.fields[ips]:.0f} img/s"), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=err_console,
                        transient=False)
    task = None

    def on_data(name: str, classes: int, n_train: int, n_val: int) -> None:
        err_console.print(f"data {name}: {classes} classes, {n_train} training and {n_val} "
                          f"validation images at {recipe.resolution} px")

    def on_step(info) -> None:
        nonlocal task
        if task is None:
            progress.start()
            task = progress.add_task("train", total=info.steps * info.epochs,
                                     epoch=f"{info.epoch}/{info.epochs}", loss=info.loss,
                                     ips=info.images_per_s)
        progress.update(task, completed=(info.epoch - 1) * info.steps + info.step,
                        epoch=f"{info.epoch}/{info.epochs}", loss=info.loss,
                        ips=info.images_per_s)

    try:
        # the storage is opened once the data and --out pass their checks (a refusal creates
        # no database)
        outcome = run_training(target, data, recipe, out, store=storage, device=device,
                               force=force, on_step=on_step, on_data=on_data)
    finally:
        progress.stop()
    r = outcome.result
    if outcome.cached:
        console.print(f"cache hit: {target.key} on {r.dataset} with this recipe is stored "
                      f"(top-1 {r.top1:.2f}%, trained in {r.origin}); --force retrains")
        return
    console.print(f"top-1 {r.top1:.2f}%  top-5 {r.top5:.2f}%  ({r.train_seconds:.0f} s on "
                  f"{r.device}, {outcome.steps} steps); stored in {masked_url(storage)}; files "
                  f"in {out}")


@accuracy_app.command("import")
def accuracy_import(
    file: Path = typer.Argument(..., help="CSV with columns dataset, recipe, top1 [, top5] and "
                                "either arch (ArchConfig JSON, a JSON file relative to the CSV, "
                                "or a preset) or study and trial."),
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help=STORAGE_HELP),
) -> None:
    """Import accuracies trained elsewhere (e.g. timm train.py on ImageNet); all rows or none."""
    from nas.storage import open_storage
    from nas.training.results import import_results, parse_import

    if not file.is_file():
        from nas.training import TrainingError

        raise TrainingError(f"no such file {str(file)!r}; pass the CSV to import")
    rows = parse_import(file, study_arch=lambda s, t, where: study_trial_arch(storage, s, t))
    store = open_storage(storage)  # after every row passed: a refused file creates nothing
    n = import_results(store, rows)
    console.print(f"imported {n} trained accuracies into {store.url}")


@accuracy_app.command("list")
def accuracy_list(
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help=STORAGE_HELP),
    dataset: str = typer.Option(None, "--dataset", help="Only this dataset."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
) -> None:
    """List the stored trained accuracies."""
    from nas.storage import open_storage
    from nas.training.results import list_results

    results = list_results(open_storage(storage, create=False), dataset=dataset)
    if fmt == OutputFormat.json:
        print_json([r.to_dict() for r in results])
        return
    table = Table(title=f"Trained accuracies in {storage}")
    for col in ("arch", "dataset", "recipe", "top-1 %", "top-5 %", "seconds", "source"):
        table.add_column(col, overflow="fold")
    for r in results:
        table.add_row(r.arch_key, r.dataset, r.recipe_label, f"{r.top1:.2f}",
                      "-" if r.top5 is None else f"{r.top5:.2f}",
                      "-" if r.train_seconds is None else f"{r.train_seconds:.0f}", r.source)
    console.print(table)
    console.print(f"{len(results)} results")


@accuracy_app.command("fit")
def accuracy_fit(
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help=STORAGE_HELP),
    dataset: str = typer.Option(None, "--dataset", help="Fit on this dataset's accuracies "
                                "(needed when several are stored)."),
    out: Path = typer.Option(..., "--out", help="Where to write the surrogate (JSON)."),
    model: str = typer.Option(None, "--model", help="gp or bayes_ridge; default: the one "
                              "with the best cross-validated Spearman."),
) -> None:
    """Learn trained accuracy from the architecture and its proxy score, with uncertainty."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    from nas.evaluators.surrogate import AccuracySurrogate, feature_names
    from nas.training.surrogate import training_rows

    with Progress("computing features", BarColumn(), MofNCompleteColumn(), console=err_console,
                  transient=True) as progress:
        task = progress.add_task("features", total=None)
        rows, ys, name = training_rows(storage, dataset=dataset,
                                       on_row=lambda: progress.advance(task))
    surrogate = AccuracySurrogate.fit(rows, ys, names=feature_names(4), dataset=name, kind=model)
    surrogate.save(out)
    cv = surrogate.metrics["cv"]
    for kind, m in cv.items():
        console.print(f"{kind:12s} CV ({m['folds']} folds) Spearman {m['spearman']:.3f}  "
                      f"Kendall {m['kendall']:.3f}  MAE {m['mae']:.2f} points  90% interval "
                      f"holds {100 * m['coverage90']:.0f}%")
    console.print(f"saved {surrogate.kind} surrogate on {len(ys)} architectures of {name} to "
                  f"{out}", soft_wrap=True)


@accuracy_app.command("predict")
def accuracy_predict(
    surrogate: Path = typer.Option(..., "--surrogate", help="Accuracy surrogate file (from "
                                   "`swiftnas accuracy fit --out`)."),
    arch: list[str] = typer.Option(..., "--arch", help="ArchConfig JSON file or preset (xs, "
                                   "s, l1, l3); repeat for several."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
) -> None:
    """Predicted top-1 of architectures with its 90% interval, from a fitted surrogate."""
    from nas.evaluators.surrogate import AccuracySurrogate

    from ._common import load_arch

    model = AccuracySurrogate.load(surrogate)  # a bad file fails before any scoring
    archs = [(spec, load_arch(spec)) for spec in arch]
    rows: list[dict[str, Any]] = []
    for spec, a in archs:
        top1, low, high = model.predict_arch(a)
        rows.append({"arch": spec, "arch_key": a.key(), "top1": top1, "low": low, "high": high,
                     "dataset": model.dataset, "surrogate": model.kind})
    if fmt == OutputFormat.json:
        print_json(rows)
        return
    table = Table(title=f"Predicted top-1 on {model.dataset or '?'} ({model.kind} surrogate)")
    for col in ("arch", "top-1 %", "90% interval"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["arch"], f"{r['top1']:.2f}", f"{r['low']:.2f}-{r['high']:.2f}")
    console.print(table)


def train_batch(
    study: str = typer.Option(..., "--study", help="The study whose candidates to train."),
    top: int = typer.Option(None, "--top", help="Train the K most accurate of its feasible "
                            "Pareto front."),
    trials: str = typer.Option(None, "--trials", help="Or these trials, e.g. 3,17,42."),
    data: str = DATA_OPT,
    epochs: int = EPOCHS_OPT,
    resolution: int = RESOLUTION_OPT,
    batch_size: int = BATCH_SIZE_OPT,
    lr: float = LR_OPT,
    train_subset: int = TRAIN_SUBSET_OPT,
    val_subset: int = VAL_SUBSET_OPT,
    seed: int = SEED_OPT,
    workers: int = typer.Option(2, "--workers", help="Trainings at once (Ray tasks): one GPU "
                                "each with CUDA, else an equal share of the CPU threads."),
    ray_address: str = typer.Option(None, "--ray-address", help="An existing Ray cluster "
                                    "(e.g. ray://head:10001); default: a local Ray."),
    out: Path = typer.Option(..., "--out", help="Folder for one sub-folder per candidate "
                             "(metrics, checkpoint); on a cluster a folder all nodes share."),
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help=STORAGE_HELP),
    force: bool = typer.Option(False, "--force", help="Retrain what is already stored."),
) -> None:
    """Train several of a study's candidates at once on Ray workers (resumable)."""
    from nas.storage import open_storage
    from nas.training import TrainRecipe
    from nas.training.batch import parse_trials, run_batch
    from nas.training.data import check_data_spec

    recipe = TrainRecipe(epochs=epochs, resolution=resolution, batch_size=batch_size, lr=lr,
                         seed=seed, train_subset=train_subset, val_subset=val_subset)
    if workers < 1:
        from nas.training import TrainingError

        raise TrainingError(f"--workers must be >= 1, but got {workers}")
    check_data_spec(data)
    jobs = study_jobs(storage, study, top=top, trials=parse_trials(trials))
    store = open_storage(storage)
    err_console.print(f"training {len(jobs)} candidates of {study!r} on {workers} workers")

    def on_done(job: Any, result: Any, cached: bool) -> None:
        how = "already stored" if cached else f"{result.train_seconds:.0f} s"
        console.print(f"{job.label}: top-1 {result.top1:.2f}% ({how})")

    results = run_batch(jobs, data, recipe, out, store=store, workers=workers,
                        ray_address=ray_address, force=force, on_done=on_done)
    console.print(f"{len(results)} trained accuracies stored in {store.url}", soft_wrap=True)


# ------------------------------------------------------------ a study's candidates to train
# (here, where both the search and the training layers may be imported)
def study_trial_arch(storage_url: str, study: str, trial: int) -> ArchConfig:
    """The ArchConfig of a study's complete trial."""
    from nas.search import load_study
    from nas.search.results import get_trial
    from nas.search.spec import ATTR
    from search_spaces import ArchConfig

    loaded = load_study(storage_url, study)
    frozen = get_trial(loaded, trial)
    if frozen is None or ATTR not in frozen.user_attrs:
        hint = command_hint("pareto", "--study", study, storage=storage_url)
        from nas.training import TrainingError

        raise TrainingError(f"study {study!r} has no complete trial {trial}; `{hint}` lists "
                            "its trials")
    return ArchConfig.from_dict(frozen.user_attrs[ATTR]["arch"])


def study_jobs(storage_url: str, study: str, *, top: int | None,
               trials: list[int] | None) -> list[Any]:
    """The candidates to train: the ``top`` most accurate of the feasible Pareto front, or the
    named trials."""
    from nas.search import load_study, study_front
    from nas.search.results import get_trial
    from nas.search.spec import ATTR
    from nas.training import TrainingError
    from nas.training.batch import BatchJob

    if (top is None) == (trials is None):
        raise TrainingError("give exactly one of --top K and --trials N,M,...")
    loaded = load_study(storage_url, study)
    if top is not None:
        if top <= 0:
            raise TrainingError(f"--top must be a positive number, but got {top}")
        front = study_front(loaded.study)
        if not front:
            raise TrainingError(f"study {study!r} has no feasible Pareto front yet; run more "
                                "trials or name --trials")
        best = sorted(front, key=lambda c: -c.accuracy_score)[:top]
        return [BatchJob(f"trial_{c.trial}", c.arch.to_json(indent=None)) for c in best]
    jobs = []
    for number in trials or []:
        frozen = get_trial(loaded, number)
        if frozen is None or ATTR not in frozen.user_attrs:
            raise TrainingError(f"study {study!r} has no complete trial {number}")
        from search_spaces import ArchConfig

        arch = ArchConfig.from_dict(frozen.user_attrs[ATTR]["arch"])
        jobs.append(BatchJob(f"trial_{number}", arch.to_json(indent=None)))
    return jobs
