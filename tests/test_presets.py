"""The presets are timm's SwiftFormers: same parameters, same weights, same outputs."""

from __future__ import annotations

import pytest
import timm
import torch

from search_spaces import PRESETS, TIMM_NAMES, SwiftFormerSpace, arch_stats, build_model

EXPECTED_PARAMS = {"xs": 3_475_360, "s": 6_092_128, "l1": 12_057_920, "l3": 28_494_736}
PUBLISHED_GMACS = {"xs": 0.6, "s": 1.0, "l1": 1.6, "l3": 4.0}  # SwiftFormer paper, Table 1


@pytest.fixture(scope="module", params=list(PRESETS))
def preset_pair(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module, torch.nn.Module]:
    name = request.param
    torch.manual_seed(1)
    reference = timm.create_model(TIMM_NAMES[name], pretrained=False).eval()
    ours = build_model(PRESETS[name]).eval()
    return name, ours, reference


def test_parameter_count_equals_timm(preset_pair) -> None:
    name, ours, reference = preset_pair
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in reference.parameters())
    assert n_ours == n_ref == EXPECTED_PARAMS[name]


def test_timm_state_dict_loads_strictly_and_outputs_match(preset_pair) -> None:
    _, ours, reference = preset_pair
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference(x)
        got = ours(x)
        assert torch.allclose(got, expected, atol=1e-5)
        # The rest of timm's interface behaves the same too.
        assert torch.allclose(ours.forward_features(x), reference.forward_features(x), atol=1e-5)
        _, feats = ours.forward_intermediates(x)
        assert [f.shape[1] for f in feats] == [i["num_chs"] for i in reference.feature_info]


def test_stats_match_timm_and_paper(preset_pair) -> None:
    name, _, _ = preset_pair
    stats = arch_stats(PRESETS[name])
    assert stats.params == EXPECTED_PARAMS[name]
    assert stats.macs_g == pytest.approx(PUBLISHED_GMACS[name], abs=0.05)  # paper rounds to 0.1


def test_default_space_contains_presets_and_reaches_beyond() -> None:
    space = SwiftFormerSpace()
    presets = list(PRESETS.values())
    assert all(space.contains(p) for p in presets)
    for i in range(4):
        depths = [p.stages[i].depth for p in presets]
        widths = [p.stages[i].width for p in presets]
        choices = space.stages[i]
        assert min(choices.depths) < min(depths) and max(choices.depths) > max(depths)
        assert min(choices.widths) < min(widths) and max(choices.widths) > max(widths)
        assert 0 in choices.attn_counts  # attention-free stages
        assert max(choices.attn_counts) >= 2  # attention in more than one block
    assert min(space.resolutions) < 224 < max(space.resolutions)


def test_registered_model_is_a_timm_backbone_like_timms_swiftformer() -> None:
    """features_only / out_indices through timm.create_model, compared with timm's own model."""
    from timm.models import register_model

    from search_spaces.model import create_registered_model

    @register_model
    def swiftnas_test_backbone_xs(pretrained: bool = False, **kwargs):  # type: ignore[no-untyped-def]
        return create_registered_model("swiftnas_test_backbone_xs", PRESETS["xs"], pretrained,
                                       **kwargs)

    ours = timm.create_model("swiftnas_test_backbone_xs", features_only=True)
    ref = timm.create_model("swiftformer_xs", features_only=True)
    assert ours.feature_info.channels() == ref.feature_info.channels() == [48, 56, 112, 220]
    assert ours.feature_info.reduction() == ref.feature_info.reduction() == [4, 8, 16, 32]
    ours.load_state_dict(ref.state_dict(), strict=True)  # same module names as timm's
    x = torch.randn(1, 3, 96, 96)
    ours.eval(), ref.eval()
    with torch.no_grad():
        for a, b in zip(ours(x), ref(x), strict=True):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b)
    picked = timm.create_model("swiftnas_test_backbone_xs", features_only=True, out_indices=(2,))
    assert [tuple(f.shape) for f in picked(x)] == [(1, 112, 6, 6)]
    classifier = timm.create_model("swiftnas_test_backbone_xs", num_classes=7)
    cfg = timm.data.resolve_data_config({}, model=classifier)
    assert cfg["input_size"] == (3, 224, 224) and cfg["mean"] == ref.pretrained_cfg["mean"]
