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

The package: ``artifact`` (the predictor and its format), ``solve`` (the least-squares
problem), ``fit`` (fitting with cross-validation), ``calibrate`` (few-shot calibration).
"""

from __future__ import annotations

from .artifact import (
    ARTIFACT_FORMAT,
    COMPUTE_CLASSES,
    DEFAULT_RIDGE,
    MODEL_MEASURES,
    PREFERRED_SOURCES,
    SEARCH_FAMILY,
    Z90,
    GroupCalibration,
    Latency,
    LatencyPredictor,
    PredictorError,
    compute_class,
    default_feature_cache,
    feature_row,
    model_feature_names,
)
from .calibrate import (
    OFFSET_PRIOR_WEIGHT,
    PRIOR_MIN_ROWS,
    calibrate,
    offset_prior,
)
from .fit import (
    FitResult,
    fit_predictor,
    usable,
)
from .solve import (
    SolveOptions,
    single_threaded_blas,
)

__all__ = [
    "ARTIFACT_FORMAT",
    "COMPUTE_CLASSES",
    "DEFAULT_RIDGE",
    "MODEL_MEASURES",
    "OFFSET_PRIOR_WEIGHT",
    "PREFERRED_SOURCES",
    "PRIOR_MIN_ROWS",
    "SEARCH_FAMILY",
    "Z90",
    "FitResult",
    "GroupCalibration",
    "Latency",
    "LatencyPredictor",
    "PredictorError",
    "SolveOptions",
    "calibrate",
    "compute_class",
    "default_feature_cache",
    "feature_row",
    "fit_predictor",
    "model_feature_names",
    "offset_prior",
    "single_threaded_blas",
    "usable",
]
