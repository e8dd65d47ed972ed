"""User-controlled text (study names, paths, predictor names, error messages) on its way into
Markdown: rendered literally, never as links, images, HTML, math or formatting."""

from __future__ import annotations

import re

from search_spaces.text import markdown_text

__all__ = ["markdown_text", "screen_text"]


WORD_JOINER = "\u2060"  # invisible, zero width; breaks a pattern without changing what shows
# What GFM's autolink-literal extension links even in escaped text (Streamlit's table cells do,
# seen in Chromium): scheme://, www. and user@host. Fuzzy domains (evil.com) are not linked.
_AUTOLINK = re.compile(r"(?<=\w)(?=://)|(?i:(?<=www)(?=\.))|(?<=@)")


def screen_text(value: object) -> str:
    """``markdown_text`` for a page in a browser: also never an autolink. A WORD JOINER goes
    before ``://``, after ``www`` and after ``@``; the text reads the same."""
    return markdown_text(_AUTOLINK.sub(WORD_JOINER, " ".join(str(value).split())))
