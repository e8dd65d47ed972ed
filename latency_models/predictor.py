"""The learned latency predictor: a shared additive cost model, calibrated per measurement group.

Model (one row = one architecture measured in group g = source | device | compute unit)::

    latency = scale_g * sum_j w[c(g), j] * x_j + offset_g          (x: per-op-type features)
    latency *= exp(fallback_effect)        for rows flagged as Neural Engine fallbacks

- ``w[c, j] = exp(mu[c, measure(j)] + delta[c, j])``: one non-negative cost per feature, shared by
  every group of compute class c (ane / gpu / cpu). The ``delta`` are pulled towards zero (ridge,
  strength ``ridge``), so each operation type costs about the same per MAC, per byte and per op
  unless the data says otherwise: with a few hundred rows this is what lets the model generalise
  to families it has never seen.
- ``scale_g``, ``offset_g``: a per-group calibration. A new device or protocol needs only a handful
  of measurements to fit these two numbers (``calibrate``); the shared costs stay. In the fit,
  both are pulled towards the mean of their compute class's groups (``SolveOptions``).
- Fitting minimises the robust (soft-L1, nearly absolute beyond 3%) error of log latency, i.e.
  relative error, with SciPy's ``least_squares``.
- Uncertainty: the spread of log residuals in leave-one-family-out cross-validation, per group
  where the group has enough rows, pooled otherwise; predictions carry a 90% interval.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from search_spaces import ArchConfig, SwiftNASError
from search_spaces.files import atomic_write_text

from .architectures import FeatureCache
from .family import FamilyCalibration, FamilyOptions, fit_family
from .featureset import (
    CATEGORIES,
    FEATURE_SET_VERSION,
    FeatureExtractionError,
    LatencyFeatures,
)
from .measurements import DEFAULT_SOURCE, Measurement, split_group

ARTIFACT_FORMAT = 1
COMPUTE_CLASSES = ("ane", "gpu", "cpu")
# Measures the model uses per category; weight bytes enter once, as a total (weights stream in).
MODEL_MEASURES = ("macs", "act_bytes", "count")
# The published protocol preferred for a device when the user names no source: SwiftFormer's own
# table (the family this tool searches), then the rest by size.
PREFERRED_SOURCES = ("SwiftFormer",)
Z90 = 1.6449  # two-sided 90% interval of a normal
# Pull of each category's cost towards its measure's shared cost. Chosen by leave-one-family-out
# on the 467-row calibration file (benchmarks/latency_ridge.py): the all-groups error falls from
# 0.1 to 10 and is flat beyond 2, i.e. unseen families are predicted best when op types share
# their costs almost entirely.
DEFAULT_RIDGE = 10.0


class PredictorError(SwiftNASError, ValueError):
    """A predictor file is unreadable, or a prediction was asked for a group it cannot serve."""


def compute_class(compute_unit: str) -> str:
    unit = compute_unit.strip().upper()
    return {"CPU": "cpu", "GPU": "gpu"}.get(unit, "ane")


def model_feature_names() -> list[str]:
    return [f"{c}.{m}" for c in CATEGORIES for m in MODEL_MEASURES] + ["weight_bytes"]


def feature_row(features: LatencyFeatures, names: Sequence[str]) -> np.ndarray:
    if features.version != FEATURE_SET_VERSION:
        raise PredictorError(
            f"features have version {features.version}, this swiftnas computes version "
            f"{FEATURE_SET_VERSION}; clear the feature cache and recompute"
        )
    return np.array([
        features.total("weight_bytes") if n == "weight_bytes" else features.values[n]
        for n in names
    ])


@dataclass(frozen=True)
class Latency:
    """A predicted latency with its uncertainty (lognormal: median and 90% interval)."""

    latency_ms: float
    low_ms: float  # 5th percentile
    high_ms: float  # 95th percentile
    sigma_log: float  # standard deviation of log latency
    group: str

    @property
    def std_ms(self) -> float:
        """Standard deviation in ms of the lognormal around the median."""
        s2 = self.sigma_log**2
        return self.latency_ms * math.sqrt(math.exp(s2) * (math.exp(s2) - 1.0))

    def to_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "low_ms": self.low_ms, "high_ms": self.high_ms,
                "std_ms": self.std_ms, "sigma_log": self.sigma_log, "group": self.group}


@dataclass
class GroupCalibration:
    scale: float
    offset_ms: float
    compute_class: str
    rows: int
    families: int
    sigma_log: float | None = None  # from cross-validation, when the group had enough rows
    # half-width of the 90% interval in units of sigma_log (Student-t, see _set_sigmas)
    interval_z: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# The family of the searched space: every ArchConfig is a SwiftFormer.
SEARCH_FAMILY = "SwiftFormer"


@dataclass
class LatencyPredictor:
    """Fitted predictor; saved as a versioned JSON artifact (``save``/``load``)."""

    feature_names: list[str]
    feature_scale: list[float]  # features are divided by these before the dot product
    weights: dict[str, list[float]]  # compute class -> cost per scaled feature (ms)
    groups: dict[str, GroupCalibration]
    fallback_log_effect: float
    pooled_sigma_log: float
    pooled_interval_z: float = Z90
    name: str = "swiftnas-latency"
    version: str = "1"
    ridge: float = DEFAULT_RIDGE
    feature_set_version: int = FEATURE_SET_VERSION
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # compute class -> exponent of the summed cost (SolveOptions.power_ridge); absent: 1
    exponents: dict[str, float] = field(default_factory=dict)
    # cost a fallback row adds (SolveOptions.fallback "ops" / "constant"), per operation of its
    # model (fallback_cost_per "op") or once ("model")
    fallback_cost: float = 0.0
    fallback_cost_per: str = "op"
    # v3: each measured family's own correction (latency_models/family.py); older: none
    families: dict[str, FamilyCalibration] = field(default_factory=dict)
    # arrays for fast prediction, built lazily
    _w: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    # ----------------------------------------------------------------- prediction
    def _weights(self, cls: str) -> np.ndarray:
        if cls not in self._w:
            self._w[cls] = np.asarray(self.weights[cls]) / np.asarray(self.feature_scale)
        return self._w[cls]

    def cost(self, features: LatencyFeatures, cls: str, *, fallback: bool = False) -> float:
        """A model's cost on compute class ``cls`` before a group's scale and offset: its summed
        per-op cost, plus what a Neural Engine fallback adds (``fallback_cost``), when flagged."""
        total = float(feature_row(features, self.feature_names) @ self._weights(cls))
        exponent = self.exponents.get(cls, 1.0)
        if exponent != 1.0:
            total **= exponent
        if fallback:
            per_op = self.fallback_cost_per == "op"
            total += self.fallback_cost * (features.total("count") if per_op else 1.0)
        return total

    def family_of(self, timm_name: str = "", arch: ArchConfig | None = None) -> str | None:
        """The calibrated family a model belongs to: every ArchConfig is a SwiftFormer; a timm
        model by the names the family's rows used; None when the fit has no such family."""
        if arch is not None:
            return SEARCH_FAMILY if SEARCH_FAMILY in self.families else None
        return next((f for f, c in self.families.items() if timm_name in c.timm_names), None)

    def family_correction(self, features: LatencyFeatures, group: str, cls: str,
                          family: str | None) -> float:
        """The log correction ``family`` adds to a model in ``group`` on compute class ``cls``
        (0: no such family). Its slope reads the shared cost without a fallback's addition."""
        fam = self.families.get(family) if family else None
        return fam.log_correction(group, math.log(self.cost(features, cls))) if fam else 0.0

    def predict_features(self, features: LatencyFeatures, group: str, *,
                         fallback: bool = False, family: str | None = None) -> Latency:
        """Latency in ``group``; with the correction of ``family`` when the fit has one."""
        cal = self.groups.get(group)
        if cal is None:
            raise PredictorError(
                f"predictor has no calibration for group {group!r}; known groups: "
                f"{', '.join(sorted(self.groups))}"
            )
        cost = self.cost(features, cal.compute_class, fallback=fallback)
        latency = cal.scale * cost + cal.offset_ms
        if fallback:
            latency *= math.exp(self.fallback_log_effect)
        latency *= math.exp(self.family_correction(features, group, cal.compute_class, family))
        fam = self.families.get(family) if family else None
        # the family's own spread where it was measured in this group; a table the family
        # has no rows in predicts it as an unseen family would be (leave-one-table-out is
        # worse than leave-one-row-out), so with the group's wider spread
        if fam is not None and fam.sigma_log is not None and group in fam.group_shifts:
            sigma, z = fam.sigma_log, fam.interval_z or Z90
        elif cal.sigma_log is not None:
            sigma, z = cal.sigma_log, cal.interval_z or Z90
        else:
            sigma, z = self.pooled_sigma_log, self.pooled_interval_z
        return Latency(latency_ms=latency, low_ms=latency * math.exp(-z * sigma),
                       high_ms=latency * math.exp(z * sigma), sigma_log=sigma, group=group)

    def predict(self, *, device: str, timm_name: str = "", arch: ArchConfig | None = None,
                resolution: int | None = None, source: str | None = None,
                compute_unit: str | None = None, cache: FeatureCache | None = None) -> Latency:
        """Latency of a timm model or an ArchConfig on ``device`` (see ``resolve_group``)."""
        group = self.resolve_group(device, source=source, compute_unit=compute_unit)
        cache = cache if cache is not None else default_feature_cache()
        features = cache.get(timm_name=timm_name, arch=arch, resolution=resolution)
        return self.predict_features(features, group,
                                     family=self.family_of(timm_name=timm_name, arch=arch))

    def predict_measurement(self, m: Measurement, *, cache: FeatureCache,
                            source: str | None = None) -> Latency:
        """Latency of a measurement row: in its own group when calibrated, else the device's
        group (``resolve_group``); its fallback flag applies."""
        if not (m.timm_name or m.arch):
            raise PredictorError("the row names no timm_name or arch")
        group = m.group if m.group in self.groups else self.resolve_group(
            m.device, source=source, compute_unit=m.compute_unit or None)
        features = cache.get(timm_name=m.timm_name, arch=m.arch, resolution=m.input_resolution)
        return self.predict_features(features, group, fallback=m.fallback,
                                     family=self.measurement_family(m))

    def measurement_family(self, m: Measurement) -> str | None:
        """A row's calibrated family: its ``family`` column, else as ``family_of`` finds it."""
        return m.family if m.family in self.families else self.family_of(m.timm_name, m.arch)

    # ----------------------------------------------------------------- groups
    def devices(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for g in sorted(self.groups):
            out.setdefault(split_group(g)[1], []).append(g)
        return out

    def resolve_group(self, device: str, *, source: str | None = None,
                      compute_unit: str | None = None) -> str:
        """The calibration group for ``device``.

        ``source`` matches a group's source case-insensitively as a substring ("swiftformer",
        "iFormer", "user"). Without one: the user's own measurements for that device (source
        ``user``, from ``swiftnas latency import``) when there are any, else SwiftFormer's
        published protocol where it measured that device, else the device's largest group.
        """
        by_device = {d.lower(): gs for d, gs in self.devices().items()}
        candidates = by_device.get(device.strip().lower())
        if not candidates:
            raise PredictorError(
                f"unknown device {device!r}: this predictor is calibrated for "
                f"{', '.join(sorted(self.devices()))}; to add a device, measure a few exported "
                "models on it and run `swiftnas latency import FILE` then `swiftnas latency "
                "calibrate` (or `fit`)"
            )
        if compute_unit:
            unit = compute_unit.strip().lower()
            candidates = [g for g in candidates if split_group(g)[2].lower() == unit]
        else:  # the Neural Engine (default / all / ANE) unless asked otherwise
            candidates = [g for g in candidates
                          if compute_class(split_group(g)[2]) == "ane"] or candidates
        if source:
            matches = [g for g in candidates if source.lower() in split_group(g)[0].lower()]
            if len(matches) != 1:
                known = "; ".join(split_group(g)[0] for g in candidates)
                problem = "matches no" if not matches else "is ambiguous between"
                raise PredictorError(
                    f"--source {source!r} {problem} measurement sources for {device} "
                    f"({known}); pass a longer part of one of them"
                )
            return matches[0]
        user = [g for g in candidates if split_group(g)[0] == DEFAULT_SOURCE]
        if user:
            return user[0]
        for preferred in PREFERRED_SOURCES:
            hits = [g for g in candidates if preferred.lower() in g.lower()]
            if hits:
                return hits[0]
        return max(candidates, key=lambda g: (self.groups[g].rows, g))

    # ----------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ARTIFACT_FORMAT, "name": self.name, "version": self.version,
            "feature_set_version": self.feature_set_version, "ridge": self.ridge,
            "feature_names": self.feature_names, "feature_scale": self.feature_scale,
            "weights": self.weights, "fallback_log_effect": self.fallback_log_effect,
            "pooled_sigma_log": self.pooled_sigma_log, "pooled_interval_z": self.pooled_interval_z,
            "groups": {g: c.to_dict() for g, c in self.groups.items()},
            "training": self.training, "metrics": self.metrics,
            **({"exponents": self.exponents} if self.exponents else {}),
            **({"fallback_cost": self.fallback_cost, "fallback_cost_per": self.fallback_cost_per}
               if self.fallback_cost else {}),
            **({"families": {f: c.to_dict() for f, c in self.families.items()}}
               if self.families else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyPredictor:
        if not isinstance(data, Mapping):
            raise PredictorError(
                f"a predictor artifact is a JSON object, but this file's top level is "
                f"{_json_type(data)}; pass a file written by `swiftnas latency fit --out`")
        if data.get("format") != ARTIFACT_FORMAT:
            raise PredictorError(
                f"predictor artifact format {data.get('format')!r} is not {ARTIFACT_FORMAT}; "
                "refit it with `swiftnas latency fit`"
            )
        if data.get("feature_set_version") != FEATURE_SET_VERSION:
            raise PredictorError(
                f"predictor uses feature set {data.get('feature_set_version')!r}, this swiftnas "
                f"computes {FEATURE_SET_VERSION}; refit it with `swiftnas latency fit`"
            )

        def parsed(name: str, parse: Callable[[Any], Any], default: Any = _REQUIRED) -> Any:
            """One field, parsed; a missing or mistyped one names itself in one line."""
            if name not in data and default is _REQUIRED:
                raise PredictorError(f"predictor artifact is damaged: field {name!r} is "
                                     "missing; refit it with `swiftnas latency fit --out`")
            value = data.get(name, default)
            try:
                return parse(value)
            except (ValueError, TypeError, AttributeError, KeyError):
                raise PredictorError(
                    f"predictor artifact is damaged: field {name!r} has the wrong shape "
                    f"({_json_type(value)}); refit it with `swiftnas latency fit --out`"
                ) from None

        predictor = cls(
            feature_names=parsed("feature_names", lambda v: [str(x) for x in _list(v)]),
            feature_scale=parsed("feature_scale", lambda v: [float(x) for x in _list(v)]),
            weights=parsed("weights", lambda v: {str(k): [float(x) for x in _list(w)]
                                                for k, w in v.items()}),
            groups=parsed("groups", lambda v: {str(g): GroupCalibration(**c)
                                              for g, c in v.items()}),
            fallback_log_effect=parsed("fallback_log_effect", float),
            pooled_sigma_log=parsed("pooled_sigma_log", float),
            pooled_interval_z=parsed("pooled_interval_z", float, Z90),
            name=parsed("name", str), version=parsed("version", str),
            ridge=parsed("ridge", float),
            training=parsed("training", lambda v: dict(v.items()), {}),
            metrics=parsed("metrics", lambda v: dict(v.items()), {}),
            exponents=parsed("exponents", lambda v: {str(k): float(x) for k, x in v.items()},
                            {}),
            fallback_cost=parsed("fallback_cost", float, 0.0),
            fallback_cost_per=parsed("fallback_cost_per", str, "op"),
            families=parsed("families", lambda v: {str(f): FamilyCalibration.from_dict(c)
                                                   for f, c in v.items()}, {}),
        )
        predictor.validate()
        return predictor

    def validate(self) -> None:
        """Refuse an artifact that would predict silently wrong numbers: every shape must match
        this swiftnas's feature set, every number be finite, and groups be present."""
        def bad(what: str) -> PredictorError:
            return PredictorError(f"predictor artifact is damaged: {what}; refit it with "
                                  "`swiftnas latency fit --out`")

        def finite(values: Sequence[float]) -> bool:
            return all(math.isfinite(v) for v in values)

        known = model_feature_names()  # a fit keeps the features active in its data
        unknown = [f for f in self.feature_names if f not in known]
        if not self.feature_names or unknown or len(set(self.feature_names)) != len(
                self.feature_names):
            raise bad(f"feature_names must be distinct names of feature set "
                      f"{FEATURE_SET_VERSION} (unknown: {', '.join(map(str, unknown[:3])) or '-'})")
        n = len(self.feature_names)
        if len(self.feature_scale) != n or not finite(self.feature_scale) or any(
                v <= 0 for v in self.feature_scale):
            raise bad(f"feature_scale needs {n} finite positive values")
        if not self.weights or set(self.weights) - set(COMPUTE_CLASSES):
            raise bad(f"weights must be keyed by compute class ({', '.join(COMPUTE_CLASSES)}), "
                      f"got {', '.join(sorted(self.weights)) or 'none'}")
        for cls_name, w in self.weights.items():
            if len(w) != n:
                raise bad(f"weights[{cls_name!r}] has {len(w)} values, the feature set has {n}")
            if not finite(w):
                raise bad(f"weights[{cls_name!r}] holds a NaN or infinite value")
        if set(self.exponents) - set(self.weights) or not finite(
                list(self.exponents.values())) or any(v <= 0 for v in self.exponents.values()):
            raise bad("exponents must be finite positive numbers keyed by compute class")
        if not self.groups:
            raise bad("it has no calibration groups")
        for name, cal in self.groups.items():
            try:
                split_group(name)
            except ValueError:
                raise bad(f"group {name[:80]!r} is not 'source | device | compute unit'") from None
            if cal.compute_class not in self.weights:
                raise bad(f"group {name[:80]!r} uses compute class {cal.compute_class!r}, which "
                          "has no weights")
            numbers = [cal.scale, cal.offset_ms] + (
                [cal.sigma_log] if cal.sigma_log is not None else [])
            numbers += [cal.interval_z] if cal.interval_z is not None else []
            if not finite(numbers) or cal.scale <= 0 or (cal.sigma_log or 0) < 0 or \
                    (cal.interval_z or Z90) <= 0:
                raise bad(f"group {name[:80]!r} has a non-finite or negative scale or sigma")
        for name, fam in self.families.items():
            if not fam.finite():
                raise bad(f"family {name[:80]!r} has a non-finite correction or a negative sigma")
        if self.fallback_cost_per not in ("op", "model"):
            raise bad("fallback_cost_per must be 'op' or 'model'")
        if not finite([self.fallback_log_effect, self.pooled_sigma_log, self.fallback_cost,
                       self.pooled_interval_z]) or self.pooled_sigma_log < 0 or \
                self.pooled_interval_z <= 0 or self.fallback_cost < 0:
            raise bad("fallback_log_effect or pooled_sigma_log is not a finite number")

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LatencyPredictor:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls.from_dict(data)
        except PredictorError as exc:
            raise PredictorError(f"{path}: {exc}") from exc
        except OSError as exc:
            raise PredictorError(
                f"cannot read predictor {str(path)!r}: {exc.strerror or exc}; pass a file "
                "written by `swiftnas latency fit --out`, or omit --predictor for the default"
            ) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PredictorError(
                f"{path} is not a swiftnas latency predictor ({type(exc).__name__}: {exc}); "
                "refit it with `swiftnas latency fit --out`"
            ) from exc


_REQUIRED = object()


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (never the value: files are not echoed)."""
    name = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return value


# --------------------------------------------------------------------- fitting
@dataclass
class _Design:
    x: np.ndarray  # (rows, features), scaled
    log_y: np.ndarray
    fallback: np.ndarray
    op_count: np.ndarray  # operations per row (all categories), for SolveOptions.fallback="ops"
    group_index: np.ndarray
    class_index: np.ndarray
    groups: list[str]
    classes: list[str]
    weight: np.ndarray  # per row, of its squared residual (mean 1)
    family_index: np.ndarray


def _design(rows: Sequence[Measurement], features: Sequence[LatencyFeatures],
            names: Sequence[str], scale: np.ndarray, balance: float = 0.0) -> _Design:
    groups = sorted({m.group for m in rows})
    classes = [c for c in COMPUTE_CLASSES if any(compute_class(m.compute_unit) == c for m in rows)]
    families = sorted({m.family_name for m in rows})
    cells: dict[tuple[str, str], int] = {}
    for m in rows:
        cells[m.group, m.family_name] = cells.get((m.group, m.family_name), 0) + 1
    weight = np.array([cells[m.group, m.family_name] ** -balance for m in rows])
    return _Design(
        x=np.array([feature_row(f, names) for f in features]) / scale,
        log_y=np.log([m.latency_ms for m in rows]),
        fallback=np.array([m.fallback for m in rows], dtype=float),
        op_count=np.array([f.total("count") for f in features]),
        group_index=np.array([groups.index(m.group) for m in rows]),
        class_index=np.array([classes.index(compute_class(m.compute_unit)) for m in rows]),
        groups=groups, classes=classes, weight=weight / weight.mean(),
        family_index=np.array([families.index(m.family_name) for m in rows]),
    )


@dataclass(frozen=True)
class SolveOptions:
    """Fit hyper-parameters beyond the ridge (defaults: the shipped method).

    ``balance``: each row's squared residual is weighted by ``n ** -balance``, ``n`` the rows its
    family has in its group (0: every row counts the same; 1: every family in a group counts the
    same). ``family_ridge``: when set, each family gets its own shift of log latency, shared by
    its rows in every group and pulled towards 0 with this strength, so that a family that is
    slow or fast for reasons the features do not see moves its own shift instead of the shared
    costs (a random effect; new candidates are predicted without one). ``loss`` and
    ``f_scale``: SciPy's robust loss, and the log error where it turns from squared to linear.
    """

    balance: float = 0.0
    family_ridge: float | None = None
    # 0.03 (v2.2; 0.3 before): chosen by leave-one-family-out (benchmarks/latency_fitopts.py).
    # Beyond +-3% a row's log error counts linearly (an L1 fit), so a few rows that disagree
    # with the rest (Neural Engine fallbacks, inconsistent protocols) bend the shared costs less.
    f_scale: float = 0.03
    loss: str = "soft_l1"
    # when set: latency = scale * cost ** e + offset with one exponent e per compute class, its
    # log pulled towards 0 (e = 1) with this strength (measured in latency_fitopts.py)
    power_ridge: float | None = None
    # how a Neural Engine fallback row is charged: "scale", one learned factor on its latency;
    # "ops", a learned cost per operation of the model added to its cost (a fallback is a round
    # trip between the Neural Engine and the CPU per unsupported op, whatever the width);
    # "constant", one learned cost added to every fallback row's (the round trips dominate);
    # "scale+constant", both a factor and an added cost
    fallback: str = "scale"
    # pull of each group's log scale and log offset towards the mean over the groups of its
    # compute class. 0.3 for the scales (v2.4; 0.05 towards every group's mean before): a
    # held-out family leaves its groups fewer rows, whose scale and offset then trade against
    # each other; chosen by leave-one-family-out (benchmarks/latency_fitopts.py: 0.05 / 0.15 /
    # 0.3 / 0.5 / 1). The penalties pass through the robust loss too, so beyond the loss
    # scale the pull is a constant force, which a group of many rows overrides.
    scale_ridge: float = 0.3
    offset_ridge: float = 0.05


def single_threaded_blas() -> Any:
    """A context in which every loaded BLAS (NumPy's and SciPy's OpenBLAS are two libraries)
    runs on one thread. The fit's matrices are small (a few hundred rows), so thread start-up and
    spinning cost more than they save: on 2 cores the 467-row fit takes 8 s on one thread
    against 22 s on the default two (README). Call it after SciPy's modules are imported, or
    their BLAS is not yet loaded to be limited."""
    from threadpoolctl import threadpool_limits  # lazy, like scipy

    return threadpool_limits(limits=1, user_api="blas")


def _solve(d: _Design, measure_index: np.ndarray, ridge: float,
           options: SolveOptions = SolveOptions()) -> dict[str, Any]:
    nc, nf, ng = len(d.classes), d.x.shape[1], len(d.groups)
    nm = int(measure_index.max()) + 1
    nfam = int(d.family_index.max()) + 1
    per_family = options.family_ridge is not None
    power = options.power_ridge is not None
    if options.fallback not in ("scale", "ops", "constant", "scale+constant"):
        raise ValueError(f"SolveOptions.fallback must be scale, ops, constant or "
                         f"scale+constant, not {options.fallback!r}")
    # a fallback's factor on latency (index 0 of its block) and/or added cost (the last index)
    factor = options.fallback in ("scale", "scale+constant")
    per_op = options.fallback != "scale"  # an added cost, per operation or per model
    fb_ops = d.fallback * (d.op_count if options.fallback == "ops" else 1.0)
    n_fb = int(factor) + int(per_op)
    # parameter blocks: mu, delta, log scale, log offset, fallback, family shifts, log exponents
    sizes = [nc * nm, nc * nf, ng, ng, n_fb, nfam if per_family else 0, nc if power else 0]
    bounds = np.cumsum([0, *sizes])

    def unpack(p: np.ndarray) -> tuple[np.ndarray, ...]:
        mu, delta, log_scale, log_offset, phi, shift, log_e = (
            p[bounds[i]:bounds[i + 1]] for i in range(7))
        return (mu.reshape(nc, nm), delta.reshape(nc, nf), log_scale, log_offset, phi,
                shift if per_family else np.zeros(nfam), log_e if power else np.zeros(nc))

    n = len(d.log_y)
    rows = np.arange(n)
    root_w = np.sqrt(d.weight)
    # (block, strength, centred) of the penalty rows after the data rows: the group
    # calibrations (blocks 2, 3) are pulled towards their (class's) mean, the others towards 0
    penalties = [
        (1, ridge, False), (2, options.scale_ridge, True), (3, options.offset_ridge, True),
        *([(5, options.family_ridge, False)] if per_family else []),
        *([(6, options.power_ridge, False)] if power else []),
    ]

    def forward(p: np.ndarray) -> tuple[np.ndarray, ...]:
        mu, delta, log_scale, log_offset, phi, shift, log_e = unpack(p)
        w = np.exp(mu[:, measure_index] + delta)
        terms = d.x * w[d.class_index]  # (rows, features): cost contributed by each feature
        scale = np.exp(log_scale[d.group_index])
        offset = np.exp(log_offset[d.group_index])
        cost = terms.sum(axis=1)
        e = np.exp(log_e[d.class_index])
        powered = scale * cost**e  # the group-scaled cost term of each row
        added = scale * np.exp(phi[-1]) * fb_ops if per_op else np.zeros(n)
        total = powered + added + offset
        log_pred = np.log(total) + shift[d.family_index] + (
            phi[0] * d.fallback if factor else 0.0)
        return terms, cost, e, powered, added, offset, total, log_pred

    # centring matrix of the calibration penalties: v - (mean of v over its class's groups)
    group_class = np.zeros(ng, dtype=int)
    group_class[d.group_index] = d.class_index
    same = (group_class[:, None] == group_class[None, :]).astype(float)
    centring = np.eye(ng) - same / same.sum(axis=1, keepdims=True)

    def residuals(p: np.ndarray) -> np.ndarray:
        *_, log_pred = forward(p)
        # Ridge on delta (shared cost per measure), and a pull of each group's calibration
        # towards its class's others', so groups with one or two rows stay identifiable.
        pulled = [p[bounds[b]:bounds[b + 1]] for b, _, _ in penalties]
        return np.concatenate([root_w * (log_pred - d.log_y), *(
            strength * (centring @ v if centred else v)
            for v, (_, strength, centred) in zip(pulled, penalties, strict=True))])

    def jacobian(p: np.ndarray) -> np.ndarray:
        terms, cost, e, powered, added, offset, total, _ = forward(p)
        jac = np.zeros((n + sum(sizes[b] for b, _, _ in penalties), bounds[-1]))
        # d log(total) / d delta[c(i), j]
        dterms = terms * (powered * e / (cost * total))[:, None]
        by_measure = np.stack([dterms[:, measure_index == m].sum(axis=1) for m in range(nm)], 1)
        for c in range(nc):
            mine = d.class_index == c
            jac[:n, bounds[1] + c * nf:bounds[1] + (c + 1) * nf][mine] = dterms[mine]
            jac[:n, bounds[0] + c * nm:bounds[0] + (c + 1) * nm][mine] = by_measure[mine]
        jac[rows, bounds[2] + d.group_index] = (powered + added) / total
        jac[rows, bounds[3] + d.group_index] = offset / total
        if power:
            jac[rows, bounds[6] + d.class_index] = powered * e * np.log(cost) / total
        if factor:
            jac[:n, bounds[4]] = d.fallback
        if per_op:
            jac[:n, bounds[4] + n_fb - 1] = added / total
        if per_family:
            jac[rows, bounds[5] + d.family_index] = 1.0
        jac[:n] *= root_w[:, None]
        row = n
        for b, strength, centred in penalties:
            block: np.ndarray = centring if centred else np.eye(sizes[b])
            jac[row:row + sizes[b], bounds[b]:bounds[b + 1]] = strength * block
            row += sizes[b]
        return jac

    p0 = np.concatenate([np.full(nc * nm, -3.0), np.zeros(nc * nf), np.zeros(ng),
                         np.full(ng, -2.0), {"scale": [1.0], "ops": [-5.0], "constant": [1.0],
                                             "scale+constant": [0.0, 1.0]}[options.fallback],
                         np.zeros(sizes[5] + sizes[6])])
    from scipy import optimize  # lazy: only fitting needs it

    settings: dict[str, Any] = {"jac": jacobian, "loss": options.loss, "f_scale": options.f_scale,
                                "max_nfev": 4000}
    with single_threaded_blas():
        try:
            sol = optimize.least_squares(residuals, p0, **settings)
        except np.linalg.LinAlgError:  # LAPACK's SVD can fail to converge on a finite Jacobian
            sol = optimize.least_squares(residuals, p0, tr_solver="lsmr", **settings)
    mu, delta, log_scale, log_offset, phi, _, log_e = unpack(sol.x)
    return {"w": np.exp(mu[:, measure_index] + delta), "scale": np.exp(log_scale),
            "offset": np.exp(log_offset), "phi": phi[:1] if factor else np.zeros(1),
            "fallback_cost": float(np.exp(phi[-1])) if per_op else 0.0,
            "exponents": np.exp(log_e) if power else None}


def usable(measurements: Iterable[Measurement]) -> tuple[list[Measurement], list[Measurement]]:
    """(rows naming an architecture, rows naming none: they cannot be used)."""
    ok: list[Measurement] = []
    skipped: list[Measurement] = []
    for m in measurements:
        (ok if (m.timm_name or m.arch is not None) else skipped).append(m)
    return ok, skipped


@dataclass
class FitResult:
    predictor: LatencyPredictor
    rows: list[Measurement]  # the rows used (naming an architecture)
    skipped: list[Measurement]  # rows naming no architecture
    cv_predictions: list[float | None]  # leave-one-family-out prediction per used row


def fit_predictor(measurements: Sequence[Measurement], *, cache: FeatureCache,
                  ridge: float = DEFAULT_RIDGE, options: SolveOptions = SolveOptions(),
                  family_options: FamilyOptions | None = FamilyOptions(),
                  own_interval_families: Sequence[str] = (SEARCH_FAMILY,),
                  cross_validate: bool = True,
                  progress: Callable[[str, int, int], None] | None = None,
                  name: str = "swiftnas-latency", version: str = "1") -> FitResult:
    """Fit on every row that names an architecture; optionally leave-one-family-out metrics.

    ``family_options``: the second stage, each measured family's own correction
    (``latency_models/family.py``; None: none, v2.4's predictor). With cross-validation, the
    families in ``own_interval_families`` also get their leave-one-row-out errors (one refit
    per row), from which their predictions' intervals come.

    ``progress(stage, done, total)`` is called as features are built and CV folds fit.
    """
    from .evaluation import evaluate_rows  # local: evaluation imports this module

    rows, skipped = usable(measurements)
    if len(rows) < 3:
        raise PredictorError(
            f"need at least 3 measurements that name a timm_name or arch to fit, got {len(rows)}"
        )
    features = []
    for i, m in enumerate(rows):
        try:
            features.append(cache.get(timm_name=m.timm_name, arch=m.arch,
                                      resolution=m.input_resolution))
        except (SwiftNASError, FeatureExtractionError) as exc:  # say which row names it
            where = f"{m.origin}: " if m.origin else ""
            raise PredictorError(f"{where}cannot build {m.model!r} ({m.family_name}) to "
                                 f"compute its features: {exc}") from None
        if progress:
            progress("features", i + 1, len(rows))
    cache.save()
    names = model_feature_names()
    raw = np.array([feature_row(f, names) for f in features])
    active = raw.max(axis=0) > 0
    names = [n for n, a in zip(names, active, strict=True) if a]
    measure_names = sorted({n.split(".")[-1] for n in names})
    measure_index = np.array([measure_names.index(n.split(".")[-1]) for n in names])
    raw = raw[:, active]

    def fit_on(idx: Sequence[int]) -> LatencyPredictor:
        part = [rows[i] for i in idx]
        scale = _feature_scale(raw[list(idx)], measure_index)
        d = _design(part, [features[i] for i in idx], names, scale, options.balance)
        sol = _solve(d, measure_index, ridge, options)
        resid = []
        groups = {}
        for gi, g in enumerate(d.groups):
            members = [m for m in part if m.group == g]
            groups[g] = GroupCalibration(
                scale=float(sol["scale"][gi]), offset_ms=float(sol["offset"][gi]),
                compute_class=compute_class(members[0].compute_unit), rows=len(members),
                families=len({m.family_name for m in members}))
        pred = LatencyPredictor(
            feature_names=list(names), feature_scale=[float(s) for s in scale],
            weights={c: [float(v) for v in sol["w"][k]] for k, c in enumerate(d.classes)},
            groups=groups, fallback_log_effect=float(sol["phi"][0]), pooled_sigma_log=0.0,
            ridge=ridge, name=name, version=version, fallback_cost=sol["fallback_cost"],
            fallback_cost_per="op" if options.fallback == "ops" else "model",
            exponents={} if sol["exponents"] is None else {
                c: float(sol["exponents"][k]) for k, c in enumerate(d.classes)})
        for i in idx:
            p = pred.predict_features(features[i], rows[i].group, fallback=rows[i].fallback)
            resid.append(math.log(p.latency_ms / rows[i].latency_ms))
        # in-sample spread: optimistic; replaced by the cross-validated one when available
        pred.pooled_sigma_log = float(np.std(resid))
        if family_options is not None:  # the second stage, on the shared fit's residuals
            by_family: dict[str, list[int]] = {}
            for k, i in enumerate(idx):
                by_family.setdefault(rows[i].family_name, []).append(k)
            for fam, ks in by_family.items():
                members = [rows[idx[k]] for k in ks]
                pred.families[fam] = fit_family(
                    [-resid[k] for k in ks],
                    [math.log(pred.cost(features[idx[k]], pred.groups[m.group].compute_class))
                     for k, m in zip(ks, members, strict=True)],
                    [m.group for m in members], family_options,
                    timm_names=[m.timm_name for m in members])
        return pred

    def family_rows_out(fam: str) -> dict[str, Any] | None:
        """Leave-one-row-out over a family's rows (one refit each): its predictions'
        interval spread, and the errors, in ``metrics["families"]``."""
        from scipy.stats import t as student_t

        mine = [i for i, m in enumerate(rows) if m.family_name == fam]
        if len(mine) < 3:
            return None
        out: list[dict[str, Any]] = []
        for k, i in enumerate(mine):
            fold = fit_on([j for j in range(len(rows)) if j != i])
            p = fold.predict_features(features[i], rows[i].group, fallback=rows[i].fallback,
                                      family=fam).latency_ms
            out.append({"model": rows[i].model, "group": rows[i].group,
                        "measured_ms": rows[i].latency_ms, "predicted_ms": p})
            if progress:
                progress(f"leave-one-row-out ({fam})", k + 1, len(mine))
        logs = [math.log(r["predicted_ms"] / r["measured_ms"]) for r in out]
        cal = predictor.families[fam]
        cal.sigma_log = float(np.sqrt(np.mean(np.square(logs))))
        cal.interval_z = float(student_t.ppf(0.95, len(logs) - 1))
        errors = [100 * abs(r["predicted_ms"] / r["measured_ms"] - 1) for r in out]
        return {"protocol": "leave-one-row-out: each of the family's rows is removed, the "
                            "model (both stages) is refitted, and that row is predicted",
                "mape": float(np.mean(errors)), "worst": float(max(errors)), "rows": out}

    predictor = fit_on(list(range(len(rows))))
    cv_predictions: list[float | None] = [None] * len(rows)
    if cross_validate:
        families = sorted({m.family_name for m in rows})
        for k, fam in enumerate(families):
            train = [i for i, m in enumerate(rows) if m.family_name != fam]
            test = [i for i, m in enumerate(rows) if m.family_name == fam]
            if train:
                fold = fit_on(train)
                for i in test:
                    if rows[i].group in fold.groups:  # the fold has no such family
                        cv_predictions[i] = fold.predict_features(
                            features[i], rows[i].group, fallback=rows[i].fallback,
                            family=rows[i].family_name).latency_ms
            if progress:
                progress("cross-validation", k + 1, len(families))
        _set_sigmas(predictor, rows, cv_predictions)
        predictor.metrics = {
            "protocol": "leave-one-family-out: each family is removed from every group, the "
                        "model is refitted, and that family's rows are predicted",
            **evaluate_rows(rows, cv_predictions),
            # every row's held-out prediction, for plots of out-of-sample error (dashboard)
            "cv_rows": [{"model": m.model, "group": m.group, "measured_ms": m.latency_ms,
                         "predicted_ms": p} for m, p in zip(rows, cv_predictions, strict=True)],
        }
        if family_options is not None:
            own = {f: family_rows_out(f) for f in own_interval_families
                   if f in predictor.families}
            predictor.metrics["families"] = {f: v for f, v in own.items() if v}
    predictor.training = {
        "solve_options": dataclasses.asdict(options), "rows": len(rows),
        "family_options": None if family_options is None else dataclasses.asdict(family_options),
        "skipped_rows_without_architecture": len(skipped),
        "groups": len(predictor.groups), "families": len({m.family_name for m in rows}),
        "devices": sorted({m.device for m in rows}),
        "fallback_rows": sum(m.fallback for m in rows),
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
    }
    return FitResult(predictor, rows, skipped, cv_predictions)


def _feature_scale(raw: np.ndarray, measure_index: np.ndarray) -> np.ndarray:
    """Each feature's mean over the fitted rows (``raw``: rows x features).

    The ridge pulls the costs of *scaled* features together, so scaling each by its own
    category's mean lets a rare op type (attention matmul, softmax) cost more per MAC or byte.
    Leave-one-family-out (latency_fitopts.py) prefers exactly this: scales pooled towards their
    measure's geometric mean by 0 / 0.5 / 1 / 1.5 (1 = this) gave 26.98 / 23.35 / 20.00 / 21.50%
    (then measured with fold scales from every row's features). Only the fitted rows count, so a
    cross-validation fold never sees the held-out family's features (a fit on every row would
    not have them either); a feature none of them uses gets its measure's geometric mean scale.
    """
    mean = raw.mean(axis=0)
    used = mean > 0
    for m in np.unique(measure_index):
        mine = measure_index == m
        if (mine & ~used).any():
            shared = np.exp(np.log(mean[mine & used]).mean()) if (mine & used).any() else 1.0
            mean[mine & ~used] = shared
    return mean


def _set_sigmas(predictor: LatencyPredictor, rows: Sequence[Measurement],
                cv: Sequence[float | None]) -> None:
    """Interval spreads from the leave-one-family-out residuals: the RMS log error of the
    group (of all groups when it has fewer than 5), with a Student-t multiplier. A family's
    rows miss together (one shared shift), so the independent draws behind a spread are its
    families, not its rows: one degree of freedom per family. Measured in
    ``benchmarks/latency_accuracy.py coverage``."""
    from scipy.stats import t as student_t

    def z(families: set[str]) -> float:
        return float(student_t.ppf(0.95, max(len(families), 1)))

    by_group: dict[str, list[float]] = {}
    families: dict[str, set[str]] = {}
    for m, p in zip(rows, cv, strict=True):
        if p is not None:
            by_group.setdefault(m.group, []).append(math.log(p / m.latency_ms))
            families.setdefault(m.group, set()).add(m.family_name)
    pooled = [r for rs in by_group.values() for r in rs]
    if pooled:
        predictor.pooled_sigma_log = float(np.sqrt(np.mean(np.square(pooled))))
        predictor.pooled_interval_z = z(set().union(*families.values()))
    for g, cal in predictor.groups.items():
        rs = by_group.get(g, [])
        enough = len(rs) >= 5
        cal.sigma_log = float(np.sqrt(np.mean(np.square(rs)))) if enough else None
        cal.interval_z = z(families[g]) if enough else None


# Groups whose offset informs a new group's (calibrate): enough rows to pin their offset.
PRIOR_MIN_ROWS = 5
# calibrate's prior weight, a multiple of the Bayesian one. Chosen by leave-one-group-out
# (benchmarks/latency_fewshot.py), the rule written before the first run taking the lowest mean
# median MAPE: 1 with v2.4's shared costs (0.5 / 1 / 2: 17.26 / 16.88 / 17.74%; no prior
# 20.24%); with v2.3's, 0.5 (the three level at 16.81-16.82%).
OFFSET_PRIOR_WEIGHT = 1.0


def offset_prior(predictor: LatencyPredictor, compute_class_name: str,
                 exclude: Iterable[str] = ()) -> tuple[float, float] | None:
    """Mean and standard deviation of log offset (ms) over the calibrated groups of a compute
    class with at least ``PRIOR_MIN_ROWS`` rows, or None with fewer than 3 such groups.

    A group's offset is the fixed cost of one inference (dispatch, I/O): it varies less across
    phones and protocols than the scale does (v2.3's Neural Engine groups: log spread 0.48
    against 0.71, offsets mostly 0.24-0.59 ms), so it is what a few measurements of a new phone
    should borrow from the others. v2.4's fit pulls the scales together itself, so its own
    groups no longer show this (0.78 against 0.60, one DenseNet table's offset at 7.7 ms); the
    weight of the prior is chosen by the few-shot benchmark either way."""
    skip = set(exclude)
    logs = [math.log(c.offset_ms) for g, c in predictor.groups.items()
            if g not in skip and c.compute_class == compute_class_name
            and c.rows >= PRIOR_MIN_ROWS and c.offset_ms > 0]
    if len(logs) < 3:
        return None
    return float(np.mean(logs)), float(np.std(logs, ddof=1))


def calibrate(predictor: LatencyPredictor, measurements: Sequence[Measurement], *,
              cache: FeatureCache, prior: float = OFFSET_PRIOR_WEIGHT) -> LatencyPredictor:
    """Refit only the per-group scale and offset of the groups in ``measurements``.

    The shared per-operation costs stay, so a handful of rows calibrates a new device. Least
    squares on log latency; with ``prior`` (the default) the group's log offset is also pulled
    towards the other groups' (``offset_prior``, a Gaussian prior weighed against the
    predictor's per-row spread ``pooled_sigma_log``), so one row fits the scale with a typical
    offset and a few rows cannot swing the offset to an extreme. ``prior`` multiplies the prior
    row's weight (1: the Bayesian one; 0: no prior, v2.2's rule, where one row fits the scale
    alone, offset 0, and more rows fit both freely; default ``OFFSET_PRIOR_WEIGHT``).
    """
    rows, _ = usable(measurements)
    out = LatencyPredictor.from_dict(predictor.to_dict())
    by_group: dict[str, list[Measurement]] = {}
    for m in rows:
        by_group.setdefault(m.group, []).append(m)
    from scipy import optimize

    # the prior row's weight: its spread against the spread of one measured row
    noise = prior * max(predictor.pooled_sigma_log, 0.05)
    for g, members in by_group.items():
        cls = compute_class(members[0].compute_unit)
        if cls not in out.weights:
            raise PredictorError(
                f"group {g!r} runs on {cls}, and the predictor has no {cls} costs; refit with "
                "`swiftnas latency fit` including these measurements"
            )
        feats = [cache.get(timm_name=m.timm_name, arch=m.arch, resolution=m.input_resolution)
                 for m in members]
        cost = np.array([out.cost(f, cls, fallback=m.fallback)
                         for f, m in zip(feats, members, strict=True)])
        log_y = np.log([m.latency_ms for m in members])
        log_fb = out.fallback_log_effect * np.array([m.fallback for m in members], dtype=float)
        # a measured family's own correction applies in the new group too, as in prediction
        log_fb += np.array([out.family_correction(f, g, cls, out.measurement_family(m))
                            for f, m in zip(feats, members, strict=True)])
        belief = offset_prior(predictor, cls, exclude=by_group) if prior > 0 else None

        def resid(p: np.ndarray, cost: np.ndarray = cost, log_y: np.ndarray = log_y,
                  log_fb: np.ndarray = log_fb,
                  belief: tuple[float, float] | None = belief) -> np.ndarray:
            offset = math.exp(p[1]) if len(p) > 1 else 0.0
            r = np.log(math.exp(p[0]) * cost + offset) + log_fb - log_y
            if belief is None:
                return r
            mean, spread = belief
            return np.append(r, (p[1] - mean) * noise / max(spread, 1e-3))

        if belief is not None:
            p0 = np.array([0.0, belief[0]])
        else:
            p0 = np.array([0.0, -2.0]) if len(members) >= 2 else np.array([0.0])
        sol = optimize.least_squares(resid, p0)
        out.groups[g] = GroupCalibration(
            scale=float(math.exp(sol.x[0])),
            offset_ms=float(math.exp(sol.x[1])) if len(sol.x) > 1 else 0.0,
            compute_class=cls, rows=len(members),
            families=len({m.family_name for m in members}))
    return out


_DEFAULT_CACHE: FeatureCache | None = None


def default_feature_cache() -> FeatureCache:
    """The process-wide in-memory feature cache."""
    global _DEFAULT_CACHE
    if _DEFAULT_CACHE is None:
        _DEFAULT_CACHE = FeatureCache()
    return _DEFAULT_CACHE
