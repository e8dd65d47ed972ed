"""ArchConfig validation, canonical keys and JSON round-trips."""

from __future__ import annotations

import json

import pytest

from search_spaces import (
    PRESETS,
    ArchConfig,
    InvalidArchError,
    SearchSpaceError,
    UnknownPresetError,
    get_preset,
)

XS = PRESETS["xs"]


def _xs_dict() -> dict:
    return json.loads(XS.to_json())


@pytest.mark.parametrize(
    ("mutate", "field", "received", "fix_hint"),
    [
        (lambda d: d["stages"][0].update(width=47), "stages[0].width", "47", "Use 46 or 48"),
        (lambda d: d["stages"][2].update(depth=0), "stages[2].depth", "0", "depth 1 or more"),
        (lambda d: d["stages"][1].update(attn=[3]), "stages[1].attn", "[3]", "Remove index 3"),
        (lambda d: d["stages"][3].update(attn=[-1]), "stages[3].attn", "[-1]", "Remove index -1"),
        (lambda d: d.update(resolution=200), "resolution", "200", "Use 192"),
        (lambda d: d.update(resolution=0), "resolution", "0", "Use 32"),
        (lambda d: d["stages"][0].update(mlp_ratio="4"), "stages[0].mlp_ratio", "'4'", "Use a"),
        (lambda d: d["stages"].pop(), "stages", "3", "four stages"),
        (lambda d: d["stages"][0].update(attn=[1, 1]), "stages[0].attn", "[1, 1]", "once"),
        (lambda d: d["stages"][1].update(attn=2), "stages[1].attn", "2", "Use e.g. [2]"),
        (lambda d: d.update(colour="red"), "arch", "['colour']", "Allowed fields"),
    ],
)
def test_invalid_configs_name_field_value_and_fix(mutate, field, received, fix_hint) -> None:
    data = _xs_dict()
    mutate(data)
    with pytest.raises(InvalidArchError) as info:
        ArchConfig.from_dict(data)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert f"`{field}`" in message
    assert f"got {received}" in message
    assert fix_hint in message
    assert "\n" not in message


def test_unknown_preset_lists_available() -> None:
    with pytest.raises(UnknownPresetError) as info:
        get_preset("xxl")
    assert isinstance(info.value, ValueError)
    assert "'xxl'" in str(info.value)
    assert "xs, s, l1, l3" in str(info.value)


def test_preset_lookup_accepts_timm_names() -> None:
    assert get_preset("swiftformer_L1") is PRESETS["l1"]


def test_json_round_trip_and_key() -> None:
    for arch in PRESETS.values():
        again = ArchConfig.from_json(arch.to_json())
        assert again == arch
        assert again.key() == arch.key()
        assert hash(again) == hash(arch)


def test_key_is_canonical_and_distinguishes() -> None:
    data = _xs_dict()
    data["stages"][2]["attn"] = [5, 1]
    a = ArchConfig.from_dict(data)
    data["stages"][2]["attn"] = [1, 5]
    b = ArchConfig.from_dict(data)
    assert a == b and a.key() == b.key()
    assert a.stages[2].attn == (1, 5)
    assert a.key() != XS.key()
    data["stages"][2]["mlp_ratio"] = 4  # int and float spell the same arch
    assert ArchConfig.from_dict(data).key() == a.key()


def test_stage_defaults_put_attention_last() -> None:
    data = {"stages": [{"depth": d, "width": w} for d, w in [(3, 48), (3, 56), (6, 112), (4, 220)]]}
    assert ArchConfig.from_dict(data) == XS


def test_invalid_json_text_is_a_clear_error() -> None:
    with pytest.raises(SearchSpaceError, match="not valid JSON"):
        ArchConfig.from_json("{not json")


def test_stage_cache_never_lets_a_bool_or_float_pass_as_an_int() -> None:
    """Parsed stages are shared between architectures (a 10,000-trial study has a few hundred
    distinct stages); the cache key treats 1, 1.0 and True alike, so it must not skip checks."""
    good = get_preset("xs").to_dict()
    assert ArchConfig.from_dict(good) == ArchConfig.from_dict(good)
    assert ArchConfig.from_dict(good).stages[0] is ArchConfig.from_dict(good).stages[0]
    for field_name, bad in (("depth", True), ("depth", 3.0), ("width", 48.0),
                            ("attn", [True])):
        data = get_preset("xs").to_dict()
        data["stages"][0][field_name] = bad
        with pytest.raises(InvalidArchError):
            ArchConfig.from_dict(data)
