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


def _shell_word(word: str) -> str:
    """``word`` quoted for a POSIX shell, on one line: control characters (a newline in a study
    name) go in bash's ``$'...'`` form, which still pastes as one exact argument."""
    import shlex

    if word.isprintable():
        return shlex.quote(word)
    escaped = "".join(
        {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(
            c, c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
        for c in word)
    return f"$'{escaped}'"


def masked_url(url: str) -> str:
    """A storage URL with its password replaced by ``***`` (as SQLAlchemy shows it)."""
    import re

    return re.sub(r"^([a-zA-Z0-9+.-]+://[^:/@?#]*):[^@/?#]*@", r"\1:***@", url)


def command_hint(*words: object, storage: str | None = None) -> str:
    """A ``swiftnas`` command for the user to copy: one line, every word shell-quoted, and
    ``--storage URL`` (password masked) when ``storage`` is given. Every command swiftnas
    prints in a message is built here, so a hostile study name stays one inert argument."""
    parts = ["swiftnas", *(str(w) for w in words)]
    if storage is not None:
        parts += ["--storage", masked_url(storage)]
    return " ".join(p if p.replace("-", "").replace("_", "").isalnum() else _shell_word(p)
                    for p in parts)
