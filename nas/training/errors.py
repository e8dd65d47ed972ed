"""The training package's error (one line on the command line, exit 2)."""

from __future__ import annotations

from search_spaces.errors import SwiftNASError


class TrainingError(SwiftNASError, ValueError):
    """Bad training input (data, recipe, device) or a training run that cannot continue."""
