"""User text on its way out of swiftnas: into a shell command a user copies, or into Markdown.

Study names, paths, device names and URLs are user-controlled; everything swiftnas prints or
writes for a shell or a Markdown renderer goes through these functions, so that such text stays
one inert argument or renders as exactly itself. The lowest package holds them, because every
layer prints commands (the storage's "run `swiftnas db upgrade ...`", a latency kit's
MEASURE.md, the CLI's hints).
"""

from __future__ import annotations

import re
import shlex

# every ASCII punctuation character may be backslash-escaped in CommonMark; escaping all of them
# also defeats GFM autolinks (www., http://), Streamlit's :color[...] directives and $math$
_PUNCTUATION = re.compile(r"([!-.:-@\[-`{-~])")


def markdown_text(value: object) -> str:
    """``value`` as one line of Markdown that renders as exactly its text."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))


def shell_word(word: str) -> str:
    """``word`` quoted for a POSIX shell, on one line: control characters (a newline in a study
    name) go in bash's ``$'...'`` form, which still pastes as one exact argument."""
    if word.isprintable():
        return shlex.quote(word)
    escaped = "".join(
        {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(
            c, c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
        for c in word)
    return f"$'{escaped}'"


def masked_url(url: str) -> str:
    """A storage URL with its password replaced by ``***`` (as SQLAlchemy shows it)."""
    return re.sub(r"^([a-zA-Z0-9+.-]+://[^:/@?#]*):[^@/?#]*@", r"\1:***@", url)


def command_hint(*words: object, storage: str | None = None) -> str:
    """A ``swiftnas`` command for the user to copy: one line, every word shell-quoted, and
    ``--storage URL`` (password masked) when ``storage`` is given. Every command swiftnas
    prints in a message is built here, so a hostile study name stays one inert argument."""
    parts = ["swiftnas", *(str(w) for w in words)]
    if storage is not None:
        parts += ["--storage", masked_url(storage)]
    return " ".join(p if p.replace("-", "").replace("_", "").isalnum() else shell_word(p)
                    for p in parts)
