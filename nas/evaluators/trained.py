"""Trained top-1 from the trained-results table: the ``trained`` fidelity, as a lookup (the
training itself is ``nas.training``'s; this evaluator only reads what is stored)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from nas.storage import Storage
from nas.storage.models import TrainedResultRow
from search_spaces import ArchConfig

from .base import Evaluator, Fidelity, Metric, NotEvaluated


def same_experiment(arch_key: str, dataset: str, dataset_digest: str,
                    recipe_key: str) -> tuple[Any, ...]:
    """The WHERE clause of one experiment (the results table's unique key)."""
    return (TrainedResultRow.arch_key == arch_key, TrainedResultRow.dataset == dataset,
            TrainedResultRow.dataset_digest == dataset_digest,
            TrainedResultRow.recipe_key == recipe_key)


class TrainedLookup(Evaluator):
    """The stored top-1 of ``arch`` trained on ``dataset`` (and its digest) with ``recipe_key``;
    :class:`NotEvaluated` when it was never trained."""

    name = "trained"
    metrics = ("top1",)
    fidelity = Fidelity.TRAINED

    def __init__(self, storage: Storage, *, dataset: str, dataset_digest: str,
                 recipe_key: str) -> None:
        self.storage = storage
        self.dataset, self.dataset_digest, self.recipe_key = dataset, dataset_digest, recipe_key

    def key(self) -> str:
        return f"trained:{self.dataset}:{self.dataset_digest[:16]}:{self.recipe_key}"

    def evaluate(self, arch: ArchConfig, inputs: Mapping[str, Metric]) -> dict[str, Metric]:
        t0 = time.perf_counter()
        with self.storage.session() as session:
            top1 = session.scalars(sa.select(TrainedResultRow.top1).where(*same_experiment(
                arch.key(), self.dataset, self.dataset_digest, self.recipe_key))).first()
        if top1 is None:
            raise NotEvaluated(f"{arch.key()} was not trained with {self.key()}")
        return {"top1": Metric(float(top1), seconds=time.perf_counter() - t0)}
