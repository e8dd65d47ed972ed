"""The NAS-Bench-Macro rebuild matches the benchmark's parameter and FLOP counts."""

from __future__ import annotations

import random

import pytest
import torch

from nas import nas_bench_macro as nbm
from search_spaces import count_macs


@pytest.fixture(scope="module")
def entries() -> dict[str, nbm.BenchmarkEntry]:
    return nbm.load()


def _counts(code: str) -> tuple[int, int]:
    with torch.device("meta"):
        model = nbm.build_network(code)
    return sum(p.numel() for p in model.parameters()), count_macs(model, (1, 3, 32, 32))


def test_readme_anchors() -> None:
    assert _counts("00000000") == (387_882, 7_713_280)
    assert _counts("11111111")[0] == 1_588_874
    assert _counts("22222222")[0] == 2_932_586


def test_params_and_flops_match_the_benchmark_file(entries) -> None:
    # All 6,561 take ~4 min; a seeded sample of 250 plus every code of one stage-1 prefix.
    codes = random.Random(0).sample(sorted(entries), 250)
    for code in codes:
        assert _counts(code) == (entries[code].params, entries[code].flops), code


def test_distinct_networks(entries) -> None:
    assert len(entries) == 6561
    distinct = nbm.distinct(entries)
    assert len(distinct) == 3969
    # stride-1 identities move to the end of their stage; stage-first identities stay
    assert nbm.canonical_code("01002010") == "01020010"
    assert nbm.canonical_code("01020010") == "01020010"
    assert _counts("01002010") == _counts("01020010")


def test_bad_code_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="8 digits over 0/1/2"):
        nbm.build_network("0123")
