"""Exception hierarchy shared by every swiftnas package.

Each package raises a subclass of :class:`SwiftNASError`; the command line prints any of them as
one line and exits non-zero. Errors about bad values also subclass :class:`ValueError`, so plain
Python callers can catch them the usual way.
"""

from __future__ import annotations


class SwiftNASError(Exception):
    """Root of every error swiftnas raises on purpose (bad input, missing data, bad state)."""


class SearchSpaceError(SwiftNASError, ValueError):
    """An architecture, preset or search-space definition is invalid."""


class InvalidArchError(SearchSpaceError):
    """An :class:`~search_spaces.ArchConfig` field has a value the model cannot be built with."""

    def __init__(self, field: str, received: object, problem: str, fix: str) -> None:
        self.field = field
        self.received = received
        shown = repr(received)
        if len(shown) > 80:  # a 2,000,000-entry list must not become a 16 MB message
            shown = shown[:60] + f"... ({len(shown)} characters)"
        super().__init__(f"`{field}` {problem}, but got {shown}. {fix}")


class UnknownPresetError(SearchSpaceError):
    """A preset name that is not registered."""

