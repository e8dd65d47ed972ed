"""What a candidate costs on a device: latency features, measurements, predictors, Core ML export.

Depends on :mod:`search_spaces` only. Core ML conversion (``coreml``) imports coremltools lazily,
and torch/timm load only when a model is built or traced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .architectures import (
    FeatureCache,
    UnknownModelError,
    build_arch_for_latency,
    build_timm_for_latency,
    default_resolution,
    user_cache_dir,
)
from .defaults import (
    DEFAULT_DEVICE,
    DEFAULT_PREDICTOR_PATH,
    calibration_csv,
    load_default_predictor,
    load_predictor,
)
from .evaluation import evaluate_rows
from .featureset import (
    CATEGORIES,
    FEATURE_SET_VERSION,
    FeatureExtractionError,
    LatencyFeatures,
)
from .measurements import (
    MEASUREMENT_COLUMNS,
    Measurement,
    MeasurementError,
    parse_measurements,
    read_measurements,
    write_measurements,
)
from .predictor import (
    FitResult,
    Latency,
    LatencyPredictor,
    PredictorError,
    calibrate,
    default_feature_cache,
    fit_predictor,
)

if TYPE_CHECKING:
    from .features import extract_features


def __getattr__(name: str) -> Any:
    # the tracer needs torch: loaded on first use (a cached prediction never needs it)
    if name == "extract_features":
        from .features import extract_features

        return extract_features
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CATEGORIES",
    "DEFAULT_DEVICE",
    "DEFAULT_PREDICTOR_PATH",
    "FEATURE_SET_VERSION",
    "MEASUREMENT_COLUMNS",
    "FeatureCache",
    "FeatureExtractionError",
    "FitResult",
    "Latency",
    "LatencyFeatures",
    "LatencyPredictor",
    "Measurement",
    "MeasurementError",
    "PredictorError",
    "UnknownModelError",
    "build_arch_for_latency",
    "build_timm_for_latency",
    "calibrate",
    "calibration_csv",
    "default_feature_cache",
    "default_resolution",
    "evaluate_rows",
    "extract_features",
    "fit_predictor",
    "load_default_predictor",
    "load_predictor",
    "parse_measurements",
    "read_measurements",
    "user_cache_dir",
    "write_measurements",
]
