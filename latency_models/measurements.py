"""Measurement files: the calibration CSV's schema, validated row by row.

One row is one published or user-measured Core ML latency of one architecture on one iPhone. The
architecture is a timm name (``timm_name``) or a swiftnas ``ArchConfig`` (``arch``: inline JSON or
a path to a JSON file, relative to the CSV). See ``MEASUREMENT_COLUMNS`` for every column.

Rows are grouped by measurement protocol: ``source | device | compute unit``. Numbers from
different sources are not comparable even on one phone (export path, tool, OS), so a predictor
calibrates each group on its own scale.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from search_spaces import ArchConfig, SwiftNASError
from search_spaces.ref import ModelRef

# column -> meaning; the first three are required, and one of timm_name / arch must be filled.
MEASUREMENT_COLUMNS: dict[str, str] = {
    "model": "display name of the measured model (required)",
    "device": "iPhone model, e.g. 'iPhone 14' (required)",
    "latency_ms": "measured latency in milliseconds, batch 1, > 0 (required)",
    "timm_name": "timm architecture name, built with random weights (this or arch)",
    "arch": "swiftnas ArchConfig as inline JSON or a path to a JSON file (this or timm_name)",
    "input_resolution": "input side in pixels (empty: the model's default)",
    "source": "who measured and how; one calibration group per source+device (default 'user')",
    "compute_unit": "ANE / CPU / GPU / all (empty: Xcode's default)",
    "os": "iOS version",
    "family": "architecture family, for leave-one-family-out validation (default: model)",
    "notes": "free text; 'outlier-prone' marks a likely Neural Engine fallback",
    "fallback": "yes/no: the model falls off the Neural Engine (default: from notes)",
}
REQUIRED_COLUMNS = ("model", "device", "latency_ms")
DEFAULT_SOURCE = "user"
FALLBACK_MARKER = "outlier-prone"


class MeasurementError(SwiftNASError, ValueError):
    """A measurement file or row is malformed; the message names the row, column and fix."""


@dataclass(frozen=True)
class Measurement:
    model: str
    device: str
    latency_ms: float
    timm_name: str = ""
    arch: ArchConfig | None = None
    input_resolution: int | None = None  # None: the model's default
    source: str = DEFAULT_SOURCE
    compute_unit: str = ""
    os: str = ""
    family: str = ""
    notes: str = ""
    fallback: bool = False  # a likely Neural Engine fallback (modelled as its own effect)
    origin: str = field(default="", compare=False)  # "file.csv:12", for messages

    @property
    def group(self) -> str:
        return group_key(self.source, self.device, self.compute_unit)

    @property
    def family_name(self) -> str:
        return self.family or self.model

    @property
    def ref(self) -> ModelRef:
        """The measured model (its ArchConfig, else its timm name): what features are computed
        from. A row that names neither raises ``SwiftNASError``."""
        return ModelRef(timm_name=self.timm_name, arch=self.arch)


def group_key(source: str, device: str, compute_unit: str = "") -> str:
    unit = compute_unit.strip() or "default"
    return f"{source.strip()} | {device.strip()} | {unit}"


def split_group(group: str) -> tuple[str, str, str]:
    """(source, device, compute unit) of a ``group_key``; raises ValueError on anything else."""
    source, device, unit = group.split(" | ")
    return source, device, unit


def group_source(group: str) -> str:
    """The source part of a ``group_key``, for strings that may not be one (a study's stored
    attributes): never raises; text without a separator is all source."""
    return group.split(" | ", 1)[0]


def _parse_bool(text: str, where: str) -> bool:
    value = text.strip().lower()
    if value in ("yes", "true", "1", "y"):
        return True
    if value in ("no", "false", "0", "n", ""):
        return False
    raise MeasurementError(f"{where}: column 'fallback' must be yes or no, got {text!r}")


def _parse_arch(text: str, base: Path | None, where: str) -> ArchConfig:
    text = text.strip()
    try:
        if text.startswith("{"):
            return ArchConfig.from_json(text)
        if base is None:  # text from elsewhere (an upload): never read a file it names
            raise MeasurementError(
                f"{where}: column 'arch' must be inline ArchConfig JSON here (a file path is not "
                "read from an uploaded CSV); paste the JSON into the cell")
        path = Path(text) if Path(text).is_absolute() else base / text
        return ArchConfig.from_file(path)
    except OSError as exc:
        raise MeasurementError(
            f"{where}: column 'arch' names {text!r}, which cannot be read ({exc.strerror}); "
            "give inline ArchConfig JSON or a path relative to the CSV"
        ) from exc
    except MeasurementError:
        raise
    except (SwiftNASError, ValueError, json.JSONDecodeError) as exc:
        raise MeasurementError(f"{where}: column 'arch' is not a valid ArchConfig: {exc}") from exc


def parse_row(row: dict[str, str], *, where: str, base: Path | None = None) -> Measurement:
    """One CSV row -> Measurement, or MeasurementError naming ``where`` and the column."""

    def get(name: str) -> str:
        return (row.get(name) or "").strip()

    for name in REQUIRED_COLUMNS:
        if not get(name):
            raise MeasurementError(f"{where}: column {name!r} is empty; fill it in")
    raw_latency = get("latency_ms")
    try:
        latency = float(raw_latency)
    except ValueError:
        raise MeasurementError(
            f"{where}: column 'latency_ms' must be a number of milliseconds, got {raw_latency!r}"
        ) from None
    if not math.isfinite(latency) or latency <= 0:
        raise MeasurementError(
            f"{where}: column 'latency_ms' must be a positive number of milliseconds, "
            f"got {raw_latency!r}"
        )
    resolution: int | None = None
    if get("input_resolution"):
        try:
            resolution = int(float(get("input_resolution")))
        except ValueError:
            resolution = -1
        if resolution <= 0:
            raise MeasurementError(
                f"{where}: column 'input_resolution' must be a positive number of pixels, "
                f"got {get('input_resolution')!r}"
            )
    arch = _parse_arch(get("arch"), base, where) if get("arch") else None
    notes = get("notes")
    fallback = (
        _parse_bool(get("fallback"), where) if get("fallback") else FALLBACK_MARKER in notes
    )
    if arch is not None and resolution is None:
        resolution = arch.resolution
    return Measurement(
        model=get("model"), device=get("device"), latency_ms=latency,
        timm_name=get("timm_name"), arch=arch, input_resolution=resolution,
        source=get("source") or DEFAULT_SOURCE, compute_unit=get("compute_unit"),
        os=get("os"), family=get("family"), notes=notes, fallback=fallback, origin=where,
    )


def read_measurements(path: str | Path) -> list[Measurement]:
    """All rows of a measurement CSV. Any malformed row raises; nothing is half-read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MeasurementError(
            f"cannot read measurement file {str(path)!r}: {exc.strerror or exc}"
        ) from exc
    return parse_measurements(decode_csv(data, name=str(path)), name=str(path), base=path.parent)


def decode_csv(data: bytes, *, name: str = "<csv>") -> str:
    """A CSV file's text; binary data is refused in one line (its bytes are never echoed)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MeasurementError(
            f"{name} is not a UTF-8 text CSV (undecodable byte at offset {exc.start}); export "
            "it as CSV (UTF-8) from your spreadsheet"
        ) from None
    if "\x00" in text:
        raise MeasurementError(f"{name} is not a text CSV (it contains NUL bytes); export it as "
                               "CSV (UTF-8)")
    return text


def parse_measurements(text: str, *, name: str = "<csv>", base: Path | None = None
                       ) -> list[Measurement]:
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise MeasurementError(
            f"{name}: missing column(s) {', '.join(missing)} "
            f"(found: {', '.join(columns) or 'none'}); "
            f"the header needs {', '.join(REQUIRED_COLUMNS)} and timm_name or arch"
        )
    if "timm_name" not in columns and "arch" not in columns:
        raise MeasurementError(
            f"{name}: needs a 'timm_name' or an 'arch' column to know which model was measured"
        )
    rows = []
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip(): v for k, v in row.items()}
        rows.append(parse_row(row, where=f"{name}:{line}", base=base))
    if not rows:
        raise MeasurementError(f"{name}: has a header but no measurement rows")
    return rows


def write_measurements(measurements: Iterable[Measurement]) -> str:
    """CSV text in the calibration schema (ArchConfigs inline as JSON)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(MEASUREMENT_COLUMNS))
    writer.writeheader()
    for m in measurements:
        writer.writerow({
            "model": m.model, "device": m.device, "latency_ms": repr(m.latency_ms),
            "timm_name": m.timm_name, "arch": m.arch.to_json() if m.arch else "",
            "input_resolution": m.input_resolution or "", "source": m.source,
            "compute_unit": m.compute_unit, "os": m.os, "family": m.family, "notes": m.notes,
            "fallback": "yes" if m.fallback else "no",
        })
    return out.getvalue()


def merge_duplicates(rows: Sequence[Measurement]) -> tuple[list[Measurement], list[str]]:
    """Rows that measure the same model on the same device under the same source (and compute
    unit and resolution) more than once become one row at their mean latency; each merge comes
    with a message naming the lines, for the caller to show as a warning. Averaging keeps both
    measurements' information where refusing would make a user delete one by hand; a table that
    really holds two protocols should give them different sources."""
    def key(m: Measurement) -> tuple[str, ...]:
        return (m.model.casefold(), m.device, m.source, m.compute_unit.upper(),
                str(m.input_resolution), m.timm_name, m.arch.key() if m.arch else "")

    by_key: dict[tuple[str, ...], list[Measurement]] = {}
    for m in rows:
        by_key.setdefault(key(m), []).append(m)
    out: list[Measurement] = []
    notes: list[str] = []
    done: set[tuple[str, ...]] = set()
    for m in rows:
        same = by_key[key(m)]
        if len(same) == 1:
            out.append(m)
            continue
        if key(m) in done:
            continue
        done.add(key(m))
        mean = sum(s.latency_ms for s in same) / len(same)
        where = " and ".join(s.origin or "?" for s in same)
        values = ", ".join(f"{s.latency_ms:g}" for s in same)
        notes.append(f"{where}: {m.model!r} on {m.device} from {m.source!r} is measured "
                     f"{len(same)} times ({values} ms); using their mean, {mean:.4g} ms")
        out.append(replace(m, latency_ms=mean, notes="; ".join(
            dict.fromkeys(s.notes for s in same if s.notes))))
    return out, notes
