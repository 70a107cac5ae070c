"""Unicode normalization: NFKC/NFC, control characters out, whitespace tidied, optional 繁→简."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# C0/C1 controls except tab and newline; zero-width and BOM characters.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str, *, form: str = "NFKC", traditional_to_simplified: bool = False) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if form != "none":
        text = unicodedata.normalize(form, text)
    text = _CONTROL.sub("", text)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text).strip()
    if traditional_to_simplified:
        text = _t2s().convert(text)
    return text
