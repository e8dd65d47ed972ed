"""The shipped default predictor and the shipped calibration data."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .predictor import LatencyPredictor

# The shipped predictor is `swiftnas latency fit` with its defaults (the recipe below, on the
# shipped calibration file), written here: `swiftnas latency fit --out
# latency_models/data/default_predictor.json` rebuilds it; tests pin that it does.
DEFAULT_PREDICTOR_PATH = Path(__file__).with_name("data") / "default_predictor.json"
# Features of every model in the shipped calibration set, so that predicting or plotting it
# needs no model builds (`benchmarks/latency_accuracy.py ship-features` regenerates it).
CALIBRATION_FEATURES_PATH = Path(__file__).with_name("data") / "calibration_features.json"
# The recipe's version: 2.4 fitted the shared stage only, on 467 rows; 3 adds each measured
# family's own correction (latency_models/family.py) and the 46 rows of the data's third
# release, SwiftFormer's own among them.
PREDICTOR_VERSION = "3"
# The device searches target when none is given (SwiftFormer's own benchmark phone).
DEFAULT_DEVICE = "iPhone 14"


# The published calibration measurements (a copy of shared/data/latency/calibration.csv, with
# its README of sources), shipped so that a clone or a wheel needs nothing beside it.
CALIBRATION_CSV_PATH = Path(__file__).with_name("data") / "calibration.csv"


def calibration_csv() -> Path:
    """The shipped calibration measurements (``latency_models/data/calibration.csv``)."""
    return CALIBRATION_CSV_PATH


@lru_cache(maxsize=1)
def load_default_predictor() -> LatencyPredictor:
    return LatencyPredictor.load(DEFAULT_PREDICTOR_PATH)


def load_predictor(path: str | Path | None = None) -> LatencyPredictor:
    """``path``'s predictor, or the shipped default when ``path`` is None."""
    return load_default_predictor() if path is None else LatencyPredictor.load(path)
