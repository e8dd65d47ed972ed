"""Property tests over the search space: every sample validates, round-trips, builds and trains."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from search_spaces import (
    ArchConfig,
    StageChoices,
    SwiftFormerSpace,
    attention_indices,
    build_model,
)

SPACE = SwiftFormerSpace()


class _HypothesisSuggester:
    """Lets hypothesis drive :meth:`SwiftFormerSpace.sample` (so it can shrink failures)."""

    def __init__(self, draw: Any) -> None:
        self._draw = draw

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._draw(st.sampled_from(list(choices)), label=name)


@st.composite
def archs(draw: Any) -> ArchConfig:
    return SPACE.sample(_HypothesisSuggester(draw))


@given(archs())
@settings(max_examples=300)
def test_samples_validate_and_round_trip(arch: ArchConfig) -> None:
    assert SPACE.contains(arch)
    again = ArchConfig.from_json(arch.to_json())
    assert again == arch and again.key() == arch.key()


@pytest.mark.slow
@given(archs())
@settings(max_examples=12)
def test_samples_build_run_forward_backward_and_every_parameter_learns(arch: ArchConfig) -> None:
    model = build_model(arch, num_classes=10).train()
    x = torch.randn(2, 3, arch.resolution, arch.resolution)
    out = model(x)
    assert out.shape == (2, 10)
    out.square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient in {arch.key()}"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient in {arch.key()}"


def test_sampling_is_deterministic_per_seed() -> None:
    assert SPACE.sample_random(5, seed=7) == SPACE.sample_random(5, seed=7)
    assert SPACE.sample_random(5, seed=7) != SPACE.sample_random(5, seed=8)


def test_optuna_trial_is_a_suggester() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    arch = SPACE.sample(trial)
    assert SPACE.contains(arch)
    assert set(trial.params) == {
        *(f"s{i}_{p}" for i in range(4)
          for p in ("depth", "width", "mlp_ratio", "attn_count", "attn_stride")),
        "resolution",
    }


def test_parameters_are_exactly_what_sample_suggests() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    SPACE.sample(trial)
    suggested = {name: tuple(d.choices) for name, d in trial.distributions.items()}
    assert suggested == SPACE.parameters() and len(suggested) == 21


def test_single_value_choices_are_not_recorded_as_parameters() -> None:
    space = SwiftFormerSpace(
        stages=tuple(
            StageChoices(depths=(2,), widths=(32, 48), mlp_ratios=(4.0,), attn_counts=(1,),
                         attn_strides=(1,))
            for _ in range(4)
        ),
        resolutions=(224,),
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    arch = space.sample(trial)
    assert set(trial.params) == {f"s{i}_width" for i in range(4)}
    assert space.parameters() == {f"s{i}_width": (32, 48) for i in range(4)}
    assert space.contains(arch) and arch.resolution == 224
    assert all(s.depth == 2 and s.attn == (1,) for s in arch.stages)


def test_attention_indices_cover_placements() -> None:
    assert attention_indices(4, 1, 1) == (3,)  # paper: last block
    assert attention_indices(4, 0, 1) == ()  # attention-free
    assert attention_indices(4, 2, 1) == (2, 3)
    assert attention_indices(5, 3, 2) == (0, 2, 4)
    assert attention_indices(2, 3, 2) == (1,)  # clipped to the stage


def test_size_counts_distinct_architectures() -> None:
    tiny = SwiftFormerSpace(
        stages=tuple(
            StageChoices(depths=(1, 2), widths=(32,), mlp_ratios=(4.0,), attn_counts=(0, 1, 2),
                         attn_strides=(1,))
            for _ in range(4)
        ),
        resolutions=(224,),
    )
    # depth 1: patterns (), (0,); depth 2: (), (1,), (0, 1) -> 5 per stage
    assert tiny.size() == 5**4
    seen = {a.key() for a in tiny.sample_random(5000, seed=0)}
    assert len(seen) <= tiny.size()
    assert len(seen) > 0.9 * tiny.size()
    assert math.log10(SPACE.size()) > 9


def test_bad_space_definitions_fail_early() -> None:
    with pytest.raises(ValueError, match="4 stages"):
        SwiftFormerSpace(stages=SPACE.stages[:3])
    with pytest.raises(ValueError, match=r"stages\[0\]\.width"):
        SwiftFormerSpace(stages=(StageChoices(depths=(1,), widths=(33,)), *SPACE.stages[1:]))
    with pytest.raises(ValueError, match="resolution"):
        SwiftFormerSpace(resolutions=(100,))
