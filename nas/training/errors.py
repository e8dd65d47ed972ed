"""The training package's error (one line on the command line, exit 2); defined with the
evaluators, whose accuracy surrogate raises it too."""

from __future__ import annotations

from nas.evaluators.errors import TrainingError

__all__ = ["TrainingError"]
