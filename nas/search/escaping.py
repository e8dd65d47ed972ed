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


WORD_JOINER = "\u2060"  # invisible, zero width; breaks a pattern without changing what shows
# What GFM's autolink-literal extension links even in escaped text (Streamlit's table cells do,
# seen in Chromium): scheme://, www. and user@host. Fuzzy domains (evil.com) are not linked.
_AUTOLINK = re.compile(r"(?<=\w)(?=://)|(?i:(?<=www)(?=\.))|(?<=@)")


def screen_text(value: object) -> str:
    """``markdown_text`` for a page in a browser: also never an autolink. A WORD JOINER goes
    before ``://``, after ``www`` and after ``@``; the text reads the same."""
    return markdown_text(_AUTOLINK.sub(WORD_JOINER, " ".join(str(value).split())))
