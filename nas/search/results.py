"""Reading finished (or running) studies back: lookup, settings, presets for reference, lists."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from nas.proxies import LEGACY_SCORE_WEIGHTS, ProxySettings
from nas.storage import Storage, open_storage
from nas.storage.models import PredictorRow
from search_spaces import PRESETS
from search_spaces.text import command_hint

from .accuracy import study_surrogate, with_accuracy
from .cache import cached_evaluation, save_evaluation
from .evaluation import EvaluationSettings, evaluate_arch
from .pareto import Candidate, from_summary
from .spec import ATTR, SearchError
from .study import DEFAULT_HEARTBEAT_S, optuna_storage
from .trials import stale_running, trial_stats


@dataclass
class LoadedStudy:
    study: optuna.Study
    storage: Storage
    identity: dict[str, Any]

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def budget_ms(self) -> float:
        return float(self.identity["latency_budget_ms"])

    @property
    def device(self) -> str:
        return str(self.identity["device"])

    @property
    def searches_mixers(self) -> bool:
        """Whether the study's space offers a token mixer other than additive attention."""
        space = self.identity.get("space")
        stages = space.get("stages", []) if isinstance(space, dict) else []
        return any(st.get("mixers", ["additive"]) != ["additive"] for st in stages
                   if isinstance(st, dict))


def load_study(storage_url: str, name: str) -> LoadedStudy:
    """Study ``name`` of ``storage_url``; a clear error lists the studies when it is missing."""
    store = open_storage(storage_url, create=False)
    ostore = optuna_storage(storage_url, create=False)
    names = optuna.get_all_study_names(ostore)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise SearchError(f"no study {name!r} in {store.url} (studies: {known}); list them with "
                          f"`{command_hint('studies', storage=store.url)}`")
    study = optuna.load_study(study_name=name, storage=ostore)
    identity = study.user_attrs.get(ATTR)
    if identity is None:
        raise SearchError(f"study {name!r} in {store.url} was not created by `swiftnas search`")
    return LoadedStudy(study=study, storage=store, identity=identity)


def study_names(storage_url: str) -> list[str]:
    """The names of the swiftnas studies in ``storage_url``, oldest first (no trials read)."""
    open_storage(storage_url, create=False)  # a clear error for a URL without swiftnas data
    studies = optuna_storage(storage_url, create=False).get_all_studies()
    return [s.study_name for s in studies if ATTR in s.user_attrs]


def get_trial(loaded: LoadedStudy, number: int) -> optuna.trial.FrozenTrial | None:
    """Trial ``number`` without loading the whole study (one row, not every trial)."""
    storage = loaded.study._storage
    try:
        trial_id = storage.get_trial_id_from_study_id_trial_number(loaded.study._study_id, number)
    except KeyError:
        return None
    return storage.get_trial(trial_id)


def study_settings(loaded: LoadedStudy) -> EvaluationSettings:
    """The evaluation settings the study ran with (its predictor artifact comes from SQL)."""
    ident = loaded.identity
    with loaded.storage.session() as session:
        row = session.scalars(sa.select(PredictorRow).filter_by(
            digest=ident["predictor_digest"])).first()
    if row is None:
        raise SearchError(f"the predictor of study {loaded.name!r} is missing from the storage")
    return EvaluationSettings(device=ident["device"], predictor=json.loads(row.artifact_json),
                              proxy=ProxySettings(**ident["proxy"]),
                              proxies=tuple(ident["proxies"]),
                              score_weights=dict(ident.get("score", LEGACY_SCORE_WEIGHTS)))


def reference_candidates(loaded: LoadedStudy, *, save: bool = True) -> list[Candidate]:
    """SwiftFormer XS/S/L1/L3 scored by the study's proxy and predictor, from the SQL cache
    when there; evaluations that were missing are stored when ``save`` (the dashboard only
    reads, so it passes ``save=False``)."""
    settings = study_settings(loaded)  # its predictor is registered: the study's own
    surrogate = study_surrogate(loaded.study.user_attrs)
    out = []
    for name, arch in PRESETS.items():
        ev = cached_evaluation(loaded.storage, arch, settings)
        if ev is None:
            ev = evaluate_arch(arch, settings)
            if save:
                save_evaluation(loaded.storage, ev, settings)
        # the presets are scored as the study's trials were (study_settings: its own score)
        out.append(from_summary(f"SwiftFormer-{name.upper()}",
                                with_accuracy(ev.summary(), surrogate), loaded.budget_ms))
    return out


def list_studies(storage_url: str) -> list[dict[str, Any]]:
    """One row per study: identity, trial counts by state, feasible count, last update."""
    open_storage(storage_url, create=False)  # a clear error for a URL without swiftnas data
    ostore = optuna_storage(storage_url, create=False)
    rows = []
    # not optuna.get_all_study_summaries: it loads and deep-copies every trial, which we read
    # (faster) below anyway
    for summary in ostore.get_all_studies():
        ident = summary.user_attrs.get(ATTR, {})
        study = optuna.load_study(study_name=summary.study_name, storage=ostore)
        stats = trial_stats(study)
        assert stats is not None  # swiftnas storages are SQL
        counts, feasible, last = stats["counts"], stats["feasible"], stats["last_update"]
        # the grace period of the study's latest run (older studies: the default)
        heartbeat = summary.user_attrs.get("heartbeat_interval", DEFAULT_HEARTBEAT_S)
        stale = stale_running(study, 2 * heartbeat) if counts[TrialState.RUNNING] else []
        rows.append({
            "study": summary.study_name, "device": ident.get("device", ""),
            "latency_budget_ms": ident.get("latency_budget_ms"),
            "sampler": summary.user_attrs.get("sampler", ""),
            "complete": counts[TrialState.COMPLETE], "feasible": feasible,
            "running": counts[TrialState.RUNNING] - len(stale),
            # RUNNING in the database, but their driver is gone (no heartbeat)
            "stale": len(stale),
            "stale_minutes": round(max(stale) / 60, 1) if stale else None,
            "failed": counts[TrialState.FAIL],
            "waiting": counts[TrialState.WAITING],
            "last_update": last.isoformat(timespec="seconds") if isinstance(last, datetime)
            else None,
            "swiftnas": bool(ident),
        })
    return rows
