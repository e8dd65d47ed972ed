"""Trained accuracies in SQL: stored by ``swiftnas train``, imported from a CSV, listed.

Every write is one transaction (``Storage.session``): an import stores all its rows or none.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from nas.evaluators.trained import same_experiment
from nas.storage import Storage
from nas.storage.models import TrainedResultRow

from .errors import TrainingError

if TYPE_CHECKING:  # torch: `proxy evaluate --benchmark trained` imports it when it runs
    from nas.proxies.evaluate import ModelSpec

IMPORT_COLUMNS = ("arch", "study", "trial", "dataset", "recipe", "top1", "top5")
MAX_IMPORT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class TrainedResult:
    arch_key: str
    arch_json: str
    dataset: str
    dataset_digest: str
    recipe_key: str
    recipe_label: str
    top1: float
    top5: float | None
    train_seconds: float | None
    device: str
    source: str
    origin: str

    @classmethod
    def from_row(cls, r: TrainedResultRow) -> TrainedResult:
        return cls(r.arch_key, r.arch_json, r.dataset, r.dataset_digest, r.recipe_key,
                   r.recipe_label, r.top1, r.top5, r.train_seconds, r.device, r.source, r.origin)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def find_result(store: Storage, *, arch_key: str, dataset: str, dataset_digest: str,
                recipe_key: str) -> TrainedResult | None:
    with store.session() as session:
        row = session.scalars(sa.select(TrainedResultRow).where(
            *same_experiment(arch_key, dataset, dataset_digest, recipe_key))).first()
        return TrainedResult.from_row(row) if row else None


def _replace(session: Any, r: TrainedResult, *, recipe_json: str, versions_json: str) -> None:
    """Insert ``r``, replacing a stored row of the same experiment."""
    session.execute(sa.delete(TrainedResultRow).where(
        *same_experiment(r.arch_key, r.dataset, r.dataset_digest, r.recipe_key)))
    session.add(TrainedResultRow(**r.to_dict(), recipe_json=recipe_json,
                                 versions_json=versions_json))


def store_result(store: Storage, result: TrainedResult, *, recipe_json: str,
                 versions: dict[str, str]) -> None:
    """Insert, or replace the same experiment's row (``--force``), in one transaction."""
    with store.session(write=True) as session:
        _replace(session, result, recipe_json=recipe_json, versions_json=json.dumps(versions))


def list_results(store: Storage, *, dataset: str | None = None) -> list[TrainedResult]:
    query = sa.select(TrainedResultRow).order_by(TrainedResultRow.id)
    if dataset is not None:
        query = query.where(TrainedResultRow.dataset == dataset)
    with store.session() as session:
        return [TrainedResult.from_row(r) for r in session.scalars(query)]


# ------------------------------------------------------------------------------ import
def _arch_of(row: dict[str, str], where: str, base: Path, study_arch: Any) -> Any:
    """The ArchConfig a row names: inline JSON, a path to a JSON file (relative to the CSV),
    a preset name, or a study and trial."""
    from search_spaces import PRESETS, ArchConfig, SwiftNASError, get_preset

    arch, study, trial = (row.get(c, "").strip() for c in ("arch", "study", "trial"))
    if arch and (study or trial):
        raise TrainingError(f"{where}: give either arch or study+trial, not both")
    try:
        if arch.startswith("{"):
            return ArchConfig.from_json(arch)
        if arch in PRESETS:
            return get_preset(arch)
        if arch:
            path = Path(arch) if Path(arch).is_absolute() else base / arch
            if not path.is_file():
                raise TrainingError(f"{where}: arch {arch!r} is neither ArchConfig JSON, a "
                                    f"preset ({', '.join(PRESETS)}) nor an existing JSON file")
            return ArchConfig.from_file(path)
    except TrainingError:
        raise
    except SwiftNASError as exc:
        raise TrainingError(f"{where}: {exc}") from None
    if study and trial:
        if not trial.isdigit():
            raise TrainingError(f"{where}: trial must be a trial number, but got {trial!r}")
        return study_arch(study, int(trial), where)
    raise TrainingError(f"{where}: the row names no architecture; fill the arch column (JSON, "
                        "a JSON file or a preset) or study and trial")


def _percent(value: str, column: str, where: str, *, required: bool) -> float | None:
    if not value.strip():
        if required:
            raise TrainingError(f"{where}: {column} is empty; give the accuracy in percent")
        return None
    try:
        number = float(value)
    except ValueError:
        raise TrainingError(f"{where}: {column} must be a number in percent, but got "
                            f"{value[:40]!r}") from None
    if not 0.0 <= number <= 100.0:
        raise TrainingError(f"{where}: {column} must be a percentage in [0, 100], but got "
                            f"{number:g}; e.g. 78.5, not 0.785")
    return number


def parse_import(path: Path, *, study_arch: Any) -> list[TrainedResult]:
    """Validate every row and column of an accuracy CSV; the first problem raises a one-line
    ``TrainingError`` naming the line (nothing is stored then)."""
    try:
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise TrainingError(f"{str(path)!r} is larger than 64 MiB; split it")
        raw = path.read_bytes()
    except OSError as exc:
        raise TrainingError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TrainingError(f"{str(path)!r} is not a UTF-8 text CSV file; export it as CSV "
                            "with the columns " + ", ".join(IMPORT_COLUMNS)) from None
    if "\x00" in text:
        raise TrainingError(f"{str(path)!r} is not a text CSV file (it holds NUL bytes)")
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in ("dataset", "recipe", "top1") if c not in header]
    if missing or not ({"arch"} & set(header) or {"study", "trial"} <= set(header)):
        raise TrainingError(
            f"{str(path)!r} lacks the column(s) {', '.join(missing) or 'arch (or study, trial)'};"
            f" the header must include dataset, recipe, top1 and arch or study+trial "
            f"(optional: top5)")
    unknown = [h for h in header if h not in IMPORT_COLUMNS]
    if unknown:
        raise TrainingError(f"{str(path)!r}: unknown column(s) {', '.join(unknown)[:200]}; "
                            f"known: {', '.join(IMPORT_COLUMNS)}")
    out: list[TrainedResult] = []
    seen: set[tuple[str, str, str]] = set()
    for line, raw_row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in raw_row.items()}
        where = f"{path.name} line {line}"
        if None in raw_row:
            raise TrainingError(f"{where}: more fields than header columns")
        arch = _arch_of(row, where, path.parent, study_arch)
        dataset, recipe = row["dataset"].strip(), row["recipe"].strip()
        for column, value, limit in (("dataset", dataset, 256), ("recipe", recipe, 256)):
            if not value:
                raise TrainingError(f"{where}: {column} is empty; name it (e.g. imagenet-1k, "
                                    "'300ep timm train.py')")
            if len(value) > limit:
                raise TrainingError(f"{where}: {column} is {len(value)} characters long; at "
                                    f"most {limit}")
        top1 = _percent(row["top1"], "top1", where, required=True)
        top5 = _percent(row.get("top5", ""), "top5", where, required=False)
        ident = (arch.key(), dataset, recipe)
        if ident in seen:
            raise TrainingError(f"{where}: the same architecture, dataset and recipe appear "
                                "twice in this file")
        seen.add(ident)
        assert top1 is not None
        out.append(TrainedResult(arch.key(), arch.to_json(indent=None), dataset, "",
                                 f"label:{recipe}", recipe, top1, top5, None, "", "import",
                                 f"{path}:{line}"[:2048]))
    if not out:
        raise TrainingError(f"{str(path)!r} has a header but no rows")
    return out


def import_results(store: Storage, results: list[TrainedResult]) -> int:
    """Store all rows in one transaction (a re-import of a row replaces it)."""
    with store.session(write=True) as session:
        for r in results:
            _replace(session, r, recipe_json=json.dumps({"label": r.recipe_label}),
                     versions_json="{}")
    return len(results)


def experiment_identity(arch_key: str, dataset: str, dataset_digest: str,
                        recipe: Any) -> dict[str, str]:
    """What makes two trainings the same experiment (the cache key of the results table)."""
    return {"arch_key": arch_key, "dataset": dataset, "dataset_digest": dataset_digest,
            "recipe_key": recipe.key()}


def record_training(store: Storage, ident: dict[str, str], *, arch_json: str, outcome: Any,
                    recipe: Any, origin: str, versions: dict[str, str]) -> TrainedResult:
    """Store a finished training (``outcome``: the trainer's result) and return its row."""
    result = TrainedResult(
        arch_key=ident["arch_key"], arch_json=arch_json, dataset=ident["dataset"],
        dataset_digest=ident["dataset_digest"], recipe_key=ident["recipe_key"],
        recipe_label=recipe.label(), top1=outcome.top1, top5=outcome.top5,
        train_seconds=outcome.train_seconds, device=outcome.device, source="train",
        origin=origin[:2048])
    store_result(store, result, recipe_json=json.dumps(recipe.to_dict(), sort_keys=True),
                 versions=versions)
    return result


# ------------------------------------------------------------------ proxy benchmark
def trained_specs(storage_url: str, *, dataset: str | None = None,
                  resolution: int = 64) -> list[ModelSpec]:
    """Specs from the trained accuracies stored by `swiftnas train` / `accuracy import`: one per
    architecture (the mean top-1 over its stored runs, e.g. several seeds), scored at
    ``resolution`` with the dataset's class count."""
    from nas.proxies import ProxyError
    from nas.proxies.evaluate import ModelSpec
    from nas.storage import open_storage

    results = list_results(open_storage(storage_url, create=False), dataset=dataset)
    datasets = sorted({r.dataset for r in results})
    if len(datasets) > 1:
        raise ProxyError(f"{storage_url} holds trained accuracies on {len(datasets)} datasets "
                         f"({', '.join(datasets)[:200]}); choose one with --dataset")
    by_arch: dict[str, list[float]] = {}
    json_of: dict[str, str] = {}
    for r in results:
        by_arch.setdefault(r.arch_key, []).append(r.top1)
        json_of[r.arch_key] = r.arch_json
    num_classes = 10 if datasets == ["fashion-mnist"] else 1000
    specs = []
    for key, accs in by_arch.items():
        acc = sum(accs) / len(accs)
        size = (3, resolution, resolution)
        if json_of[key]:
            specs.append(ModelSpec(json_of[key], "swiftnas", acc, size, num_classes))
        else:  # a timm model trained with --model
            specs.append(ModelSpec(key.removeprefix("timm:"), "timm", acc, size, num_classes))
    if len(specs) < 3:
        raise ProxyError(f"{storage_url} holds trained accuracies of {len(specs)} architectures"
                         f"{' on ' + dataset if dataset else ''}; rank correlations need at "
                         "least 3 (`swiftnas train` or `swiftnas accuracy import` adds more)")
    return specs
