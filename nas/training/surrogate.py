"""Rows for fitting the accuracy surrogate from stored trainings (``swiftnas accuracy fit``).
The surrogate itself is an evaluator: ``nas.evaluators.surrogate``."""

from __future__ import annotations

from typing import Any

import numpy as np

from nas.evaluators.surrogate import PROXY_FEATURES, arch_features

from .errors import TrainingError


def training_rows(storage_url: str, *, dataset: str | None,
                  on_row: Any = None) -> tuple[list[list[float]], list[float], str]:
    """Features and mean top-1 of every stored architecture on ``dataset`` (proxies computed
    as the search computes them: ``nas.proxies.DEFAULT_SETTINGS``)."""
    from latency_models import FeatureCache
    from nas.proxies import DEFAULT_SETTINGS, score_arch
    from nas.storage import open_storage
    from search_spaces import ArchConfig

    from .results import list_results

    results = [r for r in list_results(open_storage(storage_url, create=False), dataset=dataset)
               if r.arch_json]
    datasets = sorted({r.dataset for r in results})
    if len(datasets) != 1:
        raise TrainingError(
            f"{storage_url} holds trained swiftnas architectures on {len(datasets)} datasets"
            + (f" ({', '.join(datasets)[:200]}); choose one with --dataset" if datasets else
               "; train some with `swiftnas train` or import them with `swiftnas accuracy "
               "import`"))
    by_arch: dict[str, list[float]] = {}
    arch_json: dict[str, str] = {}
    for r in results:
        by_arch.setdefault(r.arch_key, []).append(r.top1)
        arch_json[r.arch_key] = r.arch_json
    cache = FeatureCache()
    rows, ys = [], []
    for key, accs in by_arch.items():
        arch = ArchConfig.from_json(arch_json[key])
        feats = cache.get(arch)
        scores = score_arch(arch, proxies=PROXY_FEATURES, settings=DEFAULT_SETTINGS)
        rows.append(arch_features(arch, feats.params, int(feats.total("macs")), scores))
        ys.append(float(np.mean(accs)))
        if on_row:
            on_row()
    return rows, ys, datasets[0]
