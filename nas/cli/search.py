"""``swiftnas search | pareto | export | studies``: run studies and use their results."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.table import Table

from search_spaces.text import command_hint

from ._common import console, err_console, load_arch, print_json

if TYPE_CHECKING:
    from nas.search import Candidate, LoadedStudy

DEFAULT_STORAGE = "sqlite:///swiftnas.db"
STORAGE_HELP = ("SQLAlchemy URL: sqlite:///swiftnas.db (default) or "
                "postgresql+psycopg://user:pass@host/db for teams and clusters.")
STUDY_HELP = "Study name (`swiftnas studies` lists them)."


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def search(
    study: str = typer.Option(None, "--study", help="Study name; re-running `search` with the "
                              "same name resumes it. Required here or in --config."),
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
    device: str = typer.Option(None, "--device", help="Target iPhone (default 'iPhone 14'; "
                               "`swiftnas latency devices` lists them)."),
    latency_budget_ms: float = typer.Option(
        None, "--latency-budget-ms", help="Predicted-latency budget in ms: candidates above it "
        "are infeasible (an Optuna constraint). Required here or in --config."),
    trials: int = typer.Option(None, "--trials", help="Complete trials the study should hold "
                               "(default 100); a resumed study runs only the missing ones."),
    sampler: str = typer.Option(None, "--sampler", help="nsga2 (default), tpe or random."),
    workers: int = typer.Option(None, "--workers", help="Ray workers evaluating in parallel "
                                "(default 0: evaluate in this process, no Ray)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Existing Ray cluster "
                                    "(e.g. ray://head:10001); default: start a local Ray."),
    seed: int = typer.Option(None, "--seed", help="Sampler seed (default 0)."),
    population_size: int = typer.Option(None, "--population-size",
                                        help="NSGA-II generation size (default 10, the best at "
                                        "a few hundred trials; raise it for thousands)."),
    predictor: Path = typer.Option(None, "--predictor", help="Latency predictor file from "
                                   "`swiftnas latency fit` (default: the shipped one)."),
    accuracy: str = typer.Option(
        None, "--accuracy", help="The accuracy objective: proxy (default: the training-free "
        "score), surrogate (predicted top-1 of --surrogate, from `swiftnas accuracy fit`) or "
        "trained (the proxy search, then train the candidates the surrogate's upper confidence "
        "bound picks on the front: --train-data, --train-budget)."),
    train_data: str = typer.Option(None, "--train-data", help="With --accuracy trained: "
                                   "'fashion-mnist' or an image folder (as `swiftnas train`)."),
    train_budget: int = typer.Option(None, "--train-budget", help="With --accuracy trained: "
                                     "how many of the study's candidates to train in all "
                                     "(a resumed study counts what it has)."),
    train_out: Path = typer.Option(None, "--train-out", help="With --accuracy trained: folder "
                                   "of the trainings' checkpoints (default swiftnas-runs/STUDY)."),
    train_minutes: float = typer.Option(None, "--train-minutes", help="With --accuracy trained: "
                                        "start no training after this many minutes (those "
                                        "under way finish); default: no time limit."),
    surrogate: Path = typer.Option(None, "--surrogate", help="Accuracy surrogate file (with "
                                   "--accuracy surrogate)."),
    heartbeat_interval: int = typer.Option(
        None, "--heartbeat-interval", help="Seconds between trial heartbeats (default 10). A "
        "killed run's trials are failed and retried once silent for twice this."),
    presets: bool = typer.Option(
        None, "--presets/--no-presets", help="Start a new study from SwiftFormer's presets "
        "(XS/S/L1/L3, those the space contains) as its first trials (default: on), so its "
        "front is never worse than the hand designs. --no-presets starts from the sampler "
        "alone (benchmarks comparing samplers)."),
    space: str = typer.Option(None, "--space", help="Search space: default (SwiftFormer's "
                              "depths, widths, MLP ratios and attention placement) or mixers "
                              "(also the token mixer per stage: additive, mhsa, separable)."),
    start_from: list[str] = typer.Option(None, "--start-from", help="ArchConfig JSON file or "
                                         "preset to evaluate first (repeat for several); it "
                                         "must be in the search space."),
    config: Path = typer.Option(None, "--config", help="study.toml with any of these options "
                                "(same names, underscores) plus [space] and [proxy] tables; "
                                "flags override it."),
) -> None:
    """Run (or resume) a multi-objective search: accuracy score up, predicted latency down."""
    from nas.search import SearchError, StudySpec, read_config, run_study

    cfg: dict[str, Any] = read_config(config) if config else {}
    flags = {"study": study, "storage": storage, "device": device,
             "latency_budget_ms": latency_budget_ms, "trials": trials, "sampler": sampler,
             "workers": workers, "ray_address": ray_address, "seed": seed,
             "population_size": population_size,
             "predictor": str(predictor) if predictor else None,
             "heartbeat_interval": heartbeat_interval, "accuracy": accuracy,
             "surrogate": str(surrogate) if surrogate else None, "presets": presets,
             "train_data": train_data, "train_budget": train_budget,
             "train_out": str(train_out) if train_out else None, "train_minutes": train_minutes,
             "start_from": start_from or None}
    if space is not None:
        from nas.search.spec import search_space

        flags["space"] = search_space(space)
    opts = {**cfg, **{k: v for k, v in flags.items() if v is not None}}
    for key, flag in (("study", "--study NAME"), ("latency_budget_ms", "--latency-budget-ms X")):
        if key not in opts:
            raise SearchError(f"missing {flag}; give it as a flag or in --config")
    url = opts.get("storage", DEFAULT_STORAGE)
    n_trials = int(opts.get("trials", 100))
    objective = opts.get("accuracy", "proxy")
    if objective not in ("proxy", "surrogate", "trained"):
        raise SearchError(f"--accuracy must be proxy, surrogate or trained, but got "
                          f"{objective!r}")
    training = [k for k in ("train_data", "train_budget", "train_out", "train_minutes")
                if k in opts]
    if objective == "trained":
        if "train_data" not in opts or "train_budget" not in opts:
            raise SearchError("--accuracy trained needs --train-data (e.g. fashion-mnist) and "
                              "--train-budget N (trainings in all, e.g. 12)")
        from nas.multifidelity import check_train_options

        minutes = opts.get("train_minutes")  # checked before any trial: one-line errors
        check_train_options(int(opts["train_budget"]),
                            None if minutes is None else float(minutes))
        if "surrogate" in opts:
            raise SearchError("--accuracy trained fits its own surrogate on the study's "
                              "trainings (the dataset and recipe of --train-data), so a "
                              "surrogate fitted on other data cannot mix in; drop --surrogate")
    elif training:
        raise SearchError(f"--{training[0].replace('_', '-')} needs --accuracy trained")
    if (objective == "surrogate") != ("surrogate" in opts):
        raise SearchError("--accuracy surrogate and --surrogate FILE go together (fit one with "
                          "`swiftnas accuracy fit --out FILE`)")
    spec = StudySpec(
        name=str(opts["study"]), latency_budget_ms=opts["latency_budget_ms"],
        device=opts.get("device", "iPhone 14"), sampler=opts.get("sampler", "nsga2"),
        seed=opts.get("seed", 0), population_size=int(opts.get("population_size", 10)),
        predictor_path=opts.get("predictor"), surrogate_path=opts.get("surrogate"),
        start_from_presets=bool(opts.get("presets", True)),
        start_archs=tuple(load_arch(str(a)) for a in opts.get("start_from", ())),
        **{k: opts[k] for k in ("space", "proxy") if k in opts},
    )
    if objective == "trained":
        from nas.training.data import check_data_spec

        check_data_spec(str(opts["train_data"]))  # before any trial: a one-line error
    else:
        _refuse_trained_study(url, spec.name, objective)
    _quiet_optuna()
    reporter = (_BarReporter if err_console.is_terminal else _LineReporter)(spec.name, n_trials)
    try:
        progress = run_study(
            spec, url, n_trials, workers=int(opts.get("workers", 0)),
            ray_address=opts.get("ray_address"),
            heartbeat_interval=int(opts.get("heartbeat_interval", 10)),
            on_start=reporter.start, on_progress=reporter.show)
    finally:
        reporter.stop()
    if progress.interrupted:
        err_console.print(f"interrupted: {progress.complete} complete trial(s) are stored; "
                          "run the same command again to resume")
        raise typer.Exit(130)
    err_console.print(
        f"study {spec.name}: {progress.complete} complete ({progress.completed_this_run} this "
        f"run, {progress.cache_hits} already evaluated: an architecture proposed again, or "
        f"one this storage knew), {progress.feasible} feasible, "
        f"{progress.failed_this_run} failed in this run ({progress.failed} in the study), "
        f"{progress.trials_per_minute:.1f} trials/min")
    if objective == "trained":
        _train_front(url, spec.name, opts)
    _print_front(_load(url, spec.name), fmt="table", summary_after=progress.complete)


def _top1_cell(top: tuple[str, float, float | None, float | None] | None) -> Any:
    """Measured top-1 in bold; a prediction with its 90% interval, marked "~"."""
    from rich.text import Text

    if top is None:
        return "-"
    source, top1, low, high = top
    if source == "measured":
        return Text(f"{top1:.2f} measured", style="bold")
    return Text(f"~{top1:.2f} ({low:.1f}-{high:.1f})")


def _existing_attrs(url: str, name: str) -> dict[str, Any] | None:
    """The user attributes of study ``name`` when the storage and the study exist."""
    from nas.search.study import optuna_storage
    from nas.storage.storage import existing_storage

    if existing_storage(url) is None:
        return None
    for summary in optuna_storage(url, create=False).get_all_studies():
        if summary.study_name == name:
            return dict(summary.user_attrs)
    return None


def _refuse_trained_study(url: str, name: str, objective: str) -> None:
    from nas.search import SearchError
    from nas.search.accuracy import TRAINING_ATTR

    attrs = _existing_attrs(url, name)
    if attrs is not None and TRAINING_ATTR in attrs:
        raise SearchError(f"study {name!r} was started with --accuracy trained, not "
                          f"{objective}; resume it with --accuracy trained --train-data "
                          "--train-budget, or choose a new --study")


def _train_front(url: str, name: str, opts: dict[str, Any]) -> None:
    from nas.multifidelity import TrainingEvent, train_front

    def show(e: TrainingEvent) -> None:
        if e.kind == "start":
            err_console.print(f"training trial {e.trial} ({e.trained}/{e.budget} trained)",
                              highlight=False)
        else:
            err_console.print(f"trained trial {e.trial}: top-1 {e.top1:.2f}% "
                              f"({e.trained}/{e.budget} trained)", highlight=False)

    out = Path(opts.get("train_out") or Path("swiftnas-runs") / name)
    minutes = opts.get("train_minutes")
    report = train_front(url, name, data=str(opts["train_data"]),
                         budget=int(opts["train_budget"]), out=out, on_event=show,
                         workers=int(opts.get("workers", 0)),
                         ray_address=opts.get("ray_address"),
                         time_budget_s=None if minutes is None else 60 * float(minutes))
    err_console.print(f"study {name}: {report.trained} candidate(s) trained ({report.new} in "
                      f"this run), budget {report.budget}", highlight=False)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def _say_resumed(p: Any) -> None:
    if p.resumed_with:
        err_console.print(f"resuming with the study's own latency predictor ({p.resumed_with}), "
                          "not this swiftnas's shipped one; a new --study uses the shipped one",
                          soft_wrap=True, highlight=False)


class _BarReporter:
    """A rich progress bar, for a terminal."""

    def __init__(self, name: str, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        # markup off: the study name is user text
        self.bar = Progress(TextColumn("{task.description}", markup=False,
                                       style="progress.description"),
                            BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}", markup=False),
                            TimeElapsedColumn(), console=err_console)
        self.task = self.bar.add_task(f"study {name}", total=total, info="starting",
                                      start=False)

    def start(self, p: Any) -> None:  # after validation: errors never print a half-drawn bar
        _say_resumed(p)
        self.bar.start()
        self.bar.start_task(self.task)
        self.show(p)

    def show(self, p: Any) -> None:
        best = "-" if p.best_feasible is None else f"{p.best_feasible:.3f}"
        self.bar.update(self.task, completed=p.complete, info=(
            f"feasible {p.feasible} (best {best}) | pareto {p.pareto_size} | failed "
            f"{p.failed} | {p.trials_per_minute:.1f}/min"))

    def stop(self) -> None:
        self.bar.stop()


class _LineReporter:
    """Plain progress lines for a log file or a pipe: no redrawing, no escape codes, at most
    one line every ``every_s`` seconds (and one when the target is reached)."""

    every_s = 5.0

    def __init__(self, name: str, total: int) -> None:
        self.name, self.total = name, total
        self.last = -float("inf")

    def start(self, p: Any) -> None:
        _say_resumed(p)
        self._line(p)

    def show(self, p: Any) -> None:
        if time.monotonic() - self.last >= self.every_s or p.complete >= self.total:
            self._line(p)

    def _line(self, p: Any) -> None:
        self.last = time.monotonic()
        best = "-" if p.best_feasible is None else f"{p.best_feasible:.3f}"
        err_console.print(f"study {self.name}: {p.complete}/{self.total} trials, best "
                          f"feasible score {best}, {p.failed} failed, ETA "
                          f"{_duration(p.eta_seconds)}",
                          soft_wrap=True, highlight=False)

    def stop(self) -> None:
        pass


def _load(storage: str, study: str) -> LoadedStudy:
    from nas.search import load_study

    _quiet_optuna()
    return load_study(storage, study)


def _front(loaded: LoadedStudy) -> tuple[list[Candidate], list[Candidate]]:
    from nas.search import reference_candidates, study_front

    refs = reference_candidates(loaded)
    return study_front(loaded.study, references=refs), refs


def _preset_summary(front: list[Candidate], refs: list[Candidate], budget_ms: float,
                    trials: int) -> str:
    """Which presets within the budget the front dominates, or how far the search usually
    has to go (measured by `python -m benchmarks.search demo`)."""
    from nas.search.study import DEMO_TRIALS_TO_DOMINATE

    def short(name: str) -> str:
        return name.removeprefix("SwiftFormer-")

    fitting = [r.name for r in refs if r.latency_ms <= budget_ms]
    if not fitting:
        return f"no SwiftFormer preset fits the {budget_ms:g} ms budget"
    dominated = sorted({d for c in front for d in c.dominates if d in fitting})
    if dominated:
        rest = [short(n) for n in fitting if n not in dominated]
        return (f"the front dominates {', '.join(map(short, dominated))} (of the presets "
                f"within {budget_ms:g} ms: {', '.join(map(short, fitting))})"
                + (f"; {', '.join(rest)} {'is' if len(rest) == 1 else 'are'} on the front "
                   "itself, not yet beaten" if rest else ""))
    usual = [f"{short(n)} after {DEMO_TRIALS_TO_DOMINATE[n]:g}" for n in fitting
             if n in DEMO_TRIALS_TO_DOMINATE]
    return (f"no preset within {budget_ms:g} ms is dominated yet after {trials} trials (the "
            f"front holds {', '.join(map(short, fitting))} themselves)"
            + (f"; in `make demo`'s study, NSGA-II first beat {', '.join(usual)} trials "
               "(median of 5 seeds, benchmarks/search.py demo): raise --trials to go on"
               if usual else ""))


def _print_front(loaded: LoadedStudy, *, fmt: str, summary_after: int | None = None) -> None:
    """The front as ``fmt``; with ``summary_after`` (the search's complete trials) the table
    ends with which presets it beats (``_preset_summary``)."""
    front, refs = _front(loaded)
    from nas.search.accuracy import trained_top1

    tops = trained_top1(loaded, [*front, *refs])  # empty unless the study trains its front
    # the mixer column where the study searches mixers (or its front has one)
    mixers = loaded.searches_mixers or any(c.arch.mixers - {"additive"} for c in front)

    def with_top1(c: Any) -> dict[str, Any]:
        row = {**c.to_row(), **({"mixers": c.mixers()} if mixers else {})}
        if not tops:
            return row
        source, top1, low, high = tops.get(c.arch.key(), ("", None, None, None))
        return {**row, "top1": top1, "top1_source": source or None, "top1_low": low,
                "top1_high": high}

    if fmt == "json":
        print_json({"study": loaded.name, "device": loaded.device,
                    "latency_budget_ms": loaded.budget_ms,
                    "front": [with_top1(c) for c in front],
                    "references": [with_top1(r) for r in refs]})
        return
    if fmt == "csv":
        rows = [{"kind": "front", **with_top1(c)} for c in front]
        rows += [{"kind": "reference", **with_top1(r)} for r in refs]
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            row["dominates"] = ";".join(row["dominates"])
            writer.writerow(row)
        return
    surrogate = any(c.accuracy_low is not None for c in [*front, *refs])
    what = "predicted top-1 % (surrogate)" if surrogate else "score: higher is better"
    table = Table(title=f"Feasible Pareto front of {loaded.name!r} on {loaded.device}, "
                  f"budget {loaded.budget_ms:g} ms ({what})")
    for col in ("trial", "top-1 %" if surrogate else "score", *(["top-1 90%"] if surrogate else []),
                *(["trained top-1 %"] if tops else []), "latency ms", "90% interval", "params M",
                "GMACs", "attn", *(["mixers A/M/S"] if mixers else []), "dominates"):
        table.add_column(col, justify="left" if col in ("trial", "dominates") else "right")
    for c in [*front, *refs]:
        table.add_row(
            str(c.trial) if c.trial is not None else c.name.removeprefix("SwiftFormer-"),
            f"{c.accuracy_score:.3f}" if not surrogate else f"{c.accuracy_score:.2f}",
            *([f"{c.accuracy_low:.1f}-{c.accuracy_high:.1f}"] if surrogate else []),
            *([_top1_cell(tops.get(c.arch.key()))] if tops else []),
            f"{c.latency_ms:.3f}", f"{c.latency_low_ms:.2f}-{c.latency_high_ms:.2f}",
            f"{c.params / 1e6:.2f}", f"{c.macs / 1e9:.3f}", str(c.arch.num_attn_blocks),
            *([c.mixers(short=True)] if mixers else []),
            ", ".join(d.removeprefix("SwiftFormer-") for d in c.dominates) or "-",
            style=None if c.trial is not None else "dim",
            end_section=c is front[-1] if front else False,
        )
    console.print(table)
    if not front:
        console.print("no feasible trial yet: raise --latency-budget-ms or run more trials")
    elif summary_after is not None:
        console.print(_preset_summary(front, refs, loaded.budget_ms, summary_after),
                      soft_wrap=True, highlight=False)
    from latency_models.measurements import DEFAULT_SOURCE, group_source

    published = sorted({c.latency_group for c in [*front, *refs] if c.latency_group
                        and group_source(c.latency_group) != DEFAULT_SOURCE})
    if published:  # the issue users hit first: a published protocol is not their phone
        console.print(
            f"latencies are predicted from published measurements ({'; '.join(published)}), "
            "not from your phone; to calibrate them, measure 5 models it picks: "
            + command_hint("latency", "plan", "--device", loaded.device, "--study", loaded.name,
                           storage=loaded.storage.url) + " --out KIT", soft_wrap=True)
    # soft_wrap: commands to copy are never broken across lines
    console.print("export one: " + command_hint("export", "--study", loaded.name,
                                                storage=loaded.storage.url)
                  + " --trial N --out DIR", soft_wrap=True)


def pareto(
    study: str = typer.Option(..., "--study", help=STUDY_HELP),
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help=STORAGE_HELP),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
) -> None:
    """Print a study's feasible Pareto front, with SwiftFormer XS/S/L1/L3 for reference.

    One row per architecture; the presets are scored by the study's proxy and predictor, and
    each row names the presets it dominates.
    """
    from nas.search import SearchError

    if fmt not in ("table", "csv", "json"):
        raise SearchError(f"unknown --format {fmt!r}; use table, csv or json")
    _print_front(_load(storage, study), fmt=fmt)


def export(
    study: str = typer.Option(..., "--study", help=STUDY_HELP),
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help=STORAGE_HELP),
    trial: int = typer.Option(..., "--trial", help="Trial number (see `swiftnas pareto`)."),
    out: Path = typer.Option(..., "--out", help="Folder to create (must be new or empty)."),
    coreml: bool = typer.Option(False, "--coreml", help="Also write the Core ML package "
                                "(needs `pip install -e '.[coreml]'`; about 10 s)."),
    coreml_input: str = typer.Option("image", "--coreml-input",
                                     help="Core ML input: image (RGB, normalisation folded in, "
                                          "what an app feeds) or multiarray (benchmarking)."),
    labels: Path = typer.Option(None, "--labels", help="With --coreml: a text file, one class "
                                "label per line; the package becomes a classifier."),
    verbose: bool = typer.Option(False, "--verbose", help="Show coremltools' own output."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
) -> None:
    """Export a trial as files to train it right away.

    Writes arch.json, model.py (registers the model with timm), train.sh (runs `swiftnas
    train`), train_timm.sh (timm's train.py), MODEL_CARD.md and export.json; with --coreml also
    the Core ML package, its manifest and a measurements.csv to fill in.
    """
    from latency_models.coreml import INPUT_KINDS, read_labels
    from nas.search import SearchError, export_trial

    if coreml_input not in INPUT_KINDS:
        raise SearchError(f"--coreml-input must be one of {', '.join(INPUT_KINDS)}, but got "
                          f"{coreml_input!r}")
    if labels is not None and not coreml:
        raise SearchError("--labels applies to the Core ML package; add --coreml")
    label_list = read_labels(labels) if labels is not None else None
    result = export_trial(_load(storage, study), trial, out, coreml=coreml,
                          coreml_input=coreml_input, labels=label_list, verbose=verbose,
                          overwrite=force)
    console.print(f"exported trial {trial} of {study!r} as {result.model_name} to {out}:")
    for name in result.files:
        if ".mlpackage/" not in name or name.endswith("Manifest.json"):
            console.print(f"  {name}")
    console.print(f"train: {out}/train.sh DATA  (an ImageFolder root with train/ and val/, or "
                  "fashion-mnist)")


def studies(
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help=STORAGE_HELP),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """List the storage's studies with trial counts and status."""
    from nas.search import list_studies

    _quiet_optuna()
    rows = list_studies(storage)
    if fmt == "json":
        print_json(rows)
        return
    # readable at 80 columns: short headers, no vertical rules, names folded rather than cut
    table = Table(title=f"Studies in {storage}", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, padding=(0, 1), collapse_padding=True)
    table.add_column("study", overflow="fold", min_width=10)
    table.add_column("device", min_width=9)
    for col in ("budget", "sampler", "done", "feasible", "run/fail", "updated"):
        table.add_column(col, justify="left" if col in ("sampler", "updated") else "right",
                         no_wrap=True)
    this_year = time.strftime("%Y")
    for r in rows:
        budget = r["latency_budget_ms"]
        updated = (r["last_update"] or "-").replace("T", " ")[:16]  # UTC, to the minute
        if updated.startswith(this_year):
            updated = updated[5:]  # "12-02 22:40" this year, the full date before
        table.add_row(r["study"], r["device"], "-" if budget is None else f"{budget:g} ms",
                      r["sampler"], str(r["complete"]), str(r["feasible"]),
                      f"{r['running']}/{r['failed']}", updated)
    console.print(table)
    for r in rows:
        if r["stale"]:
            console.print(
                f"study {r['study']}: {r['stale']} trial(s) listed as running are stale (no "
                f"heartbeat for {r['stale_minutes']:g} min; the next search fails it)",
                soft_wrap=True, highlight=False)
    if not rows:
        console.print("no studies yet: start one with `swiftnas search --study NAME "
                      "--latency-budget-ms X`")
