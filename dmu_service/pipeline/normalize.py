"""Unicode normalization: NFKC/NFC, control characters out, whitespace tidied, optional 繁→简."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# C0/C1 controls except tab and newline; zero-width and BOM characters.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")
# A run of spaces, tabs, no-break and ideographic spaces that is not a single space already.
_SPACES = re.compile(r" [ \t\u00a0\u3000]+|[\t\u00a0\u3000][ \t\u00a0\u3000]*")
# Whitespace (str.isspace, as str.strip sees it) at the start or end of a line, the newline aside.
_LINE_EDGE_SPACE = re.compile(r"^[^\S\n]+|[^\S\n]+$", re.MULTILINE)
_OTHER_SPACE = re.compile(r"[^\S \n]")
_BLANK_LINES = re.compile(r"\n{3,}")


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str, *, form: str = "NFKC", traditional_to_simplified: bool = False) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if form != "none" and not text.isascii():  # ASCII is NFC and NFKC already
        text = unicodedata.normalize(form, text)
    text = _CONTROL.sub("", text)
    # Runs of spaces become one, each line is stripped: whole-text passes (no per-line Python loop).
    text = _SPACES.sub(" ", text)
    if _OTHER_SPACE.search(text):
        text = _LINE_EDGE_SPACE.sub("", text)
    else:  # only single spaces and newlines left: a line's edges are at most one space
        text = text.replace(" \n", "\n").replace("\n ", "\n")
    text = _BLANK_LINES.sub("\n\n", text).strip()
    if traditional_to_simplified:
        text = _t2s().convert(text)
    return text
