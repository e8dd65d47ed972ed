"""The SwiftFormer search space: which architectures a search may propose.

Per stage the space chooses a depth, a width, an MLP ratio, where attention goes and (in the
``mixers`` space) the attention blocks' token mixer; globally it chooses the input resolution.
Attention placement is parameterised by a count and a stride counted back from the stage's last
block: ``count=1`` is the paper's "attention in the last
block", ``count=0`` an attention-free stage, ``count=2, stride=1`` the last two blocks,
``count=2, stride=2`` every other block from the end. This keeps the Optuna parameter set fixed
(good for NSGA-II and multivariate TPE) while reaching attention in several blocks per stage.

:meth:`SwiftFormerSpace.sample` takes anything with Optuna's ``suggest_categorical(name,
choices)``, so the space knows nothing of samplers; :class:`RandomSuggester` is the smallest such
object.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .arch import MIXERS, NUM_STAGES, ArchConfig, StageConfig
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
    mixers: tuple[str, ...] = ("additive",)  # token mixer of the stage's attention blocks
    heads: tuple[int, ...] = (4,)  # attention heads of the mhsa mixer (must divide every width)

    def stage(self, depth: int, width: int, mlp_ratio: float, count: int, stride: int,
              mixer: str, heads: int, index: int) -> StageConfig:
        """The stage these answers give (``heads`` only matters to mhsa)."""
        return StageConfig(depth=depth, width=width, mlp_ratio=mlp_ratio,
                           attn=attention_indices(depth, count, stride), mixer=mixer,
                           heads=heads if mixer == "mhsa" else None, index=index)

    def contains(self, stage: StageConfig) -> bool:
        return (stage.depth in self.depths and stage.width in self.widths
                and stage.mlp_ratio in self.mlp_ratios
                and stage.attn in self.attention_patterns(stage.depth)
                and (not stage.attn or stage.mixer in self.mixers)
                and (stage.mixer != "mhsa" or stage.heads in self.heads))

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
# The `mixers` space: the default one with the token mixer as a choice in every stage. 2 and 4
# heads divide every width of the default choices.
MIXER_STAGE_CHOICES: tuple[StageChoices, ...] = tuple(
    dataclasses.replace(st, mixers=MIXERS, heads=(2, 4)) for st in DEFAULT_STAGE_CHOICES)


@dataclass(frozen=True)
class SwiftFormerSpace:
    """Choice lists for every dimension of a SwiftFormer architecture."""

    stages: tuple[StageChoices, ...] = DEFAULT_STAGE_CHOICES
    resolutions: tuple[int, ...] = DEFAULT_RESOLUTIONS

    def __post_init__(self) -> None:
        if len(self.stages) != NUM_STAGES:
            raise SearchSpaceError(
                f"A SwiftFormer space needs choices for {NUM_STAGES} stages, but got "
                f"{len(self.stages)}. Give one StageChoices per stage."
            )
        for i, st in enumerate(self.stages):
            for name in ("depths", "widths", "mlp_ratios", "attn_counts", "attn_strides",
                         "mixers", "heads"):
                if not getattr(st, name):
                    raise SearchSpaceError(
                        f"Stage {i} of the space has no `{name}` choices. Give at least one value."
                    )
            # Building every combination validates them: fail at definition, not mid-search.
            for d, w, m in itertools.product(st.depths, st.widths, st.mlp_ratios):
                for pattern in st.attention_patterns(d):
                    StageConfig(depth=d, width=w, mlp_ratio=m, attn=pattern, index=i)
            for mixer, w, h in itertools.product(st.mixers, st.widths, st.heads):
                st.stage(1, w, st.mlp_ratios[0], 1, 1, mixer, h, i)
        for r in self.resolutions:
            ArchConfig.from_lists(depths=[1] * 4, widths=[2] * 4, resolution=r)

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
            mixer = choose(f"s{i}_mixer", st.mixers)
            heads = choose(f"s{i}_heads", st.heads) if "mhsa" in st.mixers else st.heads[0]
            stages.append(st.stage(depth, width, mlp_ratio, count, stride, mixer, heads, i))
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
                           f"s{i}_attn_stride": stride, f"s{i}_mixer": s.mixer,
                           f"s{i}_heads": s.heads or st.heads[0]})
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
        return all(st.contains(s) for s, st in zip(arch.stages, self.stages, strict=True))

    def mixer_mismatch(self, arch: ArchConfig) -> str | None:
        """Why ``arch``'s token mixers are outside this space (naming the stage and the fix), or
        None when every stage's mixer is one the space offers."""
        for i, (s, st) in enumerate(zip(arch.stages, self.stages, strict=True)):
            if s.attn and s.mixer not in st.mixers:
                return (f"stages[{i}] uses the {s.mixer} mixer, which this space does not offer "
                        f"there (it offers {', '.join(st.mixers)}); search with --space mixers, "
                        "or use an additive architecture")
            if s.attn and s.mixer == "mhsa" and s.heads not in st.heads:
                return (f"stages[{i}] uses mhsa with {s.heads} heads; this space offers "
                        f"{', '.join(map(str, st.heads))} heads there")
        return None

    def size(self) -> int:
        """Number of distinct architectures (distinct attention patterns counted once)."""
        total = len(self.resolutions)
        for st in self.stages:
            # an attention-free pattern has no mixer; the others take any mixer (mhsa: any heads)
            mixers = len(st.mixers) + (len(st.heads) - 1 if "mhsa" in st.mixers else 0)
            per_stage = sum(sum(mixers if p else 1 for p in st.attention_patterns(d))
                            for d in st.depths)
            total *= per_stage * len(st.widths) * len(st.mlp_ratios)
        return total

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
                    "mixers": list(st.mixers),
                    **({"heads": list(st.heads)} if "mhsa" in st.mixers else {}),
                }
                for st in self.stages
            ],
            "size": self.size(),
            "log10_size": round(math.log10(self.size()), 2),
        }


# The spaces a search or `swiftnas space` names with --space. "default" is the one every study
# without --space uses (its identity never changes); "mixers" adds the token mixer per stage.
SPACES: dict[str, SwiftFormerSpace] = {
    "default": SwiftFormerSpace(),
    "mixers": SwiftFormerSpace(stages=MIXER_STAGE_CHOICES),
}


def named_space(name: str) -> SwiftFormerSpace:
    """The space called ``name`` (:data:`SPACES`), or a one-line error listing the names."""
    if name not in SPACES:
        raise SearchSpaceError(f"unknown search space {name!r}: use one of "
                               f"{', '.join(SPACES)} (--space mixers opens the token mixer)")
    return SPACES[name]
