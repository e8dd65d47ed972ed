"""What a candidate costs on a device: latency features, measurements, predictors, Core ML export.

Depends on :mod:`search_spaces` only. Core ML conversion (``coreml``) imports coremltools lazily.
"""

from search_spaces import SwiftNASError  # noqa: F401  (first: makes `import timm` safe)

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
from .features import (
    CATEGORIES,
    FEATURE_SET_VERSION,
    FeatureExtractionError,
    LatencyFeatures,
    extract_features,
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
