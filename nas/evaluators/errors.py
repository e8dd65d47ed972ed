"""The accuracy side's error: bad training input, or trained data and surrogates that cannot be
used (one line on the command line, exit 2). ``nas.training`` raises the same class."""

from __future__ import annotations

from search_spaces.errors import SwiftNASError


class TrainingError(SwiftNASError, ValueError):
    """Bad training input (data, recipe, device) or a training run that cannot continue."""
