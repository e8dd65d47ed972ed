"""The predictor artifact: ``LatencyPredictor`` (load, save, predict), its groups and
families, and the constants of the format. The model is described in the package docstring."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from search_spaces import ArchConfig, SwiftNASError
from search_spaces.files import atomic_write_text
from search_spaces.ref import ModelLike, ModelRef

from ..architectures import FeatureCache
from ..family import FamilyCalibration
from ..featureset import (
    FEATURE_SET_VERSION,
    LatencyFeatures,
    feature_names,
)
from ..measurements import DEFAULT_SOURCE, Measurement, split_group

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
    """The predictor's features: per category its MACs, bytes and count (weights' bytes are one
    total, ``weight_bytes``: Core ML loads them once)."""
    return [*feature_names(MODEL_MEASURES), "weight_bytes"]


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
UNSEEN_INTERVAL = "with the 90% interval of a family the predictor has never seen"


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

    def family_of(self, model: ModelLike) -> str | None:
        """The calibrated family a model belongs to: every ArchConfig is a SwiftFormer; a timm
        model by the names the family's rows used; None when the fit has no such family."""
        ref = ModelRef.of(model)
        if ref.arch is not None:
            return SEARCH_FAMILY if SEARCH_FAMILY in self.families else None
        return next((f for f, c in self.families.items() if ref.timm_name in c.timm_names),
                    None)

    def pricing_note(self, model: ModelLike) -> str | None:
        """What a user should know about how ``model`` is priced, or None when a measured family
        speaks for it (`latency predict` prints it)."""
        ref = ModelRef.of(model)
        if ref.arch is None:
            if self.family_of(ref) is not None:
                return None
            return ("no calibration row measures this model's family: it is priced from its "
                    f"operations alone, {UNSEEN_INTERVAL}")
        if "separable" in ref.arch.mixers:
            return ("no measured model uses separable attention: it is priced from its "
                    f"operations alone, {UNSEEN_INTERVAL}")
        if "mhsa" in ref.arch.mixers:
            return ("no measured SwiftFormer uses mhsa: self-attention is priced from its "
                    "operations (their costs are learned from DeiT, PiT, ViT, EfficientFormer "
                    f"and MobileViT), {UNSEEN_INTERVAL}")
        return None

    def family_correction(self, features: LatencyFeatures, group: str, cls: str,
                          family: str | None) -> float:
        """The log correction ``family`` adds to a model in ``group`` on compute class ``cls``
        (0: no such family). Its slope reads the shared cost without a fallback's addition."""
        fam = self.families.get(family) if family else None
        return fam.log_correction(group, math.log(self.cost(features, cls))) if fam else 0.0

    def predict_features(self, features: LatencyFeatures, group: str, *,
                         fallback: bool = False, family: str | None = None,
                         seen: bool = True) -> Latency:
        """Latency in ``group``; with the correction of ``family`` when the fit has one.
        ``seen=False``: the model is a variant its family's rows do not describe (a SwiftFormer
        with another token mixer), so its interval is an unseen family's, not the family's."""
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
        if fam is not None and fam.sigma_log is not None and group in fam.group_shifts and seen:
            sigma, z = fam.sigma_log, fam.interval_z or Z90
        elif cal.sigma_log is not None:
            sigma, z = cal.sigma_log, cal.interval_z or Z90
        else:
            sigma, z = self.pooled_sigma_log, self.pooled_interval_z
        return Latency(latency_ms=latency, low_ms=latency * math.exp(-z * sigma),
                       high_ms=latency * math.exp(z * sigma), sigma_log=sigma, group=group)

    def predict(self, model: ModelLike, *, device: str, resolution: int | None = None,
                source: str | None = None, compute_unit: str | None = None,
                cache: FeatureCache | None = None) -> Latency:
        """Latency of ``model`` (an ArchConfig or a timm name) on ``device`` (see
        ``resolve_group``)."""
        ref = ModelRef.of(model)
        group = self.resolve_group(device, source=source, compute_unit=compute_unit)
        cache = cache if cache is not None else default_feature_cache()
        features = cache.get(ref, resolution)
        seen = True
        if ref.arch is not None and ref.arch.mixers - {"additive"}:
            self.check_prices(ref.arch, features)
            seen = False  # no measured SwiftFormer has this mixer: an unseen family's interval
        return self.predict_features(features, group, seen=seen, family=self.family_of(ref))

    def check_prices(self, arch: ArchConfig, features: LatencyFeatures) -> None:
        """Refuse an architecture whose token mixer uses operations none of this predictor's
        fitted rows had (a fit keeps only the features its rows use, so it would price them
        at zero): say the stage and the fix."""
        known = set(self.feature_names) | {"weight_bytes"}
        missing = sorted({n.split(".")[0] for n in model_feature_names()
                          if n not in known and features.values.get(n, 0.0) > 0})
        if not missing:
            return
        stage = next(i for i, s in enumerate(arch.stages) if s.attn and s.mixer != "additive")
        raise PredictorError(
            f"stages[{stage}] uses the {arch.stages[stage].mixer} mixer, whose "
            f"{', '.join(missing)} operations this predictor was never fitted on; use the "
            "shipped predictor (omit --predictor) or refit with measurements of a model that "
            "has them (e.g. deit_tiny_patch16_224)")

    def predict_measurement(self, m: Measurement, *, cache: FeatureCache,
                            source: str | None = None) -> Latency:
        """Latency of a measurement row: in its own group when calibrated, else the device's
        group (``resolve_group``); its fallback flag applies."""
        if not (m.timm_name or m.arch):
            raise PredictorError("the row names no timm_name or arch")
        group = m.group if m.group in self.groups else self.resolve_group(
            m.device, source=source, compute_unit=m.compute_unit or None)
        features = cache.get(m.ref, m.input_resolution)
        return self.predict_features(features, group, fallback=m.fallback,
                                     family=self.measurement_family(m))

    def measurement_family(self, m: Measurement) -> str | None:
        """A row's calibrated family: its ``family`` column, else as ``family_of`` finds it."""
        return m.family if m.family in self.families else self.family_of(m.ref)

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


_DEFAULT_CACHE: FeatureCache | None = None


def default_feature_cache() -> FeatureCache:
    """The process-wide in-memory feature cache."""
    global _DEFAULT_CACHE
    if _DEFAULT_CACHE is None:
        _DEFAULT_CACHE = FeatureCache()
    return _DEFAULT_CACHE
