"""Unicode normalization: NFKC/NFC, control characters out, whitespace tidied, optional 繁→简."""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

import numpy as np

from dmu_service.pipeline import chars

# C0/C1 controls except tab and newline; zero-width and BOM characters.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")
# A run of spaces, tabs, no-break and ideographic spaces that is not a single space already.
_SPACES = re.compile(r" [ \t\u00a0\u3000]+|[\t\u00a0\u3000][ \t\u00a0\u3000]*")
# What _SPACES matches in a text without tabs, no-break and ideographic spaces (4x faster: a literal prefix).
_SPACE_RUNS = re.compile("  +")
# Whitespace (str.isspace, as str.strip sees it) at the start or end of a line, the newline aside.
_LINE_EDGE_SPACE = re.compile(r"^[^\S\n]+|[^\S\n]+$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n{3,}")

# Per BMP codepoint, what the passes after the normal form look for, so that a pass with nothing to
# do is skipped (each regex scans the whole text: ~10-30 us a 2 KB document): a _CONTROL character,
# a tab/no-break/ideographic space (_SPACES), other whitespace than space and newline left after
# those two (what needs _LINE_EDGE_SPACE).
CONTROL, TAB_LIKE, OTHER_SPACE = 1, 2, 4
# The normal form's own bits: it changes the character; the fast path below does not hold for it.
CHANGED, UNSAFE = 8, 16


def _space_flags(ch: str) -> int:
    if _CONTROL.match(ch):
        return CONTROL
    if ch in "\t\u00a0\u3000":
        return TAB_LIKE
    return OTHER_SPACE if ch.isspace() and ch not in " \n" else 0


@cache
def _table(form: str) -> tuple[np.ndarray, dict[int, str]]:
    """(flags of every BMP codepoint, its normal form where that differs).

    The fast path: where no character of a text's compatibility (NFKC) or canonical (NFC)
    decomposition has a combining class or can be the second of a composition pair, nothing is
    reordered or composed, so the normal form of the text is that of each character, joined.
    Characters for which that does not hold (combining marks, Hangul jamo and syllables, ...) are
    UNSAFE: a text with one goes to ``unicodedata.normalize``. ~30 ms to build."""
    bmp = [chr(c) for c in range(0x10000)]
    seconds = {chr(0x1100 + i) for i in range(0x100)}  # Hangul jamo compose algorithmically
    for ch in bmp:
        parts = unicodedata.decomposition(ch).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            seconds.add(chr(int(parts[1], 16)))
    flags = np.array([_space_flags(ch) for ch in bmp], dtype=np.uint8)
    changed: dict[int, str] = {}
    if form == "none":
        return flags, changed
    decomposition = "NFKD" if form == "NFKC" else "NFD"
    for c, ch in enumerate(bmp):
        if 0xD800 <= c <= 0xDFFF:
            flags[c] |= UNSAFE  # lone surrogates: left to unicodedata
            continue
        parts = unicodedata.normalize(decomposition, ch)
        if any(unicodedata.combining(p) or p in seconds or ord(p) > 0xFFFF for p in parts) or unicodedata.normalize(form, ch) != parts:
            flags[c] |= UNSAFE
        elif parts != ch:
            changed[c] = parts
            # What the passes after the normal form see is the normalized character.
            flags[c] = CHANGED | np.bitwise_or.reduce([_space_flags(p) for p in parts])
    return flags, changed


def _normal_form(text: str, form: str) -> tuple[str, int]:
    """(the text in the normal form, the _space_flags bits of its characters)."""
    cps = chars.codepoints(text)
    if cps.size == 0:
        return text, 0
    if int(cps.max()) > 0xFFFF:  # rare: no table above the BMP
        if form != "none":
            text = unicodedata.normalize(form, text)
        return text, CONTROL | TAB_LIKE | OTHER_SPACE
    flags, changed = _table(form)
    of_text = flags[cps]
    found = int(np.bitwise_or.reduce(of_text))
    if found & UNSAFE:
        text = unicodedata.normalize(form, text)
        return text, _normal_form(text, "none")[1]
    if found & CHANGED:
        # A handful of distinct characters change (full-width punctuation, ligatures): one replace each.
        for c in np.unique(cps[(of_text & CHANGED) != 0]).tolist():
            text = text.replace(chr(c), changed[c])
    return text, found


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str, *, form: str = "NFKC", traditional_to_simplified: bool = False) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text, found = _normal_form(text, form)
    if found & CONTROL:
        text = _CONTROL.sub("", text)
    # Runs of spaces become one, each line is stripped: whole-text passes (no per-line Python loop).
    text = _SPACES.sub(" ", text) if found & TAB_LIKE else _SPACE_RUNS.sub(" ", text)
    if found & OTHER_SPACE:
        text = _LINE_EDGE_SPACE.sub("", text)
    else:  # only single spaces and newlines left: a line's edges are at most one space
        text = text.replace(" \n", "\n").replace("\n ", "\n")
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    text = text.strip()
    if traditional_to_simplified:
        text = _t2s().convert(text)
    return text
