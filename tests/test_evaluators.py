"""The evaluation interface: dependency order, keys, and that each evaluator gives what the
code behind it gives."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

import pytest

from nas.evaluators import (
    Evaluator,
    Fidelity,
    Metric,
    NotEvaluated,
    SyntheticEvaluator,
    evaluate_all,
)
from search_spaces import get_preset


class _Sum(Evaluator):
    """Reads the synthetic score and latency: a dependent evaluator for the tests."""

    name = "sum"
    metrics = ("sum",)
    fidelity = Fidelity.SURROGATE

    def __init__(self, depends_on: tuple[str, ...] = ("synthetic",)) -> None:
        self.depends_on = depends_on

    def key(self) -> str:
        return "sum"

    def evaluate(self, arch, inputs: Mapping[str, Metric]) -> dict[str, Metric]:
        return {"sum": Metric(inputs["score"].value + inputs["latency_ms"].value)}


def test_evaluate_all_runs_dependencies_first_and_refuses_missing_or_cyclic_ones() -> None:
    xs = get_preset("xs")
    out = evaluate_all(xs, [_Sum(), SyntheticEvaluator(3)])  # given in the wrong order
    assert out["sum"].value == pytest.approx(out["score"].value + out["latency_ms"].value)
    with pytest.raises(ValueError, match="depends on synthetic, which is not among"):
        evaluate_all(xs, [_Sum()])
    a, b = _Sum(("b",)), _Sum(("sum",))
    b.name = "b"
    with pytest.raises(ValueError, match="cycle"):
        evaluate_all(xs, [a, b])


def test_synthetic_evaluator_is_deterministic_ordered_and_needs_no_torch() -> None:
    xs, l3 = get_preset("xs"), get_preset("l3")
    one, again, other = SyntheticEvaluator(0), SyntheticEvaluator(0), SyntheticEvaluator(1)
    assert one.evaluate(xs, {}) == again.evaluate(xs, {})
    assert one.evaluate(xs, {}) != other.evaluate(xs, {}) and one.key() != other.key()
    assert one.evaluate(l3, {})["score"].value > one.evaluate(xs, {})["score"].value
    assert one.evaluate(l3, {})["latency_ms"].value > one.evaluate(xs, {})["latency_ms"].value
    code = ("import sys; from nas.evaluators import SyntheticEvaluator, evaluate_all; "
            "from search_spaces import ArchConfig; import json; "
            "evaluate_all(ArchConfig.from_dict(json.loads(sys.argv[1])), [SyntheticEvaluator()]);"
            " assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code, xs.to_json(indent=None)], check=True)


def test_proxy_and_latency_evaluators_give_what_the_search_computes() -> None:
    from nas.evaluators import LatencyEvaluator, ProxyEvaluator
    from nas.search import StudySpec
    from nas.search.evaluation import evaluate_arch
    from nas.search.study import prepare_settings

    settings = prepare_settings(StudySpec(name="e", latency_budget_ms=1.0))
    xs = get_preset("xs")
    ev = evaluate_arch(xs, settings)
    latency, proxy = (LatencyEvaluator(settings.predictor, settings.device),
                      ProxyEvaluator(settings.proxy, settings.proxies, settings.score_weights))
    out = evaluate_all(xs, [latency, proxy])
    assert out["latency_ms"] == Metric(ev.latency_ms, ev.latency_low_ms, ev.latency_high_ms,
                                       out["latency_ms"].seconds)
    assert (out["params"].value, out["macs"].value) == (ev.params, ev.macs)
    assert {p: out[p].value for p in settings.proxies} == pytest.approx(ev.proxy_scores)
    # the key names the settings: another device or score definition is another key
    assert LatencyEvaluator(settings.predictor, "iPhone 12").key() != latency.key()
    assert ProxyEvaluator(settings.proxy, settings.proxies, {"swap": 1.0}).key() != proxy.key()


def test_surrogate_and_trained_lookup(tmp_path) -> None:
    from nas.evaluators import AccuracySurrogate, SurrogateEvaluator, TrainedLookup
    from nas.evaluators.surrogate import feature_names
    from nas.storage import open_storage
    from nas.training.results import TrainedResult, store_result

    xs = get_preset("xs")
    rows = [[float(i * j % 7) for j in range(len(feature_names(4)))] for i in range(8)]
    sur = AccuracySurrogate.fit(rows, [70.0 + i for i in range(8)], names=feature_names(4),
                                kind="bayes_ridge")
    inputs = {"params": Metric(2e6), "macs": Metric(6e8), "score": Metric(5.0)}
    got = SurrogateEvaluator(sur).evaluate(xs, inputs)["top1"]
    assert (got.value, got.low, got.high) == sur.predict(xs, 2_000_000, 600_000_000,
                                                         {"score": 5.0})
    assert got.low < got.value < got.high

    store = open_storage(f"sqlite:///{tmp_path}/t.db")
    lookup = TrainedLookup(store, dataset="d", dataset_digest="x", recipe_key="r1")
    with pytest.raises(NotEvaluated):
        lookup.evaluate(xs, {})
    store_result(store, TrainedResult(xs.key(), xs.to_json(), "d", "x", "r1", "label", 81.5,
                                      None, None, "cpu", "train", "here"),
                 recipe_json="{}", versions={})
    assert lookup.evaluate(xs, {})["top1"].value == 81.5
    other = TrainedLookup(store, dataset="d", dataset_digest="x", recipe_key="r2")
    with pytest.raises(NotEvaluated):  # another recipe is another experiment
        other.evaluate(xs, {})
