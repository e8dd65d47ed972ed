"""The load lines every latency benchmark and experiment shares."""

from __future__ import annotations

from latency_models import FeatureCache, calibration_csv
from latency_models.architectures import user_cache_dir
from latency_models.defaults import CALIBRATION_FEATURES_PATH
from latency_models.measurements import Measurement, read_measurements


def calibration_rows() -> list[Measurement]:
    """The shipped calibration file's measurements (what `swiftnas latency fit` fits)."""
    return read_measurements(calibration_csv())


def feature_cache() -> FeatureCache:
    """The user's feature cache, preloaded with the shipped features of the calibration models
    (a refit then traces nothing it has traced before)."""
    return FeatureCache(user_cache_dir() / "latency_features.json",
                        preload=CALIBRATION_FEATURES_PATH)
