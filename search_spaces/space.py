"""The SwiftFormer search space: which architectures a search may propose.

Per stage the space chooses a depth, a width, an MLP ratio and where attention goes; globally it
chooses the input resolution. Attention placement is parameterised by a count and a stride
counted back from the stage's last block: ``count=1`` is the paper's "attention in the last
block", ``count=0`` an attention-free stage, ``count=2, stride=1`` the last two blocks,
``count=2, stride=2`` every other block from the end. This keeps the Optuna parameter set fixed
(good for NSGA-II and multivariate TPE) while reaching attention in several blocks per stage.

:meth:`SwiftFormerSpace.sample` takes anything with Optuna's ``suggest_categorical(name,
choices)``, so the space knows nothing of samplers; :class:`RandomSuggester` is the smallest such
object.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

from .arch import NUM_STAGES, ArchConfig, StageConfig
from .errors import SearchSpaceError


class Suggester(Protocol):
    """What :meth:`SwiftFormerSpace.sample` needs: an ``optuna.Trial`` satisfies it."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


class _ChoiceRecorder:
    """Records every ``suggest_categorical`` call's choices; answers with the first choice."""

    def __init__(self) -> None:
        self.choices: dict[str, tuple[Any, ...]] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.choices[name] = tuple(choices)
        return choices[0]


class RandomSuggester:
    """Uniform choices from a seeded ``random.Random``; records what it suggested in ``params``."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self._rng.choice(list(choices))
        self.params[name] = value
        return value


def attention_indices(depth: int, count: int, stride: int) -> tuple[int, ...]:
    """Block indices of ``count`` attention blocks placed every ``stride`` blocks from the end."""
    return tuple(sorted({depth - 1 - k * stride for k in range(count)} & set(range(depth))))


@dataclass(frozen=True)
class StageChoices:
    """Choices for one stage."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    mlp_ratios: tuple[float, ...] = (2.0, 3.0, 4.0)
    attn_counts: tuple[int, ...] = (0, 1, 2, 3)  # attention blocks in the stage
    attn_strides: tuple[int, ...] = (1, 2)  # spacing between them, counted from the last block

    def attention_patterns(self, depth: int) -> set[tuple[int, ...]]:
        return {
            attention_indices(depth, c, s)
            for c, s in itertools.product(self.attn_counts, self.attn_strides)
        }


# Wide enough to hold xs/s/l1/l3 (depths [3-4, 3-4, 6-12, 4-6], widths [48-64, 56-128, 112-320,
# 220-512]) and to go well below and above them.
DEFAULT_STAGE_CHOICES: tuple[StageChoices, ...] = (
    StageChoices(depths=(1, 2, 3, 4, 5), widths=(32, 40, 48, 64, 80)),
    StageChoices(depths=(1, 2, 3, 4, 5), widths=(48, 56, 64, 96, 128, 160)),
    StageChoices(
        depths=tuple(range(2, 15)), widths=(96, 112, 128, 168, 192, 256, 320, 384),
    ),
    StageChoices(depths=tuple(range(1, 9)), widths=(160, 192, 220, 224, 256, 384, 512, 640)),
)
DEFAULT_RESOLUTIONS: tuple[int, ...] = (192, 224, 256)


@dataclass(frozen=True)
class SwiftFormerSpace:
    """Choice lists for every dimension of a SwiftFormer architecture."""

    stages: tuple[StageChoices, ...] = DEFAULT_STAGE_CHOICES
    resolutions: tuple[int, ...] = DEFAULT_RESOLUTIONS
    _max_depths: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.stages) != NUM_STAGES:
            raise SearchSpaceError(
                f"A SwiftFormer space needs choices for {NUM_STAGES} stages, but got "
                f"{len(self.stages)}. Give one StageChoices per stage."
            )
        for i, st in enumerate(self.stages):
            for name in ("depths", "widths", "mlp_ratios", "attn_counts", "attn_strides"):
                if not getattr(st, name):
                    raise SearchSpaceError(
                        f"Stage {i} of the space has no `{name}` choices. Give at least one value."
                    )
            # Building every combination validates them: fail at definition, not mid-search.
            for d, w, m in itertools.product(st.depths, st.widths, st.mlp_ratios):
                for pattern in st.attention_patterns(d):
                    StageConfig(depth=d, width=w, mlp_ratio=m, attn=pattern, index=i)
        for r in self.resolutions:
            ArchConfig.from_lists(depths=[1] * 4, widths=[2] * 4, resolution=r)
        object.__setattr__(self, "_max_depths", tuple(max(st.depths) for st in self.stages))

    # -- sampling ----------------------------------------------------------------------------
    def sample(self, trial: Suggester) -> ArchConfig:
        """Ask ``trial`` for every choice (parameter names ``s{i}_depth`` ..., ``resolution``).

        A choice with a single value is not asked: it would be recorded as a parameter that
        never varies and clutter every plot of Optuna and optuna-dashboard."""

        def choose(name: str, choices: Sequence[Any]) -> Any:
            return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)

        stages = []
        for i, st in enumerate(self.stages):
            depth = choose(f"s{i}_depth", st.depths)
            width = choose(f"s{i}_width", st.widths)
            mlp_ratio = choose(f"s{i}_mlp_ratio", st.mlp_ratios)
            count = choose(f"s{i}_attn_count", st.attn_counts)
            stride = choose(f"s{i}_attn_stride", st.attn_strides)
            stages.append(StageConfig(
                depth=depth, width=width, mlp_ratio=mlp_ratio,
                attn=attention_indices(depth, count, stride), index=i,
            ))
        resolution = choose("resolution", self.resolutions)
        return ArchConfig(stages=tuple(stages), resolution=resolution)

    def parameters(self) -> dict[str, tuple[Any, ...]]:
        """Every parameter :meth:`sample` asks for, with its choices. Read off ``sample`` itself
        (every trial asks for the same names whatever it draws), so the two cannot disagree."""
        recorder = _ChoiceRecorder()
        self.sample(recorder)
        return recorder.choices

    def params_of(self, arch: ArchConfig) -> dict[str, Any] | None:
        """The answers that make :meth:`sample` return ``arch`` (what Optuna's
        ``enqueue_trial`` takes), or None when the space does not contain it. An attention
        pattern that several (count, stride) pairs give gets the first pair."""
        if not self.contains(arch):
            return None
        params: dict[str, Any] = {"resolution": arch.resolution}
        for i, (s, st) in enumerate(zip(arch.stages, self.stages, strict=True)):
            count, stride = next((c, r) for c in st.attn_counts for r in st.attn_strides
                                 if attention_indices(s.depth, c, r) == s.attn)
            params.update({f"s{i}_depth": s.depth, f"s{i}_width": s.width,
                           f"s{i}_mlp_ratio": s.mlp_ratio, f"s{i}_attn_count": count,
                           f"s{i}_attn_stride": stride})
        asked = self.parameters()  # single-choice dimensions are not parameters
        return {k: v for k, v in params.items() if k in asked}

    def sample_random(self, n: int, *, seed: int | None = None) -> list[ArchConfig]:
        """``n`` independent uniform samples (duplicates possible, as with any sampler)."""
        suggester = RandomSuggester(seed)
        return [self.sample(suggester) for _ in range(n)]

    # -- membership and size -----------------------------------------------------------------
    def contains(self, arch: ArchConfig) -> bool:
        if arch.resolution not in self.resolutions:
            return False
        return all(
            s.depth in st.depths
            and s.width in st.widths
            and s.mlp_ratio in st.mlp_ratios
            and s.attn in st.attention_patterns(s.depth)
            for s, st in zip(arch.stages, self.stages, strict=True)
        )

    def size(self) -> int:
        """Number of distinct architectures (distinct attention patterns counted once)."""
        total = len(self.resolutions)
        for st in self.stages:
            per_stage = sum(len(st.attention_patterns(d)) for d in st.depths)
            total *= per_stage * len(st.widths) * len(st.mlp_ratios)
        return total

    # -- numeric encoding --------------------------------------------------------------------
    def encoding_names(self) -> list[str]:
        names = ["resolution"]
        for i, max_depth in enumerate(self._max_depths):
            names += [f"s{i}_depth", f"s{i}_width", f"s{i}_mlp_ratio", f"s{i}_attn_count"]
            names += [f"s{i}_attn_from_end_{k}" for k in range(max_depth)]
        return names

    def encode(self, arch: ArchConfig) -> np.ndarray:
        """Fixed-length float vector for surrogate models (names: :meth:`encoding_names`).

        Attention is a mask over block positions counted from the stage's end, so "attention in
        the last block" is the same feature at every depth. The map is injective on architectures
        whose depths fit the space's maximum depths.
        """
        values: list[float] = [float(arch.resolution)]
        for i, (stage, max_depth) in enumerate(zip(arch.stages, self._max_depths, strict=True)):
            if stage.depth > max_depth:
                raise SearchSpaceError(
                    f"Cannot encode stage {i} with depth {stage.depth}: this space's encoding "
                    f"holds at most {max_depth} blocks there. Encode with a space whose depths "
                    "include "
                    f"{stage.depth}."
                )
            mask = [0.0] * max_depth
            for j in stage.attn:
                mask[stage.depth - 1 - j] = 1.0
            values += [stage.depth, stage.width, stage.mlp_ratio, len(stage.attn), *mask]
        import numpy as np  # here, not at import: `swiftnas --help` imports this module

        return np.asarray(values, dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        """The choice lists as plain data (for ``swiftnas space show``)."""
        return {
            "resolutions": list(self.resolutions),
            "stages": [
                {
                    "depths": list(st.depths),
                    "widths": list(st.widths),
                    "mlp_ratios": list(st.mlp_ratios),
                    "attn_counts": list(st.attn_counts),
                    "attn_strides": list(st.attn_strides),
                }
                for st in self.stages
            ],
            "size": self.size(),
            "log10_size": round(math.log10(self.size()), 2),
        }
