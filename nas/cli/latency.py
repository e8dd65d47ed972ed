"""``swiftnas latency``: fit, evaluate, predict; Core ML export; import measurements."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from search_spaces.text import command_hint

from ._common import OutputFormat, console, err_console, load_arch, print_json

if TYPE_CHECKING:
    from latency_models import FeatureCache, LatencyPredictor, Measurement

latency_app = typer.Typer(
    rich_markup_mode=None,  # help texts are plain: '.[coreml]' must print as it is

    help="iPhone Core ML latency: fit and evaluate the predictor, predict, export Core ML "
    "packages, import your own measurements.",
    no_args_is_help=True,
)

PREDICTOR_HELP = "Predictor file from `swiftnas latency fit --out` (default: the shipped one)."
SOURCE_HELP = (
    "Measurement protocol group, matched as part of the source name (e.g. 'SwiftFormer', "
    "'iFormer', 'user'). Default: your own imported measurements for the device if any, else "
    "SwiftFormer's published protocol where it measured the device, else the device's largest "
    "group."
)
STORAGE_HELP = "SQLAlchemy URL of the swiftnas storage (default: sqlite:///swiftnas.db)."


def _feature_cache() -> FeatureCache:
    from latency_models import FeatureCache, user_cache_dir
    from latency_models.defaults import CALIBRATION_FEATURES_PATH

    return FeatureCache(user_cache_dir() / "latency_features.json",
                        preload=CALIBRATION_FEATURES_PATH)


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _metrics_table(title: str, metrics: dict[str, Any]) -> Table:
    table = Table(title=title)
    for col in ("group", "rows", "MAPE %", "±10 %", "±20 %", "RMSE ms", "Spearman", "Kendall"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for name, m in [*metrics["groups"].items(), ("overall", metrics["overall"])]:
        if m is None:
            continue
        table.add_row(name, str(m["rows"]), _fmt(m["mape"]), _fmt(m["within_10"]),
                      _fmt(m["within_20"]), _fmt(m["rmse_ms"], 3), _fmt(m["spearman"], 3),
                      _fmt(m["kendall"], 3), end_section=name == "overall")
    return table


def _mixer_lines(mixers: dict[str, Any]) -> None:
    """The leave-one-family-out error over the rows that measure each token mixer."""
    for mixer, m in mixers.items():
        if m is None:
            console.print(f"{mixer}: no fitted family uses it, so it is priced from its "
                          "operations alone", soft_wrap=True, highlight=False)
        else:
            console.print(f"{mixer}: {m['mape']:.1f}% MAPE left out by family ({m['rows']} rows "
                          f"of {', '.join(m['families'])})", soft_wrap=True, highlight=False)


def _measurement_rows(paths: list[Path], storage: str | None) -> tuple[list[Measurement], int]:
    """Every row of the CSV files, then the storage's (`latency import`); and how many of them
    came from the storage. A model measured twice under one protocol is merged into one row at
    the mean latency, with a warning naming both lines."""
    from latency_models import read_measurements
    from latency_models.measurements import merge_duplicates

    rows: list[Measurement] = []
    for path in paths:
        rows += read_measurements(path)
    stored: list[Measurement] = []
    if storage is not None:
        from nas.storage import open_storage

        stored = open_storage(storage, create=False).measurements()
    merged, notes = merge_duplicates(rows + stored)
    for note in notes:
        err_console.print(f"warning: {note}", soft_wrap=True, highlight=False)
    return merged, len(stored)


# --storage of the commands that fit on measurements: the user's imported rows join the CSVs
IMPORTED_STORAGE: Any = typer.Option(
    None, "--storage", help="Also use measurements imported into this storage with "
    "`swiftnas latency import`.")


@latency_app.command("fit")
def fit(
    measurements: list[Path] = typer.Option(
        None, "--measurements", help="Measurement CSV (repeat for several). Default: the shipped "
        "calibration set (latency_models/data/calibration.csv)."),
    storage: str = IMPORTED_STORAGE,
    out: Path = typer.Option(..., "--out", help="Where to write the predictor (JSON)."),
    cross_validate: bool = typer.Option(
        True, "--cv/--no-cv", help="Leave-one-family-out cross-validation (slower; gives the "
        "metrics and the uncertainty)."),
    # latency_models.predictor.DEFAULT_RIDGE (not imported: the CLI starts without numpy)
    ridge: float = typer.Option(10.0, "--ridge", min=0.0, help="Pull of per-op costs towards a "
                                "shared cost per measure (10: chosen by leave-one-family-out)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
) -> None:
    """Fit a predictor and print its cross-validated metrics per measurement group."""
    from nas.outputs import check_output_path

    check_output_path(out, folder=False, example="predictor.json")
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from latency_models import calibration_csv, fit_predictor
    from latency_models.defaults import PREDICTOR_VERSION

    rows, stored = _measurement_rows(measurements or [calibration_csv()], storage)
    cache = _feature_cache()
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done)

        result = fit_predictor(rows, cache=cache, ridge=ridge, cross_validate=cross_validate,
                               progress=report, version=PREDICTOR_VERSION)
    predictor = result.predictor
    # the shipped file by name, not by this machine's path: the same recipe, the same artifact
    predictor.training["sources"] = [
        "latency_models/data/calibration.csv (shipped)" if p == calibration_csv() else str(p)
        for p in measurements or [calibration_csv()]]
    predictor.training["stored_measurements"] = stored
    predictor.save(out)
    if result.skipped:
        err_console.print(f"note: {len(result.skipped)} row(s) name no timm_name or arch and "
                          "were not used")
    if fmt is OutputFormat.json:
        print_json({"predictor": str(out), "training": predictor.training,
                    "metrics": predictor.metrics})
        return
    if predictor.metrics:
        console.print(_metrics_table("Leave-one-family-out cross-validation",
                                     predictor.metrics))
        _mixer_lines(predictor.metrics.get("mixers") or {})
    console.print(f"wrote {out} ({len(result.rows)} rows, {len(predictor.groups)} groups)")


@latency_app.command("calibrate")
def calibrate_command(
    measurements: list[Path] = typer.Option(
        None, "--measurements", help="Your measurement CSV (calibration schema, latency_ms "
        "filled in; repeat for several)."),
    storage: str = IMPORTED_STORAGE,
    predictor_path: Path = typer.Option(None, "--predictor", help=PREDICTOR_HELP),
    out: Path = typer.Option(..., "--out", help="Where to write the calibrated predictor (JSON)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
) -> None:
    """Calibrate a new phone in seconds: fit only the scale and offset of each measurement
    group in your rows; the shared per-operation costs stay. Five rows chosen by `swiftnas
    latency plan` are enough (README: few-shot calibration). `latency fit` refits everything."""
    from nas.outputs import check_output_path

    check_output_path(out, folder=False, example="predictor.json")
    from latency_models import calibrate
    from latency_models.architectures import check_timm_names
    from latency_models.predictor import usable

    rows, _ = _measurement_rows(measurements or [], storage)
    check_timm_names(rows)
    used, skipped = usable(rows)
    if not used:
        raise typer.BadParameter(
            f"no measurement names a timm_name or arch ({len(rows)} row(s) read); pass "
            "--measurements FILE and/or --storage URL with rows measured on your phone")
    base = _predictor(predictor_path)
    cache = _feature_cache()
    with err_console.status(f"calibrating {len(used)} row(s)"):
        tuned = calibrate(base, used, cache=cache)
    groups = sorted({m.group for m in used})
    report: list[dict[str, Any]] = []
    for g in groups:
        members = [m for m in used if m.group == g]
        errors = [abs(tuned.predict_measurement(m, cache=cache).latency_ms / m.latency_ms - 1)
                  for m in members]
        cal = tuned.groups[g]
        report.append({"group": g, "rows": len(members), "scale": cal.scale,
                       "offset_ms": cal.offset_ms,
                       "fit_mape": 100 * sum(errors) / len(errors)})
    cache.save()
    tuned.training["calibrated_groups"] = report
    tuned.training["calibrated_from"] = [str(p) for p in measurements or []] + (
        [storage] if storage else [])
    tuned.save(out)
    if skipped:
        err_console.print(f"note: {len(skipped)} row(s) name no timm_name or arch and were not "
                          "used")
    if fmt is OutputFormat.json:
        print_json({"predictor": str(out), "groups": report})
        return
    table = Table(title="Calibrated groups (the error is on the rows fitted, not held out)")
    for col in ("group", "rows", "scale", "offset ms", "fit MAPE %"):
        table.add_column(col, justify="left" if col == "group" else "right", overflow="fold")
    for r in report:
        table.add_row(Text(r["group"]), str(r["rows"]), f"{r['scale']:.3f}",
                      f"{r['offset_ms']:.3f}", _fmt(r["fit_mape"]))
    console.print(table)
    console.print(f"wrote {out}; predict with: "
                  + command_hint("latency", "predict", "--predictor", str(out))
                  + " --device DEVICE ...", soft_wrap=True)


def _predictor(path: Path | None) -> LatencyPredictor:
    from latency_models import load_predictor

    return load_predictor(path)


@latency_app.command("predict")
def predict(
    predictor_path: Path = typer.Option(None, "--predictor", help=PREDICTOR_HELP),
    measurements: Path = typer.Option(
        None, "--measurements", help="CSV of models to predict (calibration schema; "
        "latency_ms may be empty). Needs --out."),
    out: Path = typer.Option(None, "--out", help="Output CSV: every input row plus "
                             "predicted_ms, low_ms, high_ms and group."),
    model: str = typer.Option(None, "--model", help="A timm model name."),
    arch: str = typer.Option(None, "--arch", help="An ArchConfig JSON file or a preset name."),
    device: str = typer.Option(None, "--device", help="iPhone model, e.g. 'iPhone 14' "
                               "(`swiftnas latency devices` lists them)."),
    resolution: int = typer.Option(None, "--resolution", min=32, help="Input side in pixels "
                                   "(default: the arch's or the timm model's)."),
    source: str = typer.Option(None, "--source", help=SOURCE_HELP),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
) -> None:
    """Predict latency for one model, or for every row of a CSV."""
    from search_spaces import SwiftNASError

    predictor = _predictor(predictor_path)
    if measurements is not None:
        if out is None:
            raise typer.BadParameter("--measurements needs --out FILE for the predictions")
        from nas.outputs import check_output_path

        check_output_path(out, folder=False, example="predictions.csv")
        _predict_csv(predictor, measurements, out, source)
        return
    if (model is None) == (arch is None):
        raise typer.BadParameter("give exactly one of --model TIMM_NAME, --arch ARCH.json, or "
                                 "--measurements CSV")
    if device is None:
        raise typer.BadParameter("--device is required for a single prediction")
    cfg = load_arch(arch) if arch is not None else None
    if cfg is not None and resolution is not None and resolution % 32:
        raise SwiftNASError(f"--resolution must be a multiple of 32 for an ArchConfig, got "
                            f"{resolution}")
    cache = _feature_cache()
    p = predictor.predict(cfg if cfg is not None else str(model), device=device,
                          resolution=resolution, source=source, cache=cache)
    cache.save()  # the next prediction of this model needs neither torch nor timm
    if cfg is not None and resolution is not None:
        cfg = dataclasses.replace(cfg, resolution=resolution)  # the key names what was predicted
    what = model or (cfg.key() if cfg else "")
    note = predictor.pricing_note(cfg if cfg is not None else str(model))
    if fmt is OutputFormat.json:
        print_json({"model": what, "device": device, **p.to_dict(),
                    "predictor": f"{predictor.name} v{predictor.version}",
                    **({"note": note} if note else {})})
        return
    console.print(Text.assemble(f"{what} on {device}: ", (f"{p.latency_ms:.3f} ms", "bold"),
                                f" (90% interval {p.low_ms:.3f}-{p.high_ms:.3f} ms)\n"
                                f"group: {p.group}" + (f"\nnote: {note}" if note else "")))


def _predict_csv(predictor: LatencyPredictor, path: Path, out: Path, source: str | None) -> None:
    from latency_models import MeasurementError
    from latency_models.measurements import decode_csv, parse_row
    from search_spaces import SwiftNASError
    from search_spaces.files import atomic_write_text

    try:
        text = decode_csv(path.read_bytes(), name=str(path))
    except OSError as exc:
        raise MeasurementError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in reader.fieldnames or []]
    if "device" not in fields or ("timm_name" not in fields and "arch" not in fields):
        raise MeasurementError(f"{path}: needs a 'device' column and a 'timm_name' or 'arch' "
                               f"column (found: {', '.join(fields) or 'none'})")
    cache = _feature_cache()
    rows_out = []
    failed = 0
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "") for k, v in row.items()}
        filled = dict(row, model=row.get("model") or "?", latency_ms=row.get("latency_ms") or "1")
        result = {"predicted_ms": "", "low_ms": "", "high_ms": "", "group": ""}
        try:
            m = parse_row(filled, where=f"{path}:{line}", base=path.parent)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = predictor.predict_measurement(m, cache=cache, source=source or None)
            result = {"predicted_ms": f"{p.latency_ms:.4f}", "low_ms": f"{p.low_ms:.4f}",
                      "high_ms": f"{p.high_ms:.4f}", "group": p.group}
        except (SwiftNASError, RuntimeError) as exc:
            failed += 1
            where = f"{path}:{line}"
            msg = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
            err_console.print(f"warning: no prediction: {msg}")
        rows_out.append({**row, **result})
    if failed == len(rows_out):
        # as `evaluate` does: an output with no prediction in it is a failure, not a result
        raise MeasurementError(f"{path}: no row could be predicted ({failed} row(s); see the "
                               f"warnings above); nothing was written to {str(out)!r}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*fields, "predicted_ms", "low_ms", "high_ms",
                                             "group"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows_out)
    cache.save()
    atomic_write_text(out, buf.getvalue())
    console.print(f"wrote {out}: {len(rows_out) - failed} predicted, {failed} without prediction")


@latency_app.command("evaluate")
def evaluate(
    predictor_path: Path = typer.Option(None, "--predictor", help=PREDICTOR_HELP),
    measurements: Path = typer.Option(..., "--measurements", help="Measurement CSV with "
                                      "latency_ms (calibration schema)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
) -> None:
    """MAPE, share within ±10/20%, RMSE, Spearman and Kendall per group and overall."""
    from latency_models import evaluate_rows, read_measurements
    from search_spaces import SwiftNASError

    predictor = _predictor(predictor_path)
    rows = read_measurements(measurements)
    cache = _feature_cache()
    predicted: list[float | None] = []
    for m in rows:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                predicted.append(predictor.predict_measurement(m, cache=cache).latency_ms)
        except (SwiftNASError, RuntimeError) as exc:
            predicted.append(None)
            err_console.print(f"warning: {m.origin}: not predicted: {exc}")
    cache.save()
    metrics = evaluate_rows(rows, predicted)
    if metrics["overall"] is None:
        raise SwiftNASError(f"{measurements}: no row could be predicted (see warnings above)")
    if fmt is OutputFormat.json:
        print_json({"predictor": f"{predictor.name} v{predictor.version}", **metrics})
        return
    console.print(_metrics_table(f"{predictor.name} v{predictor.version} on {measurements}",
                                 metrics))
    if metrics["unpredicted"]:
        console.print(f"{metrics['unpredicted']} row(s) could not be predicted")


_ARXIV = re.compile(r"arXiv:(?P<id>\S+) \((?P<name>[^,/)]+)[^,)]*(?:, (?P<venue>[^)]+))?\)")
_GITHUB = re.compile(r"github (?P<owner>[^/\s]+)/(?P<repo>\S+) (?P<path>\S+)")
_HF = re.compile(r"Hugging Face (?P<owner>[^/\s]+)/(?P<repo>\S+)")


def short_source(source: str) -> str:
    """A source as a short label that still tells groups apart (full text: ``--format json``):
    "arXiv:2303.15446 (SwiftFormer, ICCV'23)" -> "SwiftFormer ICCV'23", "github
    vladimir-chernykh/coreml-model-zoo vision/classification/alexnet/README.md (commit x)" ->
    "coreml-model-zoo alexnet"."""
    if m := _ARXIV.match(source):
        return " ".join(p.strip() for p in (m["name"], m["venue"] or m["id"]) if p)
    if m := _GITHUB.match(source):
        parts = [p for p in m["path"].split("/") if p and not p.lower().startswith("readme")]
        where = Path(parts[-1]).stem if parts else ""
        return f"{m['repo']} {where}".strip()
    if m := _HF.match(source):
        return f"HF {m['repo']}"
    if source.startswith("developer.apple.com"):
        return "Apple Core ML models page"
    return source if len(source) <= 28 else source[:27] + "…"


@latency_app.command("devices")
def devices(
    predictor_path: Path = typer.Option(None, "--predictor", help=PREDICTOR_HELP),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
) -> None:
    """Devices and measurement groups the predictor is calibrated for."""
    from latency_models.measurements import split_group

    predictor = _predictor(predictor_path)
    if fmt is OutputFormat.json:
        print_json({d: {g: predictor.groups[g].to_dict() for g in gs}
                    for d, gs in predictor.devices().items()})
        return
    # readable at 80 columns: short source labels (full names: --format json), no rules
    table = Table(title=f"{predictor.name} v{predictor.version}: calibrated groups "
                  "(* = the device's default group)", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)
    table.add_column("device", min_width=9)
    table.add_column("*", no_wrap=True)
    table.add_column("source", overflow="fold", min_width=20)
    for col in ("unit", "rows", "sigma log"):
        table.add_column(col, no_wrap=True, justify="left" if col == "unit" else "right")
    for device, groups in predictor.devices().items():
        default = predictor.resolve_group(device)
        for g in groups:
            source, _, unit = split_group(g)
            cal = predictor.groups[g]
            table.add_row(device, "*" if g == default else "", short_source(source), unit,
                          str(cal.rows),
                          _fmt(cal.sigma_log if cal.sigma_log is not None
                               else predictor.pooled_sigma_log, 2))
    console.print(table)


@latency_app.command("export-coreml")
def export_coreml(
    arch: str = typer.Option(None, "--arch", help="An ArchConfig JSON file or a preset name."),
    model: str = typer.Option(None, "--model", help="A timm model name."),
    out: Path = typer.Option(..., "--out", help="Output folder (created)."),
    resolution: int = typer.Option(None, "--resolution", min=32, help="Input side in pixels."),
    input_kind: str = typer.Option("image", "--input",
                                   help="image (RGB, normalisation folded in, what an app "
                                        "feeds) or multiarray (a normalised tensor, for "
                                        "benchmarking)."),
    labels: Path = typer.Option(None, "--labels", help="Text file, one class label per line: "
                                "the package becomes a classifier with that many classes."),
    device: str = typer.Option("iPhone 14", "--device",
                               help="Device whose predicted latency goes into the metadata "
                                    "(--arch only)."),
    verbose: bool = typer.Option(False, "--verbose", help="Show coremltools' own output."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
) -> None:
    """Write a Core ML ML Program (FP16, iOS 16+), its manifest and a measurements.csv row to
    fill in after measuring on a device; image input and metadata by default."""
    from latency_models.coreml import INPUT_KINDS, read_labels
    from latency_models.coreml import export_coreml as run_export

    if (model is None) == (arch is None):
        raise typer.BadParameter("give exactly one of --arch ARCH.json or --model TIMM_NAME")
    if input_kind not in INPUT_KINDS:
        raise typer.BadParameter(f"--input must be one of {', '.join(INPUT_KINDS)}, but got "
                                 f"{input_kind!r}")
    label_list = read_labels(labels) if labels is not None else None
    cfg = load_arch(arch) if arch is not None else None
    prediction = None
    if cfg is not None:
        from latency_models.defaults import load_predictor

        predictor = load_predictor()
        predictor.resolve_group(device)  # an unknown device fails here, before the slow part
        with console.status("predicting its latency..."):
            pred = predictor.predict(device=device, model=cfg, resolution=resolution)
        prediction = {"latency_ms": pred.latency_ms, "low_ms": pred.low_ms,
                      "high_ms": pred.high_ms, "device": device}
    if model is not None:
        from latency_models import default_resolution

        default_resolution(model)  # unknown names fail here, before the slow part
    from nas.outputs import check_output_path

    check_output_path(out, folder=True)
    with console.status("converting to Core ML (about 5-30 s)..."):
        result = run_export(cfg if cfg is not None else str(model), out_dir=out,
                            resolution=resolution, input_kind=input_kind, labels=label_list,
                            prediction=prediction, verbose=verbose)
    if fmt is OutputFormat.json:
        print_json({"package": str(result.package), "manifest": str(result.manifest),
                    **result.info})
        return
    console.print(f"wrote {result.package}\nwrote {result.manifest}")


@latency_app.command("plan")
def plan(
    device: str = typer.Option(..., "--device", help="The phone to calibrate; it may be one the "
                               "predictor has never seen (that is the point)."),
    n: int = typer.Option(5, "--n", min=1, max=50, help="How many models to measure."),
    study: str = typer.Option(None, "--study", help="Also consider this study's feasible "
                              "Pareto front (with --storage)."),
    storage: str = typer.Option("sqlite:///swiftnas.db", "--storage", help=STORAGE_HELP),
    pool: int = typer.Option(32, "--pool", min=0, max=2000, help="Random samples of the search "
                             "space added to the candidates (seeded by --seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the space samples."),
    out: Path = typer.Option(..., "--out", help="Kit folder to create (new or empty)."),
    predictor_path: Path = typer.Option(None, "--predictor", help=PREDICTOR_HELP),
    verbose: bool = typer.Option(False, "--verbose", help="Show coremltools' own output."),
) -> None:
    """Choose the N architectures whose measurement calibrates DEVICE best, and write a
    measurement kit: a Core ML package each, manifest.json, measurements.csv (fill in
    latency_ms, then `swiftnas latency import`) and MEASURE.md. Rule: see latency_models/plan.py."""
    from rich.progress import Progress

    from latency_models.plan import (
        PlanCandidate,
        choose,
        predict_pool,
        reference_device,
        write_kit,
    )
    from nas.outputs import check_output_path
    from search_spaces import PRESETS

    check_output_path(out, folder=True)
    if out.exists() and any(out.iterdir()):
        raise typer.BadParameter(f"--out {str(out)!r} exists and is not empty; choose a new "
                                 "folder")
    predictor = _predictor(predictor_path)
    reference = reference_device(predictor, device)
    candidates = [PlanCandidate(f"preset {name}", arch) for name, arch in PRESETS.items()]
    if study is not None:
        from nas.search import load_study, study_front

        front = study_front(load_study(storage, study).study)
        candidates += [PlanCandidate(f"study {study} trial {c.trial}", c.arch) for c in front]
    from nas.search.spec import SEARCH_SPACE

    candidates += [PlanCandidate(f"space sample {i}", arch)
                   for i, arch in enumerate(SEARCH_SPACE.sample_random(pool, seed=seed))]
    cache = _feature_cache()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"predicting {len(candidates)} candidates on {reference}",
                                 total=len(candidates))
        predicted = predict_pool(predictor, candidates, reference, cache,
                                 on_progress=lambda i, _: progress.update(task, completed=i))
        cache.save()
        chosen = choose(predicted, n)
        task = progress.add_task(f"converting {len(chosen)} models to Core ML",
                                 total=len(chosen))
        files = write_kit(chosen, device=device, reference=reference, out_dir=out,
                          verbose=verbose,
                          on_progress=lambda i, _: progress.update(task, completed=i))
    table = Table(title=f"measure these {len(chosen)} on {device} (predicted on {reference})",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for col in ("model", "from", "predicted ms", "90% interval"):
        table.add_column(col, overflow="fold")
    for i, c in enumerate(chosen):
        table.add_row(f"m{i + 1:02d}", c.label, f"{c.latency_ms:.3f}",
                      f"{c.low_ms:.3f}-{c.high_ms:.3f}")
    console.print(table)
    console.print(f"wrote {out}: {', '.join(f for f in files)}; see {out}/MEASURE.md")


@latency_app.command("import")
def import_measurements(
    file: Path = typer.Argument(..., help="Measurement CSV (calibration schema; see README)."),
    storage: str = typer.Option("sqlite:///swiftnas.db", "--storage", help=STORAGE_HELP),
    new_device: list[str] = typer.Option(
        None, "--new-device", help="Store this device name as a new phone even though it is "
        "close to a known one (repeatable). Names far from every known phone are new anyway; "
        "near misses such as 'iPhnoe 14' are refused without it."),
) -> None:
    """Append your own measurements to the storage; `latency calibrate --storage` (or `latency
    fit --storage`) then uses them.

    Device names are matched to the known phones ignoring case and spaces ('iphone 14 ' is
    stored as 'iPhone 14'); a near miss is refused with a suggestion."""
    from latency_models import read_measurements
    from latency_models.architectures import check_timm_names
    from latency_models.devices import canonical_devices, known_devices
    from latency_models.measurements import merge_duplicates
    from nas.storage import open_storage
    from nas.storage.storage import existing_storage

    rows = read_measurements(file)  # every row validated before anything is written
    check_timm_names(rows)
    # an existing storage's phones are known too; a new one is only created once rows pass
    store = existing_storage(storage)
    known = known_devices(m.device for m in store.measurements()) if store is not None \
        else known_devices()
    rows, new = canonical_devices(rows, known, new_devices=new_device or ())
    rows, notes = merge_duplicates(rows)  # within the file; stored rows stay as they are
    for note in notes:
        err_console.print(f"warning: {note}", soft_wrap=True, highlight=False)
    for device in new:
        err_console.print(f"new device {device!r} (known: {', '.join(known)})", soft_wrap=True)
    store = store or open_storage(storage)
    added = store.add_measurements(rows, origin=str(file))
    total = len(store.measurements())
    console.print(f"imported {added} measurement(s) from {file} into {store.url} "
                  f"({total} stored). Calibrate their phone in seconds: "
                  + command_hint("latency", "calibrate", "--out", "predictor.json",
                                 storage=storage)
                  + " (or refit everything: swiftnas latency fit)", soft_wrap=True)
