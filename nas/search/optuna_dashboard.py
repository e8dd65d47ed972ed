"""Serve optuna-dashboard on a swiftnas storage with the latency budget respected.

Two things make over-budget trials visible to optuna-dashboard:

* swiftnas stores each trial's ``latency - budget`` under the system attribute ``constraints``
  (the list format Optuna's samplers write; :data:`nas.search.driver.CONSTRAINTS_SYSTEM_ATTR`).
  Plain ``optuna-dashboard URL`` reads it: the trial table lists it and the Pareto-front plot
  greys infeasible trials.
* optuna-dashboard's "Best Trials" list (server side, ``get_pareto_front_trials``) ignores
  constraints entirely, so an over-budget trial that dominates on the raw objectives is badged
  "Best Trial". ``swiftnas optuna-dashboard`` serves the same optuna-dashboard with that one
  function given only feasible trials, as Optuna's own ``study.best_trials`` does.

The function is private to optuna-dashboard, so the version is pinned in the ``dashboard`` extra
and a test starts the real server and checks its JSON API; an upgrade that moves the function
fails here with a clear message instead of serving a wrong list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from optuna.trial import FrozenTrial


def feasible(trial: FrozenTrial) -> bool:
    """Optuna's rule: feasible when every constraint value is <= 0 (none: feasible)."""
    return all(v <= 0 for v in trial.constraints.values())


def feasible_front(front: Callable[..., list[FrozenTrial]]) -> Callable[..., list[FrozenTrial]]:
    """``front`` (optuna-dashboard's Pareto-front function) over feasible trials only."""

    def best_feasible(trials: Sequence[FrozenTrial],
                      directions: Sequence[Any]) -> list[FrozenTrial]:
        return front([t for t in trials if feasible(t)], directions)

    return best_feasible


def serve(url: str, host: str, port: int) -> None:
    """Run optuna-dashboard on ``url`` until interrupted (blocking)."""
    import optuna
    import optuna_dashboard
    from optuna_dashboard import _app

    from nas.storage import StorageError, open_storage
    from nas.storage.storage import engine_kwargs

    open_storage(url, create=False)  # one-line errors for a wrong URL or a missing file
    original = getattr(_app, "get_pareto_front_trials", None)
    if original is None:
        raise StorageError(
            f"optuna-dashboard {optuna_dashboard.__version__} has no get_pareto_front_trials; "
            "install the version swiftnas is tested with: pip install -e '.[dashboard]'"
        )
    _app.get_pareto_front_trials = feasible_front(original)
    storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url),
                                         skip_table_creation=True)
    optuna_dashboard.run_server(storage, host=host, port=port)
