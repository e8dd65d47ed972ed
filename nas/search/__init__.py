"""Search studies: Optuna multi-objective search over the SwiftFormer space, evaluated in the
driver or on Ray workers, stored in SQL, resumable; Pareto fronts and exports."""

from .driver import SearchProgress
from .evaluation import DEFAULT_PROXIES, Evaluation, EvaluationSettings, evaluate_arch
from .export import ExportResult, export_candidate, export_trial, timm_kwargs
from .pareto import Candidate, nondominated, pareto_front, study_candidates, study_front
from .results import LoadedStudy, list_studies, load_study, reference_candidates, study_names
from .spec import SAMPLERS, SEARCH_SPACE, SearchError, StudySpec, read_config
from .study import open_study, run_study

__all__ = [
    "DEFAULT_PROXIES",
    "SAMPLERS",
    "SEARCH_SPACE",
    "Candidate",
    "Evaluation",
    "EvaluationSettings",
    "ExportResult",
    "LoadedStudy",
    "SearchError",
    "SearchProgress",
    "StudySpec",
    "evaluate_arch",
    "export_candidate",
    "export_trial",
    "list_studies",
    "load_study",
    "nondominated",
    "open_study",
    "pareto_front",
    "read_config",
    "reference_candidates",
    "run_study",
    "study_candidates",
    "study_front",
    "study_names",
    "timm_kwargs",
]
