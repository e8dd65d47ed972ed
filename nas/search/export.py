"""Export a candidate as files a user trains right away.

``<out>/arch.json``      the ArchConfig
``<out>/model.py``       registers the architecture with timm (``timm.create_model(NAME)``)
``<out>/train.sh``       ``swiftnas train`` with SwiftFormer's recipe (only swiftnas needed)
``<out>/train_timm.sh``  the alternative: timm's ``train.py`` (from a pytorch-image-models
                         checkout), through ``train_timm.py`` which registers the architecture
``<out>/MODEL_CARD.md``  params, MACs, predicted latency with its interval, proxy scores, origin
``<out>/export.json``    the same facts, machine-readable
``<out>/coreml/``        with ``coreml=True``: the Core ML package to measure on an iPhone

Everything is written into a temporary sibling folder and renamed at the end: an interrupted
export leaves no half-written folder.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.outputs import check_output_path
from search_spaces import ArchConfig
from search_spaces.text import command_hint

from .cache import record_export
from .escaping import markdown_text
from .pareto import Candidate, from_summary
from .results import LoadedStudy, get_trial, study_settings
from .spec import ATTR, SearchError

TIMM_TRAIN_URL = "https://github.com/huggingface/pytorch-image-models/blob/v1.0.31/train.py"


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    model_name: str
    files: list[str]


MODEL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,150}")


def model_name_for(study: str, trial: int | None) -> str:
    slug = re.sub(r"[^0-9a-z]+", "_", study.lower()).strip("_")[:100] or "study"
    return f"swiftnas_{slug}" + (f"_t{trial}" if trial is not None else "")


def timm_kwargs(arch: ArchConfig) -> dict[str, Any] | None:
    """Keyword arguments that make timm's own ``SwiftFormer`` build ``arch``, or None when timm
    cannot express it (timm has one MLP ratio, and additive attention only in each stage's last
    block)."""
    ratios = {s.mlp_ratio for s in arch.stages}
    if len(ratios) != 1 or any(s.attn != (s.depth - 1,) or s.mixer != "additive"
                               for s in arch.stages):
        return None
    ratio = ratios.pop()
    if ratio != int(ratio):
        return None
    return {"layers": list(arch.depths), "embed_dims": list(arch.widths), "mlp_ratios": int(ratio)}


def training_recipe(params: int) -> list[str]:
    """timm ``train.py`` flags for SwiftFormer's ImageNet-1k recipe (see the model card).

    SwiftFormer trains every model 300 epochs with AdamW at 224 px; its training script turns
    off mixup/cutmix for the small models (XS, S) and also RandAugment for XS. We follow that by
    size: below 4 M parameters (XS-sized) no RandAugment, below 8 M (S-sized) no mixup/cutmix.
    """
    flags = [
        "--img-size 224", "--epochs 300", "--batch-size 128", "--opt adamw", "--lr 1e-3",
        "--weight-decay 0.025", "--sched cosine", "--warmup-epochs 5", "--warmup-lr 1e-6",
        "--min-lr 1e-5", "--smoothing 0.1", "--reprob 0.25", "--drop-path 0.0",
        "--model-ema", "--amp",
    ]
    flags.append("--aa rand-m9-mstd0.5-inc1" if params >= 4_000_000 else "--aa ''")
    flags += (["--mixup 0.8", "--cutmix 1.0"] if params >= 8_000_000
              else ["--mixup 0.0", "--cutmix 0.0"])
    return flags


# Only {name} (an identifier, checked) and repr() literals reach generated Python; the origin,
# which holds the user's study name, is data (ORIGIN), never part of a docstring or code.
_MODEL_PY = '''"""{name}: a SwiftFormer architecture found by swiftnas (see ORIGIN).

Importing this module registers ``{name}`` with timm:

    import model  # noqa: F401  (registers {name}; import it before timm, see below)
    import timm
    net = timm.create_model("{name}", num_classes=1000)

It needs swiftnas installed (``pip install -e .`` in its repository), which also keeps
``import timm`` working where torchvision's compiled ops do not load (CPU-only torch). The
state_dict key names are timm's SwiftFormer names. As a detection or segmentation backbone:
``timm.create_model("{name}", features_only=True, out_indices=(1, 2, 3))`` returns the stage
feature maps (strides 8, 16, 32; ``.feature_info.channels()`` gives their widths).{timm_note}
"""

from pathlib import Path

import search_spaces  # noqa: F401  (first: keeps `import timm` working with CPU-only torchvision)
from search_spaces import ArchConfig
from search_spaces.model import create_registered_model
from timm.models import register_model

ARCH = ArchConfig.from_json((Path(__file__).parent / "arch.json").read_text())
ORIGIN = {origin!r}
TIMM_KWARGS = {timm_kwargs!r}  # timm's own swiftformer kwargs for this arch, or None


@register_model
def {name}(pretrained: bool = False, **kwargs):
    """timm's interface, ``features_only=True`` and ``out_indices`` included (a backbone)."""
    return create_registered_model("{name}", ARCH, pretrained, **kwargs)
'''

_TRAIN_TIMM_PY = '''"""Run timm's train.py with {name} registered.

    python train_timm.py path/to/pytorch-image-models/train.py [train.py args]
"""

import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import model  # noqa: E402,F401  (registers {name} with timm)

if len(sys.argv) < 2 or not sys.argv[1].endswith(".py"):
    sys.exit("usage: python train_timm.py path/to/pytorch-image-models/train.py [train.py args]")
script = sys.argv.pop(1)
sys.argv[0] = script
runpy.run_path(script, run_name="__main__")
'''

_TRAIN_SH = '''#!/usr/bin/env bash
# Train {name} with `swiftnas train` (SwiftFormer-style recipe, see MODEL_CARD.md). Needs only
# swiftnas installed. DATA: an ImageFolder root (train/ and val/ class folders, e.g. ImageNet)
# or fashion-mnist. Any `swiftnas train` option may follow, e.g. --epochs 30 --resolution 224.
# The accuracy is stored in STORAGE (default sqlite:///swiftnas.db); rerun to resume.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${{1:?usage: ./train.sh DATA [swiftnas train options]}}"
shift
EPOCHS="${{EPOCHS:-300}}"
WARMUP=$(( EPOCHS > 5 ? 5 : EPOCHS - 1 ))  # 5 warm-up epochs, fewer for a short run
swiftnas train --arch "$HERE/arch.json" --data "$DATA" \\
  --epochs "$EPOCHS" --resolution {resolution} --batch-size 128 --lr 1e-3 \\
  --weight-decay 0.025 --warmup-epochs "$WARMUP" --smoothing 0.1 \\
  --storage "${{STORAGE:-sqlite:///swiftnas.db}}" --out "$HERE/output" "$@"
'''

_TRAIN_TIMM_SH = '''#!/usr/bin/env bash
# Train {name} on ImageNet-1k with timm's train.py (SwiftFormer-style recipe, see MODEL_CARD.md).
#   TIMM_TRAIN=path/to/pytorch-image-models/train.py ./train_timm.sh /path/to/imagenet [more]
# NPROC GPUs (default 8) x --batch-size 128 = global batch 1024.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
TIMM_TRAIN="${{TIMM_TRAIN:?set TIMM_TRAIN to pytorch-image-models/train.py (timm {timm_version})}}"
DATA="${{1:?usage: train_timm.sh /path/to/imagenet [extra train.py args]}}"
shift
torchrun --nproc_per_node="${{NPROC:-8}}" "$HERE/train_timm.py" "$TIMM_TRAIN" "$DATA" \\
  --model {name} \\
  {flags} \\
  --output "$HERE/output" "$@"
'''


def _top1_row(top1: dict[str, Any] | None) -> str:
    """The model card's top-1 row in a study that trains its front (measured or predicted)."""
    if top1 is None:
        return ""
    where = f"{markdown_text(top1['dataset'])}, {markdown_text(top1['recipe'])}"
    if top1["source"] == "measured":
        return f"\n| top-1, measured | **{top1['top1']:.2f} %** ({where}) |"
    return (f"\n| top-1, predicted (not trained) | ~{top1['top1']:.2f} %, 90% interval "
            f"{top1['low']:.1f} to {top1['high']:.1f} % ({where}) |")


def _mixer_cell(stage: dict[str, Any]) -> str:
    """A stage's token mixer as the model card shows it (``-`` without attention)."""
    if not stage["attn"]:
        return "-"
    mixer = stage.get("mixer", "additive")
    return {"additive": "efficient additive attention",
            "separable": "separable self-attention (MobileViTv2)"}.get(
        mixer, f"multi-head self-attention, {stage.get('heads')} heads")


def _model_card(name: str, info: dict[str, Any], recipe: list[str],
                kwargs: dict[str, Any] | None) -> str:
    lat = info["latency"]
    esc = markdown_text  # origin, device, predictor and group are user text
    scores = "\n".join(f"| {esc(k)} | {v:.4g} |" for k, v in info["proxy_scores"].items())
    timm_cmd = ""
    if kwargs is not None:
        kw = " ".join(f"{k}=\"{v!r}\"" if isinstance(v, list) else f"{k}={v}"
                      for k, v in kwargs.items())
        timm_cmd = (
            "\nThis architecture is also expressible by timm's own SwiftFormer, so plain "
            "`train.py` works too:\n\n```bash\npython train.py /path/to/imagenet --model "
            f"swiftformer_xs --model-kwargs {kw} " + " ".join(recipe) + "\n```\n"
        )
    stages = "\n".join(
        f"| {i} | {s['depth']} | {s['width']} | {s['mlp_ratio']} | {s['attn'] or '-'} | "
        f"{_mixer_cell(s)} |" for i, s in enumerate(info["arch"]["stages"])
    )
    return f"""# {name}

A SwiftFormer architecture from swiftnas: {esc(info['origin'])}. Random weights until trained.

| | |
|---|---|
| parameters | {info['params'] / 1e6:.2f} M |
| MACs at {info['arch']['resolution']} px | {info['macs'] / 1e9:.3f} G |
| predicted latency on {esc(lat['device'])} | {lat['latency_ms']:.3f} ms |
| 90% interval | {lat['low_ms']:.3f} to {lat['high_ms']:.3f} ms |
| latency predictor | {esc(lat['predictor'])} (calibration group: {esc(lat['group'])}) |
| attention blocks | {info['num_attn_blocks']} |{_top1_row(info.get('top1'))}
| architecture key | `{info['arch_key']}` |

Stages (attn: the attention blocks, with the stage's token mixer; the others are conv blocks):

| stage | depth | width | MLP ratio | attn | token mixer |
|---|---|---|---|---|---|
{stages}

Training-free proxy scores (higher is better; `score` is what the search maximised):

| proxy | value |
|---|---|
{scores}

The latency is a prediction. Measure it: export with `--coreml`, benchmark the package in Xcode
(Performance tab) on the phone and import the number with `swiftnas latency import`.

## Training

`train.sh` runs `swiftnas train` (installed with swiftnas; nothing else to check out) on an
ImageFolder root, stores the accuracy in swiftnas's storage and resumes when run again:

```bash
./train.sh /path/to/imagenet            # EPOCHS=30 ./train.sh ... for a shorter run
```

`train_timm.sh` is the alternative for multi-GPU ImageNet training: it runs timm's `train.py`
({TIMM_TRAIN_URL}, from a pytorch-image-models checkout of the same timm version; the timm
wheel does not include it) with this model registered. Both recipes
follow SwiftFormer's ImageNet-1k training (300 epochs, AdamW, lr 1e-3, weight decay 0.025,
cosine schedule with 5 warm-up epochs, label smoothing 0.1, random erasing 0.25; RandAugment
and mixup/cutmix only for larger models, as SwiftFormer does for XS/S). SwiftFormer also
distils from a RegNetY-16GF teacher, which timm's `train.py` does not do: expect somewhat lower
accuracy than the paper's numbers for same-sized models.

```bash
TIMM_TRAIN=path/to/pytorch-image-models/train.py ./train_timm.sh /path/to/imagenet
```
{timm_cmd}"""


def export_candidate(candidate: Candidate, *, out_dir: str | Path, model_name: str, origin: str,
                     device: str, predictor: str, latency_group: str = "",
                     coreml: bool = False, coreml_input: str = "image",
                     labels: list[str] | None = None, verbose: bool = False,
                     overwrite: bool = False,
                     top1: dict[str, Any] | None = None) -> ExportResult:
    """Write the export files for ``candidate`` into ``out_dir`` (see the module docstring).
    ``top1``: its measured or predicted top-1 in a study that trains its front."""
    import timm

    if not MODEL_NAME.fullmatch(model_name):
        raise SearchError(f"model name {model_name[:80]!r} is not a Python identifier of "
                          "lowercase letters, digits and underscores; see model_name_for()")
    out = Path(out_dir)
    check_output_path(out, folder=True)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SearchError(f"export folder {str(out)!r} exists and is not empty; choose a new "
                          "--out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    arch = candidate.arch
    kwargs = timm_kwargs(arch)
    recipe = training_recipe(candidate.params)
    info: dict[str, Any] = {
        "model_name": model_name, "origin": origin, "arch_key": arch.key(),
        "arch": arch.to_dict(), "params": candidate.params, "macs": candidate.macs,
        "num_attn_blocks": arch.num_attn_blocks, "proxy_scores": candidate.proxy_scores,
        "accuracy_score": candidate.accuracy_score, "feasible": candidate.feasible,
        "latency": {"device": device, "latency_ms": candidate.latency_ms,
                    "low_ms": candidate.latency_low_ms, "high_ms": candidate.latency_high_ms,
                    "interval": 0.9, "predictor": predictor, "group": latency_group},
        "timm_kwargs": kwargs, "train_flags": recipe,
        **({"top1": top1} if top1 is not None else {}),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "arch.json").write_text(arch.to_json() + "\n")
        timm_note = ("\n\nTimm's own SwiftFormer can build it too: "
                     "``timm.create_model('swiftformer_xs', **TIMM_KWARGS)``." if kwargs else "")
        (tmp / "model.py").write_text(_MODEL_PY.format(
            name=model_name, origin=origin, timm_kwargs=kwargs, timm_note=timm_note))
        (tmp / "train_timm.py").write_text(_TRAIN_TIMM_PY.format(name=model_name))
        (tmp / "train.sh").write_text(_TRAIN_SH.format(name=model_name,
                                                      resolution=arch.resolution))
        (tmp / "train_timm.sh").write_text(_TRAIN_TIMM_SH.format(
            name=model_name, flags=" \\\n  ".join(recipe), timm_version=timm.__version__))
        for script in ("train.sh", "train_timm.sh"):
            (tmp / script).chmod(0o755)
        (tmp / "MODEL_CARD.md").write_text(_model_card(model_name, info, recipe, kwargs))
        if coreml:
            from latency_models.coreml import export_coreml

            prediction = {"latency_ms": candidate.latency_ms, "low_ms": candidate.latency_low_ms,
                          "high_ms": candidate.latency_high_ms, "device": device}
            export_coreml(arch, out_dir=tmp / "coreml", name=model_name,
                          input_kind=coreml_input, labels=labels, prediction=prediction,
                          verbose=verbose)
        (tmp / "export.json").write_text(json.dumps(info, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return ExportResult(out_dir=out, model_name=model_name, files=files)


def export_trial(loaded: LoadedStudy, trial_number: int, out_dir: str | Path, *,
                 coreml: bool = False, coreml_input: str = "image",
                 labels: list[str] | None = None, verbose: bool = False,
                 overwrite: bool = False, record: bool = True) -> ExportResult:
    """Export trial ``trial_number`` of a study; ``record`` notes the export in the storage."""
    from optuna.trial import TrialState

    trial = get_trial(loaded, trial_number)
    hint = command_hint("pareto", "--study", loaded.name, storage=loaded.storage.url)
    if trial is None:
        raise SearchError(f"study {loaded.name!r} has no trial {trial_number}; see `{hint}` "
                          "for its front")
    if trial.state != TrialState.COMPLETE or ATTR not in trial.user_attrs:
        raise SearchError(f"trial {trial_number} of study {loaded.name!r} is "
                          f"{trial.state.name.lower()}, not complete; pick a complete trial "
                          f"(`{hint}` lists the front)")
    summary = trial.user_attrs[ATTR]
    candidate = from_summary(f"trial {trial_number}", summary, loaded.budget_ms, trial_number)
    settings = study_settings(loaded)
    predictor = f"{settings.predictor.get('name')} v{settings.predictor.get('version')} " \
                f"({settings.predictor_digest[:12]})"
    from .accuracy import TRAINING_ATTR, trained_top1

    top = trained_top1(loaded, [candidate]).get(candidate.arch.key())
    top1 = None
    if top is not None:
        training = loaded.study.user_attrs[TRAINING_ATTR]
        recipe = training.get("recipe") or {}
        top1 = {"source": top[0], "top1": top[1], "low": top[2], "high": top[3],
                "dataset": training["dataset"],
                "recipe": f"{recipe.get('epochs', '?')} epochs at {recipe.get('resolution', '?')}"
                          f" px ({training['recipe_key']})"}
    result = export_candidate(
        candidate, out_dir=out_dir, model_name=model_name_for(loaded.name, trial_number),
        top1=top1,
        origin=f"study {loaded.name!r}, trial {trial_number}", device=loaded.device,
        predictor=predictor, latency_group=summary.get("latency_group", ""), coreml=coreml,
        coreml_input=coreml_input, labels=labels, verbose=verbose, overwrite=overwrite,
    )
    if record:
        record_export(loaded.storage, study_name=loaded.name, trial_number=trial_number,
                      arch=candidate.arch, out_dir=str(result.out_dir.resolve()),
                      files=result.files, coreml=coreml)
    return result
