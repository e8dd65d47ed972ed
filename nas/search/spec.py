"""What a study is: its options, how they are validated, read from TOML and stored on the study.

A study's *identity* (device, budget, space, proxy setting, predictor artifact, objectives) is
stored in its Optuna user attributes; resuming with a different identity is refused, because its
old and new trials would not be comparable. Sampler, seed and worker count may change between
runs of one study.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.proxies import (
    DEFAULT_SCORE_WEIGHTS,
    DEFAULT_SETTINGS,
    LEGACY_SCORE_WEIGHTS,
    ProxyError,
    ProxySettings,
    describe_score,
)
from search_spaces import (
    ArchConfig,
    SearchSpaceError,
    StageChoices,
    SwiftFormerSpace,
    SwiftNASError,
)
from search_spaces.space import DEFAULT_STAGE_CHOICES, SPACES, named_space

from .evaluation import DEFAULT_PROXIES, OBJECTIVE_PROXY

SAMPLERS = ("nsga2", "tpe", "random")
# How a format-1 identity (studies created before objectives were data) names the objectives.
OBJECTIVES = (f"accuracy_score:{OBJECTIVE_PROXY}:maximize", "latency_ms:minimize")
ATTR = "swiftnas"  # the study user attribute that holds the identity
FORMAT = 2  # of a new study's identity; format-1 studies keep resuming (StudySpec.identity)
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Objective:
    """One objective of a study, as data: the metric of a trial's evaluation summary it reads
    (``accuracy_score`` is the accuracy objective: the proxy score, or a surrogate's top-1),
    its direction, the evaluator that produces it, and an optional budget (a constraint:
    feasible when the value is at most the budget)."""

    metric: str
    direction: str  # "maximize" or "minimize"
    evaluator: str  # "proxy", "surrogate" or "latency"
    budget: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise SearchError(f"objective {self.metric!r}: direction must be maximize or "
                              f"minimize, but got {self.direction!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction,
                "evaluator": self.evaluator}


def default_objectives(latency_budget_ms: float, *, surrogate: bool) -> tuple[Objective, ...]:
    """Accuracy up (the proxy score, or the surrogate's top-1), predicted latency down within
    the budget."""
    return (Objective("accuracy_score", "maximize", "surrogate" if surrogate else "proxy"),
            Objective("latency_ms", "minimize", "latency", budget=float(latency_budget_ms)))
MAX_STUDY_NAME = 512  # Optuna's study_name column (VARCHAR(512) on PostgreSQL)

# The proxy scores a candidate at a fixed input size, so it cannot see the deployment resolution:
# with resolution in the space a search would always pick the smallest one. Searches therefore
# fix it at SwiftFormer's 224 px; a config file may open it up (see README).
SEARCH_SPACE = SwiftFormerSpace(stages=DEFAULT_STAGE_CHOICES, resolutions=(224,))


class SearchError(SwiftNASError, ValueError):
    """Bad search options, or a study that cannot be run or resumed as asked."""


def search_space(name: str) -> SwiftFormerSpace:
    """The named space (``--space``; :data:`search_spaces.space.SPACES`) as a search uses it:
    at the fixed search resolution, as :data:`SEARCH_SPACE`."""
    try:
        return dataclasses.replace(named_space(name), resolutions=SEARCH_SPACE.resolutions)
    except SearchSpaceError as exc:
        raise SearchError(f"--space: {exc}") from None


def space_name(space: SwiftFormerSpace) -> str | None:
    """The ``--space`` name a search space has, or None for a custom ``[space]`` table."""
    return next((n for n in SPACES if search_space(n) == space), None)


_ADDITIVE_ONLY = StageChoices(depths=(1,), widths=(2,))  # mixer fields at their defaults


def space_to_dict(space: SwiftFormerSpace) -> dict[str, Any]:
    """The space as plain data, part of a study's identity. The token-mixer fields appear only
    when a stage offers more than additive attention, so a default-space study made before
    mixers existed keeps its identity."""
    def stage(st: StageChoices) -> dict[str, Any]:
        out = {k: list(v) for k, v in dataclasses.asdict(st).items()}
        if st.mixers == _ADDITIVE_ONLY.mixers:
            del out["mixers"], out["heads"]
        elif "mhsa" not in st.mixers:
            del out["heads"]
        return out

    return {"resolutions": list(space.resolutions),
            "stages": [stage(st) for st in space.stages]}


def space_from_dict(data: dict[str, Any]) -> SwiftFormerSpace:
    stages = data.get("stages")
    if not isinstance(stages, list):
        raise SearchError("config [space] needs `stages`: a list of 4 tables ([[space.stages]]) "
                          "with depths, widths, mlp_ratios, attn_counts, attn_strides")
    try:
        choices = tuple(StageChoices(**{k: tuple(v) for k, v in st.items()}) for st in stages)
        return SwiftFormerSpace(stages=choices, resolutions=tuple(
            data.get("resolutions", SEARCH_SPACE.resolutions)))
    except TypeError as exc:
        raise SearchError(f"config [space]: {exc}; stage keys are depths, widths, mlp_ratios, "
                          "attn_counts, attn_strides, mixers, heads") from exc


@dataclass(frozen=True)
class StudySpec:
    """The options of one search study (CLI flags or a TOML config)."""

    name: str
    latency_budget_ms: float
    device: str = "iPhone 14"
    sampler: str = "nsga2"
    seed: int | None = 0
    # NSGA-II generation size. At 300 trials 10 beats 20 and 50 in hypervolume and is the only
    # one that dominates all four presets in every seed (benchmarks/search.py, README).
    population_size: int = 10
    space: SwiftFormerSpace = SEARCH_SPACE
    proxy: ProxySettings = DEFAULT_SETTINGS
    proxies: tuple[str, ...] = DEFAULT_PROXIES
    predictor_path: str | None = None  # None: the shipped default predictor
    surrogate_path: str | None = None  # accuracy surrogate (None: the proxy score)
    # A new study's first trials are the presets the space contains, so its front is never
    # worse than the hand designs. Not part of the identity: it only decides where a new study
    # starts. Benchmarks that compare samplers turn it off.
    start_from_presets: bool = True
    # () means the default two (``default_objectives``); a third, e.g.
    # Objective("params", "minimize", "latency"), is a change of this field alone
    objectives: tuple[Objective, ...] = ()
    # not None: evaluate with the torch-free synthetic evaluator (driver tests and benchmarks);
    # part of the identity, so such a study is never resumed as a real one
    synthetic_seed: int | None = None
    # the user's own architectures to evaluate first (--start-from), queued like the presets;
    # not part of the identity (they only decide where the sampler starts)
    start_archs: tuple[ArchConfig, ...] = ()

    @property
    def study_objectives(self) -> tuple[Objective, ...]:
        return self.objectives or default_objectives(self.latency_budget_ms,
                                                     surrogate=self.surrogate_path is not None)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SearchError("study name is empty; pass --study NAME")
        if len(self.name) > MAX_STUDY_NAME:
            raise SearchError(f"study name is {len(self.name)} characters long, the storage "
                              f"allows {MAX_STUDY_NAME} (Optuna's limit); choose a shorter --study")
        budget = self.latency_budget_ms
        if not isinstance(budget, int | float) or not math.isfinite(budget) or budget <= 0:
            raise SearchError(f"latency budget must be a positive number of milliseconds, but got "
                              f"{budget!r}; e.g. --latency-budget-ms 1.0")
        if self.sampler not in SAMPLERS:
            raise SearchError(f"unknown sampler {self.sampler!r}; choose one of "
                              f"{', '.join(SAMPLERS)}")
        if self.population_size < 2:
            raise SearchError(f"NSGA-II population size must be >= 2, but got "
                              f"{self.population_size}")
        if OBJECTIVE_PROXY not in self.proxies:
            raise SearchError(f"the proxies must include the objective {OBJECTIVE_PROXY!r}")
        for i, arch in enumerate(self.start_archs):
            why = self.space.mixer_mismatch(arch)
            if why is None and not self.space.contains(arch):
                why = ("it is outside the study's search space (a depth, width, MLP ratio, "
                       "attention placement or resolution the space does not offer); check it "
                       "with `swiftnas space show ARCH`")
            if why is not None:
                raise SearchError(f"--start-from architecture {i + 1} ({arch.key()}): {why}")
        if self.surrogate_path is not None and self.proxy != DEFAULT_SETTINGS:
            raise SearchError("an accuracy surrogate reads the proxy score at the default proxy "
                              "settings; drop the [proxy] table or search with --accuracy proxy")

    def identity(self, predictor_digest: str, surrogate_digest: str | None = None,
                 score_weights: dict[str, float] | None = None,
                 format: int = FORMAT) -> dict[str, Any]:
        """What must match for a run to resume this study (JSON-able). ``score_weights``: the
        definition of the score the study is scored with (default: this swiftnas's).
        ``format``: 2 names the objectives as data; 1 (studies made before) as strings, which
        only the default objectives have."""
        extra: dict[str, Any] = ({} if surrogate_digest is None
                                 else {"surrogate_digest": surrogate_digest})
        if self.synthetic_seed is not None:
            extra["evaluation"] = f"synthetic:{self.synthetic_seed}"
        objectives: list[Any] = [o.to_dict() for o in self.study_objectives]
        if format == 1 and not self.objectives:
            objectives = list(OBJECTIVES)
        return {**extra,
            "format": format,
            "objectives": objectives,
            "device": self.device,
            "latency_budget_ms": float(self.latency_budget_ms),
            "space": space_to_dict(self.space),
            "proxy": dataclasses.asdict(self.proxy),
            "proxies": list(self.proxies),
            "score": dict(score_weights or DEFAULT_SCORE_WEIGHTS),
            "predictor_digest": predictor_digest,
        }


def check_identity(name: str, stored: dict[str, Any] | None, wanted: dict[str, Any],
                   storage_url: str) -> None:
    """Refuse to resume study ``name`` when its stored identity differs from ``wanted``."""
    if stored is None:
        raise SearchError(
            f"study {name!r} in {storage_url} was not created by `swiftnas search` (it has no "
            f"'{ATTR}' attribute); choose another --study name"
        )
    # the accuracy objective first: a surrogate study also names its evaluator among the
    # objectives, and "--accuracy, --surrogate" is the fix a user needs to read
    labels = {"surrogate_digest": "accuracy objective (--accuracy, --surrogate)",
              "objectives": "objectives", "device": "--device",
              "latency_budget_ms": "--latency-budget-ms", "space": "search space",
              "proxy": "proxy settings", "proxies": "proxies", "format": "format",
              "predictor_digest": "latency predictor (--predictor)",
              "score": "default accuracy score", "evaluation": "evaluation (synthetic or real)"}
    for key, label in labels.items():
        old, new = stored.get(key), wanted.get(key)
        if key == "score":
            old = stored.get(key, LEGACY_SCORE_WEIGHTS)  # created before the key existed
            if old != new:
                shown = describe_score(old) if isinstance(old, dict) else repr(old)[:80]
                raise SearchError(
                    f"study {name!r} in {storage_url} was scored with {shown}, and this "
                    f"run with {describe_score(dict(new or {}))}; the two are not comparable, "
                    "so start a new --study (the study's trials stay readable: pareto, export "
                    "and the dashboard still work)"
                )
            continue
        if json.dumps(old, sort_keys=True) != json.dumps(new, sort_keys=True):
            shown = (f"{old!r}, not {new!r}" if key in ("device", "latency_budget_ms")
                     else "a different one")
            if key == "space":
                names = [_space_label(v) for v in (old, new)]
                shown = f"a different one ({names[0]}, not {names[1]}; --space)"
            raise SearchError(
                f"study {name!r} in {storage_url} exists with {label} {shown}; rerun with the "
                f"study's own options to resume it, or choose a new --study name"
            )


def _space_label(data: Any) -> str:
    """'the mixers space' for a stored space that is a named one, else 'a custom space'."""
    try:
        name = space_name(space_from_dict(data)) if isinstance(data, dict) else None
    except SwiftNASError:
        name = None
    return f"the {name} space" if name else "a custom space"


# ---------------------------------------------------------------------------------- TOML
CONFIG_KEYS = {"study", "storage", "device", "latency_budget_ms", "trials", "sampler", "workers",
               "ray_address", "seed", "population_size", "predictor", "heartbeat_interval",
               "space", "proxy", "accuracy", "surrogate", "presets", "train_data",
               "train_budget", "train_out", "train_minutes", "start_from"}


CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "study": (str,), "storage": (str,), "device": (str,), "latency_budget_ms": (int, float),
    "trials": (int,), "sampler": (str,), "workers": (int,), "ray_address": (str,),
    "seed": (int,), "population_size": (int,), "predictor": (str,),
    "heartbeat_interval": (int,), "space": (str, dict), "proxy": (dict,), "accuracy": (str,),
    "surrogate": (str,), "presets": (bool,), "train_data": (str,), "train_budget": (int,),
    "train_out": (str,), "train_minutes": (int, float), "start_from": (list,)}
CONFIG_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", dict: "a table",
                     bool: "true or false", list: "an array"}
# what each key looks like in a study.toml, for the error that says a value has the wrong type
CONFIG_EXAMPLES = {
    "study": 'study = "mobile-1ms"', "storage": 'storage = "sqlite:///swiftnas.db"',
    "device": 'device = "iPhone 14"', "latency_budget_ms": "latency_budget_ms = 1.2",
    "trials": "trials = 100", "sampler": 'sampler = "nsga2"', "workers": "workers = 2",
    "ray_address": 'ray_address = "ray://head:10001"', "seed": "seed = 0",
    "population_size": "population_size = 10", "predictor": 'predictor = "predictor.json"',
    "heartbeat_interval": "heartbeat_interval = 10",
    "space": 'space = "mixers", or a [space] table with resolutions = [224] and '
             "[[space.stages]] tables",
    "proxy": "[proxy] (a table, e.g. resolution = 64)", "accuracy": 'accuracy = "proxy"',
    "surrogate": 'surrogate = "surrogate.json"', "presets": "presets = false",
    "train_data": 'train_data = "fashion-mnist"', "train_budget": "train_budget = 12",
    "train_out": 'train_out = "swiftnas-runs"', "train_minutes": "train_minutes = 90",
    "start_from": 'start_from = ["arch.json", "xs"]'}


def read_config(path: str | Path) -> dict[str, Any]:
    """A study TOML file as a dict of option values (see README, "Search studies")."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SearchError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SearchError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise SearchError(f"config file {str(path)!r}: unknown key(s) {', '.join(unknown)}; "
                          f"known keys: {', '.join(sorted(CONFIG_KEYS))}")
    for key, value in data.items():
        wanted = CONFIG_TYPES.get(key)
        # bool is an int in Python, but `workers = true` is a mistake, not 1
        if wanted and (not isinstance(value, wanted) or
                       (isinstance(value, bool) and bool not in wanted)):
            names = " or ".join(CONFIG_TYPE_NAMES[t] for t in wanted)
            kinds: dict[type, str] = {**CONFIG_TYPE_NAMES, list: "an array"}
            got = kinds.get(type(value), f"a {type(value).__name__}")
            raise SearchError(f"config file {str(path)!r}: {key} must be {names}, but got "
                              f"{got}; e.g. {CONFIG_EXAMPLES[key]}")
    try:
        if isinstance(data.get("space"), str):
            data["space"] = search_space(data["space"])
        elif "space" in data:
            data["space"] = space_from_dict(data["space"])
        if "proxy" in data:
            data["proxy"] = ProxySettings(**data["proxy"])
    except (SearchSpaceError, ProxyError) as exc:
        raise SearchError(f"config file {str(path)!r}: {exc}") from None
    except TypeError as exc:
        raise SearchError(f"config file {str(path)!r} [proxy]: {exc}; keys are resolution, "
                          "batch_size, seed, num_classes, image_folder") from None
    return data
