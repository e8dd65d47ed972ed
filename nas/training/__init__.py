"""Real training of candidates and their stored accuracies (``swiftnas train``,
``swiftnas accuracy``)."""

from .errors import TrainingError
from .recipe import TrainRecipe
from .run import TrainOutcome, run_training
from .trainer import TrainResult, TrainTarget, evaluate_checkpoint, train

__all__ = ["TrainOutcome", "TrainRecipe", "TrainResult", "TrainTarget", "TrainingError",
           "evaluate_checkpoint", "run_training", "train"]
