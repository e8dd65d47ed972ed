"""What one candidate is: :class:`ArchConfig`, a frozen, validated SwiftFormer architecture.

An architecture has four stages (as every SwiftFormer does). Stage ``i`` has ``depth`` blocks of
``width`` channels; each block is either a conv block (timm ``ConvEncoder``) or an attention block
(timm ``Block``); ``attn`` lists the indices of the attention blocks and ``mixer`` names their
token mixer (:data:`MIXERS`: SwiftFormer's efficient additive attention, multi-head
self-attention with ``heads`` heads, or MobileViTv2's separable self-attention). Stages 1-3
start with a stride-2 downsampling conv, the stem reduces by 4, so the network reduces by 32 and
the input ``resolution`` must be a multiple of 32.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidArchError

NUM_STAGES = 4
# Explicit bounds, far above any mobile network (and the search space), so that a crafted file
# cannot ask for a model that exhausts memory or a parse that never ends.
MAX_DEPTH = 64
MAX_WIDTH = 4096
MAX_MLP_RATIO = 16.0
MAX_RESOLUTION = 2048
MAX_JSON_CHARS = 64 * 1024  # an ArchConfig JSON is under 1 KB
ARCH_FORMAT_VERSION = 1  # bump when to_dict()'s layout changes; from_dict() reads older versions
# The token mixers of attention blocks. "additive" is SwiftFormer's own and the default: a file
# without a "mixer" key is additive, and an additive stage's key() is what it always was.
MIXERS = ("additive", "mhsa", "separable")
# a block as one letter (`space show`, the dashboard): a conv encoder, or attention by its mixer
BLOCK_LETTERS = {"conv": "c", "additive": "A", "mhsa": "M", "separable": "S"}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class StageConfig:
    """One stage of a SwiftFormer."""

    depth: int  # number of blocks, >= 1
    width: int  # channels of every block in the stage
    mlp_ratio: float  # hidden width of each block's MLP = int(width * mlp_ratio)
    attn: tuple[int, ...] = ()  # indices of the attention blocks
    mixer: str = "additive"  # token mixer of the attention blocks (MIXERS)
    heads: int | None = None  # attention heads, for "mhsa" only (must divide width)
    index: int = field(default=0, compare=False, repr=False)  # position, for error messages only

    def __post_init__(self) -> None:
        where = f"stages[{self.index}]"
        if not _is_int(self.depth) or not 1 <= self.depth <= MAX_DEPTH:
            raise InvalidArchError(
                f"{where}.depth", self.depth, f"must be an integer in 1..{MAX_DEPTH}",
                "Every stage needs at least one block: use depth 1 or more.",
            )
        if not _is_int(self.width) or not 2 <= self.width <= MAX_WIDTH:
            raise InvalidArchError(
                f"{where}.width", self.width, f"must be an integer in 2..{MAX_WIDTH}",
                "Use a channel count such as 48, 64 or 128.",
            )
        if self.index == 0 and self.width % 2:
            raise InvalidArchError(
                f"{where}.width", self.width,
                "must be even (the stem's first conv has width // 2 channels)",
                f"Use {self.width - 1} or {self.width + 1}.",
            )
        ratio = self.mlp_ratio
        if (
            isinstance(ratio, bool)
            or not isinstance(ratio, int | float)
            or not math.isfinite(ratio)
            or ratio > MAX_MLP_RATIO
        ):
            raise InvalidArchError(
                f"{where}.mlp_ratio", ratio, f"must be a finite number up to {MAX_MLP_RATIO:g}",
                "Use a ratio such as 3.0 or 4.0.",
            )
        if int(self.width * ratio) < 1:
            raise InvalidArchError(
                f"{where}.mlp_ratio", ratio,
                f"gives an MLP hidden width int({self.width} * {ratio}) < 1",
                "Use a ratio such as 3.0 or 4.0.",
            )
        object.__setattr__(self, "mlp_ratio", float(ratio))
        attn = self.attn
        if isinstance(attn, str | bytes) or not isinstance(attn, Iterable):
            raise InvalidArchError(
                f"{where}.attn", attn, "must be a list of block indices",
                f"Use e.g. [{self.depth - 1}] for attention in the last block, or [] for none.",
            )
        attn = tuple(attn)
        if len(attn) > self.depth:
            raise InvalidArchError(
                f"{where}.attn", f"{len(attn)} indices",
                f"must list at most {self.depth} blocks (the stage has depth {self.depth})",
                "List each attention block once.",
            )
        for i in attn:
            if not _is_int(i) or not 0 <= i < self.depth:
                raise InvalidArchError(
                    f"{where}.attn", list(attn),
                    f"must hold block indices in 0..{self.depth - 1} (the stage has depth "
                    f"{self.depth})",
                    f"Remove index {i!r} or increase `{where}.depth`.",
                )
        if len(set(attn)) != len(attn):
            raise InvalidArchError(
                f"{where}.attn", list(attn), "must not repeat a block index",
                "List each attention block once.",
            )
        object.__setattr__(self, "attn", tuple(sorted(attn)))
        self._check_mixer(where)

    def _check_mixer(self, where: str) -> None:
        if self.mixer not in MIXERS:
            raise InvalidArchError(
                f"{where}.mixer", self.mixer, f"is not a token mixer ({', '.join(MIXERS)})",
                'Use "additive" (SwiftFormer\'s), "mhsa" with "heads", or "separable".',
            )
        if not self.attn:  # no attention block: the mixer builds nothing, so it is not part of
            object.__setattr__(self, "mixer", "additive")  # the architecture (equal networks
            object.__setattr__(self, "heads", None)  # compare equal)
        elif self.mixer != "mhsa":
            if self.heads is not None:
                raise InvalidArchError(
                    f"{where}.heads", self.heads, f"is only for the mhsa mixer (this stage's "
                    f"mixer is {self.mixer})", f"Remove `{where}.heads` or use mixer \"mhsa\".",
                )
        else:
            heads = self.heads
            fit = max(h for h in (1, 2, 4, 8) if self.width % h == 0)
            if not _is_int(heads) or not 1 <= heads <= self.width:  # type: ignore[operator]
                raise InvalidArchError(
                    f"{where}.heads", heads, "must be a whole number of attention heads for "
                    "the mhsa mixer", f"Add \"heads\": {fit} (a divisor of the width "
                    f"{self.width}).",
                )
            if self.width % heads:  # type: ignore[operator]
                raise InvalidArchError(
                    f"{where}.heads", heads, f"does not divide the stage's width {self.width}",
                    f"Use a divisor of {self.width}, such as {fit}.",
                )

    @property
    def hidden_width(self) -> int:
        return int(self.width * self.mlp_ratio)

    def block_kinds(self) -> tuple[str, ...]:
        """``"conv"`` or ``"attn"`` for each block, in order."""
        return tuple("attn" if j in self.attn else "conv" for j in range(self.depth))

    def block_letters(self) -> tuple[str, ...]:
        """Each block as a letter (:data:`BLOCK_LETTERS`): ``c`` conv, else its mixer's."""
        return tuple(BLOCK_LETTERS[self.mixer if k == "attn" else k] for k in self.block_kinds())

    def mixer_label(self) -> str:
        """The mixer as people say it: ``additive``, ``mhsa4`` (4 heads), ``separable``; ``-``
        for a stage without attention."""
        if not self.attn:
            return "-"
        return f"mhsa{self.heads}" if self.mixer == "mhsa" else self.mixer

    def key(self) -> str:
        attn = ".".join(str(i) for i in self.attn) or "-"
        # additive stages keep the key they always had (the cache and stored studies use it)
        mixer = "" if self.mixer == "additive" else f"x{self.mixer_label()}"
        return f"d{self.depth}w{self.width}m{self.mlp_ratio:g}a{attn}{mixer}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "depth": self.depth,
            "width": self.width,
            "mlp_ratio": self.mlp_ratio,
            "attn": list(self.attn),
            "mixer": self.mixer,
        }
        if self.heads is not None:
            out["heads"] = self.heads
        return out


@dataclass(frozen=True)
class ArchConfig:
    """A SwiftFormer architecture: four :class:`StageConfig` plus the input resolution.

    Construction validates every field and raises :class:`~search_spaces.errors.InvalidArchError`
    (a ``ValueError``) naming the field, the received value and the fix. Two configs that build
    the same network compare equal and have the same :meth:`key`.
    """

    stages: tuple[StageConfig, ...]
    resolution: int = 224  # square input side in pixels, multiple of 32

    def __post_init__(self) -> None:
        stages = self.stages
        if isinstance(stages, str | bytes | Mapping) or not isinstance(stages, Iterable):
            raise InvalidArchError(
                "stages", stages, f"must be a list of {NUM_STAGES} stages",
                "Pass one {depth, width, mlp_ratio, attn} entry per stage.",
            )
        stages = tuple(stages)
        if len(stages) != NUM_STAGES:
            raise InvalidArchError(
                "stages", len(stages), f"must have exactly {NUM_STAGES} stages",
                "SwiftFormer has four stages (strides 4, 8, 16, 32); give one entry per stage.",
            )
        normalised = []
        for i, stage in enumerate(stages):
            if isinstance(stage, StageConfig):
                stage = StageConfig(stage.depth, stage.width, stage.mlp_ratio, stage.attn,
                                    stage.mixer, stage.heads, index=i)
            elif isinstance(stage, Mapping):
                stage = _stage_from_mapping(stage, i)
            else:
                raise InvalidArchError(
                    f"stages[{i}]", stage, "must be a StageConfig or a mapping",
                    "Use {'depth': 3, 'width': 48, 'mlp_ratio': 4.0, 'attn': [2]}.",
                )
            normalised.append(stage)
        object.__setattr__(self, "stages", tuple(normalised))
        res = self.resolution
        if not _is_int(res) or res < 32 or res % 32 or res > MAX_RESOLUTION:
            near = (max(32, 32 * round(res / 32))
                    if isinstance(res, int | float) and math.isfinite(res) else 224)
            raise InvalidArchError(
                "resolution", res, "must be a positive multiple of 32 (the network reduces by "
                f"32), at most {MAX_RESOLUTION}", f"Use {min(near, MAX_RESOLUTION)}.",
            )

    # -- convenience views -------------------------------------------------------------------
    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(s.width for s in self.stages)

    @property
    def mlp_ratios(self) -> tuple[float, ...]:
        return tuple(s.mlp_ratio for s in self.stages)

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)

    @property
    def num_attn_blocks(self) -> int:
        return sum(len(s.attn) for s in self.stages)

    @property
    def mixers(self) -> frozenset[str]:
        """The token mixers its attention blocks use (empty without attention)."""
        return frozenset(s.mixer for s in self.stages if s.attn)

    # -- identity and serialisation ---------------------------------------------------------
    def key(self) -> str:
        """Canonical string: equal for equal architectures, used to cache and dedupe."""
        return f"r{self.resolution}_" + "_".join(s.key() for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": ARCH_FORMAT_VERSION,
            "resolution": self.resolution,
            "stages": [s.to_dict() for s in self.stages],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchConfig:
        if not isinstance(data, Mapping):
            raise InvalidArchError(
                "arch", type(data).__name__, "must be a JSON object",
                'Use {"resolution": 224, "stages": [...]} as written by `swiftnas space sample '
                "--format json`.",
            )
        version = data.get("format_version", ARCH_FORMAT_VERSION)
        if version != ARCH_FORMAT_VERSION:
            raise InvalidArchError(
                "format_version", version, f"is not supported (this swiftnas reads "
                f"{ARCH_FORMAT_VERSION})", "Upgrade swiftnas or re-export the architecture.",
            )
        unknown = set(data) - {"format_version", "resolution", "stages"}
        if unknown:
            raise InvalidArchError(
                "arch", sorted(unknown), "has unknown fields",
                "Allowed fields are format_version, resolution and stages.",
            )
        if "stages" not in data:
            raise InvalidArchError(
                "stages", None, "is missing", "Add a list of four stage objects.",
            )
        return cls(stages=data["stages"], resolution=data.get("resolution", 224))

    @classmethod
    def from_file(cls, path: str | Path) -> ArchConfig:
        """Read an ArchConfig JSON file; anything else (a folder, a device, a large or binary
        file) is refused without reading it whole or echoing it."""
        path = Path(path)
        if not path.is_file():
            raise InvalidArchError("arch", str(path), "is not a file",
                                   "Pass the path of an ArchConfig JSON file.")
        if path.stat().st_size > MAX_JSON_CHARS:
            raise InvalidArchError("arch", str(path), "is not an ArchConfig JSON file (too large)",
                                   "Pass the path of an ArchConfig JSON file.")
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidArchError("arch", str(path), "is not an ArchConfig JSON file (not "
                                   "UTF-8 text)", "Pass the path of an ArchConfig JSON file.",
                                   ) from None
        return cls.from_json(text)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        # Never echo the text: it may be any file a user (or an uploaded CSV) pointed at.
        if len(text) > MAX_JSON_CHARS:
            raise InvalidArchError(
                "arch", f"{len(text)} characters", f"is not an ArchConfig JSON (those are under "
                f"{MAX_JSON_CHARS} characters)", "Pass an ArchConfig JSON file.")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArchError(
                "arch", f"{len(text)} characters of text",
                f"is not an ArchConfig JSON (not valid JSON: {exc.msg} at line {exc.lineno})",
                "Check the file; `swiftnas space sample --format json` writes a valid example.",
            ) from None
        except RecursionError:
            raise InvalidArchError(
                "arch", "deeply nested JSON", "is not an ArchConfig JSON",
                "Pass an ArchConfig JSON file.") from None
        return cls.from_dict(data)

    @classmethod
    def from_lists(
        cls,
        *,
        depths: Iterable[int],
        widths: Iterable[int],
        mlp_ratios: Iterable[float] | float = 4.0,
        attn: Iterable[Iterable[int]] | None = None,
        resolution: int = 224,
    ) -> ArchConfig:
        """Build from timm-style per-stage lists; ``attn=None`` means attention in each last block
        (the SwiftFormer paper's placement)."""
        depths, widths = list(depths), list(widths)
        ratios = (
            [mlp_ratios] * len(depths) if isinstance(mlp_ratios, int | float) else list(mlp_ratios)
        )
        attn_lists = [[d - 1] for d in depths] if attn is None else [list(a) for a in attn]
        if not len(depths) == len(widths) == len(ratios) == len(attn_lists):
            raise InvalidArchError(
                "stages", {"depths": depths, "widths": widths, "mlp_ratios": ratios},
                "lists must all have the same length", f"Give {NUM_STAGES} values for each.",
            )
        stages = [
            {"depth": d, "width": w, "mlp_ratio": m, "attn": a}
            for d, w, m, a in zip(depths, widths, ratios, attn_lists, strict=True)
        ]
        return cls(stages=tuple(stages), resolution=resolution)  # type: ignore[arg-type]


def _stage_from_mapping(data: Mapping[str, Any], index: int) -> StageConfig:
    allowed = {"depth", "width", "mlp_ratio", "attn", "mixer", "heads"}
    unknown = set(data) - allowed
    missing = {"depth", "width"} - set(data)
    if unknown or missing:
        problem = f"has unknown fields {sorted(unknown)}" if unknown else (
            f"is missing {sorted(missing)}")
        raise InvalidArchError(
            f"stages[{index}]", dict(data), problem,
            "Each stage needs depth and width, optionally mlp_ratio (default 4.0), attn "
            "(default: the last block), mixer (default additive) and heads (for mhsa).",
        )
    depth = data["depth"]
    attn = data.get("attn")
    if attn is None:
        attn = [depth - 1] if _is_int(depth) and depth >= 1 else []
    width, ratio = data["width"], data.get("mlp_ratio", 4.0)
    attn = tuple(attn) if isinstance(attn, list | tuple) else attn  # others fail validation
    mixer, heads = data.get("mixer", "additive"), data.get("heads")
    if (type(depth) is int and type(width) is int and type(ratio) in (int, float)
            and isinstance(attn, tuple) and all(type(i) is int for i in attn)
            and type(mixer) is str and (heads is None or type(heads) is int)):
        # plain values: a study's 10,000 stored architectures share a few hundred stages
        return _plain_stage(depth, width, float(ratio), attn, mixer, heads, index)
    return StageConfig(depth=depth, width=width, mlp_ratio=ratio, attn=attn, mixer=mixer,
                       heads=heads, index=index)


@functools.lru_cache(maxsize=8192)
def _plain_stage(depth: int, width: int, mlp_ratio: float, attn: tuple[int, ...], mixer: str,
                 heads: int | None, index: int) -> StageConfig:
    """A validated stage of plain ints and a float (StageConfig is frozen, so sharing one is
    safe); the exact types are checked by the caller, as the cache key ignores 1 vs True."""
    return StageConfig(depth=depth, width=width, mlp_ratio=mlp_ratio, attn=attn, mixer=mixer,
                       heads=heads, index=index)
