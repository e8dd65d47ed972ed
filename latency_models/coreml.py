"""Core ML export: an ML Program (FP16, iOS 16+) to open in Xcode's performance report or to
benchmark on a phone, plus a manifest saying exactly what was exported.

Conversion runs on Linux (coremltools 9, via ``torch.export``); running the package needs macOS or
an iPhone. Measured numbers come back with ``swiftnas latency import``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search_spaces import ArchConfig, SwiftNASError, build_model

from .architectures import default_resolution


class CoreMLExportError(SwiftNASError, RuntimeError):
    """Conversion failed or coremltools is missing (the message says how to fix it)."""


@dataclass(frozen=True)
class CoreMLExport:
    package: Path  # the .mlpackage directory
    manifest: Path  # manifest.json beside it
    info: dict[str, Any]


def _coremltools() -> Any:
    try:
        import coremltools as ct
    except ImportError as exc:
        raise CoreMLExportError(
            "Core ML export needs coremltools; install it with `pip install -e '.[coreml]'`"
        ) from exc
    return ct


def _deployed(model: nn.Module) -> nn.Module:
    from timm.utils.model import reparameterize_model

    return reparameterize_model(model.eval())


def convert(model: nn.Module, resolution: int) -> Any:
    """``model`` (real weights, CPU) as a coremltools MLModel: ML Program, FP16, iOS 16."""
    ct = _coremltools()
    example = torch.rand(1, 3, resolution, resolution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coremltools warns that torch 2.13 is untested
        try:
            exported = torch.export.export(model.eval(), (example,)).run_decompositions({})
            return ct.convert(
                exported,
                inputs=[ct.TensorType(name="image", shape=example.shape)],
                outputs=[ct.TensorType(name="logits")],
                convert_to="mlprogram",
                minimum_deployment_target=ct.target.iOS16,
                compute_precision=ct.precision.FLOAT16,
            )
        except Exception as exc:
            raise CoreMLExportError(
                f"Core ML conversion failed: {type(exc).__name__}: {exc}"
            ) from exc


def export_coreml(*, out_dir: str | Path, arch: ArchConfig | None = None, timm_name: str = "",
                  resolution: int | None = None, name: str | None = None,
                  seed: int = 0) -> CoreMLExport:
    """Convert an ArchConfig or a timm model (random weights) into ``out_dir``.

    Writes ``<name>.mlpackage`` and ``manifest.json``. Both appear at once (built in a temporary
    folder, then moved), so a failed conversion leaves nothing half-written.
    """
    import coremltools
    import timm

    torch.manual_seed(seed)
    if arch is not None:
        resolution = resolution or arch.resolution
        model: nn.Module = build_model(arch)
        key = arch.key()
        name = name or "swiftnas_" + key
    elif timm_name:
        resolution = resolution or default_resolution(timm_name)
        model = _deployed(timm.create_model(timm_name, pretrained=False))
        key = timm_name
        name = name or timm_name
    else:
        raise CoreMLExportError("export needs an ArchConfig (--arch) or a timm name (--model)")
    mlmodel = convert(model, resolution)
    mlmodel.short_description = f"swiftnas export of {key} at {resolution}px (random weights)"
    info = {
        "name": name, "architecture": key, "timm_name": timm_name or None,
        "arch": arch.to_dict() if arch is not None else None, "input": "image",
        "input_shape": [1, 3, resolution, resolution], "output": "logits",
        "resolution": resolution, "precision": "float16", "format": "mlprogram",
        "minimum_deployment_target": "iOS16", "weights": f"random (seed {seed})",
        "params": sum(p.numel() for p in model.parameters()),
        "coremltools_version": coremltools.__version__, "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "measure": "Open in Xcode > Performance report, or benchmark on device; then add a row "
                   "with this 'architecture' to a CSV and run `swiftnas latency import`.",
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    package = out_dir / f"{name}.mlpackage"
    manifest = out_dir / "manifest.json"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        tmp_package = Path(tmp) / package.name
        mlmodel.save(str(tmp_package))
        (Path(tmp) / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
        if package.exists():
            shutil.rmtree(package)
        Path(tmp_package).rename(package)
        Path(tmp, "manifest.json").replace(manifest)
    return CoreMLExport(package=package, manifest=manifest, info=info)


def mil_op_counts(mlmodel: Any) -> dict[str, int]:
    """Op types of a converted ML Program and how often each occurs (walkable on Linux)."""
    spec = mlmodel.get_spec()
    counts: dict[str, int] = {}
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                counts[op.type] = counts.get(op.type, 0) + 1
    return counts
