"""User-controlled text (study names, paths, predictor names, error messages) on its way into
Markdown: rendered literally, never as links, images, HTML, math or formatting."""

from __future__ import annotations

import re

# every ASCII punctuation character may be backslash-escaped in CommonMark; escaping all of them
# also defeats GFM autolinks (www., http://), Streamlit's :color[...] directives and $math$
_PUNCTUATION = re.compile(r"([!-.:-@\[-`{-~])")


def markdown_text(value: object) -> str:
    """``value`` as one line of Markdown that renders as exactly its text."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))
