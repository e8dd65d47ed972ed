"""Core ML export: an ML Program (FP16, iOS 16+) to open in Xcode's performance report or to
benchmark on a phone, plus a manifest saying exactly what was exported.

Conversion runs on Linux (coremltools 9, via ``torch.export``); running the package needs macOS or
an iPhone. Measured numbers come back with ``swiftnas latency import``.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search_spaces import SwiftNASError, build_model
from search_spaces.ref import ModelLike, ModelRef

from .architectures import default_resolution


class CoreMLExportError(SwiftNASError, RuntimeError):
    """Conversion failed or coremltools is missing (the message says how to fix it)."""


@dataclass(frozen=True)
class CoreMLExport:
    package: Path  # the .mlpackage directory
    manifest: Path  # manifest.json beside it
    info: dict[str, Any]


IMAGE_INPUT = "image"  # ct.ImageType, RGB, normalisation folded in (what an app feeds)
MULTIARRAY_INPUT = "multiarray"  # a float tensor, already normalised (pure benchmarking)
INPUT_KINDS = (IMAGE_INPUT, MULTIARRAY_INPUT)


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Hide coremltools' progress bars (tqdm on stderr), its import-time "Failed to load
    _MLModelProxy" lines (Linux has no Core ML runtime) and its version warnings."""
    if verbose:
        yield
        return
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # e.g. coremltools has not been tested with torch 2.13
        logger = logging.getLogger("coremltools")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def _coremltools(verbose: bool = False) -> Any:
    try:
        with _quiet(verbose):
            import coremltools as ct
    except ImportError as exc:
        raise CoreMLExportError(
            "Core ML export needs coremltools; install it with `pip install -e '.[coreml]'`"
        ) from exc
    return ct


def _deployed(model: nn.Module) -> nn.Module:
    from timm.utils.model import reparameterize_model

    return reparameterize_model(model.eval())


def read_labels(path: str | Path) -> list[str]:
    """Class labels for ``--labels``: UTF-8 text, one label per line (blank lines skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CoreMLExportError(f"labels file {str(path)!r} does not exist; give a text file "
                                "with one class label per line") from None
    except UnicodeDecodeError:
        raise CoreMLExportError(f"labels file {str(path)!r} is not UTF-8 text; give a text "
                                "file with one class label per line") from None
    except OSError as exc:
        raise CoreMLExportError(f"labels file {str(path)!r} cannot be read "
                                f"({exc.strerror})") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) < 2:
        raise CoreMLExportError(f"labels file {str(path)!r} has {len(labels)} label(s); a "
                                "classifier needs at least 2, one per line")
    seen: set[str] = set()
    for i, label in enumerate(labels, 1):
        if label in seen:
            raise CoreMLExportError(f"labels file {str(path)!r}: label {i} repeats an earlier "
                                    "label; every class needs its own name")
        seen.add(label)
    return labels


def _normalisation(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    cfg = getattr(model, "pretrained_cfg", None) or {}
    return (tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)),
            tuple(cfg.get("std", IMAGENET_DEFAULT_STD)))


def _fold_std_into_first_conv(model: nn.Module, std: tuple[float, ...]) -> nn.Module:
    """A copy of ``model`` whose first convolution also divides its input by ``std`` per
    channel, so that Core ML's image pre-processing (one scale, a bias per channel) plus this
    conv computes exactly ``conv((x / 255 - mean) / std)``. Zero padding stays zero."""
    model = copy.deepcopy(model)
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first.in_channels != len(std) or first.groups != 1:
        return _ScaleInput(model, std)
    with torch.no_grad():
        first.weight.div_(torch.tensor(std, dtype=first.weight.dtype).view(1, -1, 1, 1))
    return model


class _ScaleInput(nn.Module):
    """Fallback when the first layer is not a plain conv: divide by std as its own op."""

    def __init__(self, model: nn.Module, std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.inv_std: torch.Tensor
        self.register_buffer("inv_std", 1.0 / torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.inv_std)


class _Softmax(nn.Module):
    """Probabilities for a Core ML classifier (its outputs are a label and class scores)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=-1)


def export_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``model`` as the ``torch.export`` program coremltools converts. ``aten.alias`` nodes (no-op
    views that GhostNet and LowFormer leave in the graph) are dropped: coremltools has no
    converter for them."""
    exported = torch.export.export(model, (example,)).run_decompositions({})
    graph = exported.graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch.ops.aten.alias.default:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    exported.graph_module.recompile()
    return exported


def convert(model: nn.Module, resolution: int, *, input_kind: str = IMAGE_INPUT,
            labels: list[str] | None = None, verbose: bool = False) -> Any:
    """``model`` (real weights, CPU) as a coremltools MLModel: ML Program, FP16, iOS 16.

    ``image`` input: an RGB ``ct.ImageType`` with the model's mean/std folded in (scale 1/255,
    bias -mean; 1/std in the first conv). ``multiarray``: a float tensor, already normalised.
    ``labels`` make it a classifier (softmax, ``ClassifierConfig``)."""
    if input_kind not in INPUT_KINDS:
        raise CoreMLExportError(f"input must be one of {', '.join(INPUT_KINDS)}, but got "
                                f"{input_kind!r}")
    ct = _coremltools(verbose)
    model = model.eval()
    shape = (1, 3, resolution, resolution)
    if input_kind == IMAGE_INPUT:
        mean, std = _normalisation(model)
        model = _fold_std_into_first_conv(model, std)
        inputs = [ct.ImageType(name="image", shape=shape, color_layout=ct.colorlayout.RGB,
                               scale=1 / 255.0, bias=[-m for m in mean])]
    else:
        inputs = [ct.TensorType(name="image", shape=shape)]
    classifier = None
    outputs: list[Any] | None = [ct.TensorType(name="logits")]
    if labels:
        model, outputs = _Softmax(model), None
        classifier = ct.ClassifierConfig(labels, predicted_feature_name="classLabel")
    example = torch.rand(*shape)
    with _quiet(verbose):
        try:
            return ct.convert(
                export_program(model, example),
                inputs=inputs,
                outputs=outputs,
                classifier_config=classifier,
                convert_to="mlprogram",
                minimum_deployment_target=ct.target.iOS16,
                compute_precision=ct.precision.FLOAT16,
            )
        except Exception as exc:
            message = " ".join(str(exc).split())[:500]
            raise CoreMLExportError(
                f"Core ML conversion failed: {type(exc).__name__}: {message}"
            ) from exc


def export_coreml(model: ModelLike, *, out_dir: str | Path,
                  resolution: int | None = None, name: str | None = None, seed: int = 0,
                  input_kind: str = IMAGE_INPUT, labels: list[str] | None = None,
                  prediction: dict[str, Any] | None = None, verbose: bool = False,
                  sidecars: bool = True) -> CoreMLExport:
    """Convert ``model`` (an ArchConfig or a timm name; random weights) into ``out_dir``.

    Writes ``<name>.mlpackage``, ``manifest.json`` and ``measurements.csv`` (the row to fill in
    with the measured latency for ``swiftnas latency import``). All appear at once (built in a
    temporary folder, then moved), so a failed conversion leaves nothing half-written.
    ``prediction`` (``latency_ms``, ``low_ms``, ``high_ms``, ``device``) goes into the package's
    metadata, so Xcode shows what swiftnas predicted next to what it measures. Without
    ``sidecars`` only the package is written (a measurement kit writes one manifest and CSV).
    """
    import timm

    ct = _coremltools(verbose)
    ref = ModelRef.of(model)
    arch, timm_name, key = ref.arch, ref.timm_name, ref.name
    num_classes = len(labels) if labels else 1000
    resolution = resolution or (arch.resolution if arch is not None
                                else default_resolution(timm_name))
    torch.manual_seed(seed)
    net: nn.Module = (build_model(arch, num_classes=num_classes) if arch is not None else
                      _deployed(timm.create_model(timm_name, pretrained=False,
                                                  num_classes=num_classes)))
    name = name or ("swiftnas_" + key if arch is not None else timm_name)
    mlmodel = convert(net, resolution, input_kind=input_kind, labels=labels, verbose=verbose)
    version = _swiftnas_version()
    mlmodel.author = f"swiftnas {version}"
    mlmodel.license = "random weights: train before use (swiftnas train)"
    mlmodel.version = version
    mlmodel.short_description = (
        f"swiftnas export of {key} at {resolution} px, random weights"
        + (f"; predicted {prediction['latency_ms']:.3f} ms "
           f"(90% interval {prediction['low_ms']:.3f}-{prediction['high_ms']:.3f}) on "
           f"{prediction['device']}" if prediction else "")
    )
    meta = mlmodel.user_defined_metadata
    meta["swiftnas.architecture"] = key
    meta["swiftnas.resolution"] = str(resolution)
    if prediction:
        meta["swiftnas.predicted_latency_ms"] = f"{prediction['latency_ms']:.4f}"
        meta["swiftnas.predicted_latency_low_ms"] = f"{prediction['low_ms']:.4f}"
        meta["swiftnas.predicted_latency_high_ms"] = f"{prediction['high_ms']:.4f}"
        meta["swiftnas.predicted_device"] = str(prediction["device"])
    mean, std = _normalisation(net)
    row = measurement_row(name, model=ref, resolution=resolution)
    info = {
        "name": name, "architecture": key, "timm_name": timm_name or None,
        "arch": arch.to_dict() if arch is not None else None,
        "input": input_kind, "input_shape": [1, 3, resolution, resolution],
        "input_color_layout": "RGB" if input_kind == IMAGE_INPUT else None,
        "normalisation": {"mean": list(mean), "std": list(std),
                          "folded_in": input_kind == IMAGE_INPUT},
        "output": "classLabel, classLabel_probs" if labels else "logits",
        "labels": len(labels) if labels else None,
        "resolution": resolution, "precision": "float16", "format": "mlprogram",
        "minimum_deployment_target": "iOS16", "weights": f"random (seed {seed})",
        "params": sum(p.numel() for p in net.parameters()),
        "predicted_latency": prediction,
        "coremltools_version": ct.__version__, "torch_version": torch.__version__,
        "timm_version": timm.__version__, "swiftnas_version": version,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "measure": "Open in Xcode > Performance report (or benchmark on the device), fill in "
                   "'device' and 'latency_ms' in measurements.csv, then run "
                   "`swiftnas latency import measurements.csv`.",
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    package = out_dir / f"{name}.mlpackage"
    manifest = out_dir / "manifest.json"
    measurements = out_dir / "measurements.csv"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        tmp_package = Path(tmp) / package.name
        with _quiet(verbose):
            mlmodel.save(str(tmp_package))
        if sidecars:
            (Path(tmp) / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
            write_measurement_rows(Path(tmp) / "measurements.csv", [row])
        if package.exists():
            shutil.rmtree(package)
        Path(tmp_package).rename(package)
        if sidecars:
            Path(tmp, "manifest.json").replace(manifest)
            Path(tmp, "measurements.csv").replace(measurements)
    return CoreMLExport(package=package, manifest=manifest, info=info)


def measurement_row(name: str, *, model: ModelLike, resolution: int,
                    device: str = "") -> dict[str, str]:
    """The `latency import` row for an exported model, complete except ``latency_ms`` (and
    ``device`` when not given)."""
    from .measurements import MEASUREMENT_COLUMNS

    ref = ModelRef.of(model)
    row = dict.fromkeys(MEASUREMENT_COLUMNS, "")
    row.update(model=name, device=device, timm_name=ref.timm_name,
               arch=ref.arch.to_json(indent=None) if ref.arch is not None else "",
               input_resolution=str(resolution), compute_unit="ANE")
    return row


def write_measurement_rows(path: Path, rows: list[dict[str, str]]) -> None:
    from .measurements import MEASUREMENT_COLUMNS

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(MEASUREMENT_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)


def _swiftnas_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("swiftnas")
    except PackageNotFoundError:
        return "unknown"


def mil_op_counts(mlmodel: Any) -> dict[str, int]:
    """Op types of a converted ML Program and how often each occurs (walkable on Linux)."""
    spec = mlmodel.get_spec()
    counts: dict[str, int] = {}
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                counts[op.type] = counts.get(op.type, 0) + 1
    return counts
