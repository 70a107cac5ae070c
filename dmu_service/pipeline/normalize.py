"""Unicode normalization: NFKC/NFC, control characters out, whitespace tidied, optional 繁→简."""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

import numpy as np

from dmu_service.pipeline import _kernels, chars

# C0/C1 controls except tab and newline; zero-width and BOM characters.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")
# A run of spaces, tabs, no-break and ideographic spaces that is not a single space already.
_SPACES = re.compile(r" [ \t\u00a0\u3000]+|[\t\u00a0\u3000][ \t\u00a0\u3000]*")
# Whitespace (str.isspace, as str.strip sees it) at the start or end of a line, the newline aside.
_LINE_EDGE_SPACE = re.compile(r"^[^\S\n]+|[^\S\n]+$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n{3,}")

# Per BMP codepoint, what the passes after the normal form look for: a _CONTROL character, a
# tab/no-break/ideographic space (_SPACES), other whitespace than space and newline.
CONTROL, TAB_LIKE, OTHER_SPACE = 1, 2, 4
# The normal form's own bits: it changes the character; the per-character normal form does not hold for it.
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

    The per-character normal form: a text of characters that are each their own normal form,
    starters (combining class 0) that cannot be the second of a composition pair and whose
    decomposition does not start with one, is in the normal form, and so is the text with a
    character replaced by its normal form when that consists of such characters: nothing is
    reordered or composed across characters (a precomposed é stays é; only a following combining
    mark could change it, and that one is UNSAFE). Other characters (combining marks, Hangul jamo and
    syllables, ...) are UNSAFE: a text with one goes to ``unicodedata.normalize``. ~0.1 s to build."""
    bmp = [chr(c) for c in range(0x10000)]
    seconds = {chr(0x1100 + i) for i in range(0x100)}  # Hangul jamo compose algorithmically
    for ch in bmp:
        parts = unicodedata.decomposition(ch).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            seconds.add(chr(int(parts[1], 16)))
    flags = _space_table().copy()
    changed: dict[int, str] = {}
    if form == "none":
        return flags, changed
    decomposition = "NFKD" if form == "NFKC" else "NFD"
    # Lone surrogates (U+D800-U+DFFF) are left to unicodedata: neither stable nor replaced.
    normal = [ch if 0xD800 <= c <= 0xDFFF else unicodedata.normalize(form, ch) for c, ch in enumerate(bmp)]
    stable = [
        not (0xD800 <= c <= 0xDFFF or unicodedata.combining(ch) or ch in seconds or normal[c] != ch)
        and not unicodedata.combining(first := unicodedata.normalize(decomposition, ch)[0])
        and first not in seconds
        for c, ch in enumerate(bmp)
    ]
    for c, ch in enumerate(bmp):
        if not all(ord(p) <= 0xFFFF and stable[ord(p)] for p in normal[c]):
            flags[c] |= UNSAFE
        elif normal[c] != ch:
            changed[c] = normal[c]
            # What the passes after the normal form see is the normalized character.
            flags[c] = CHANGED | np.bitwise_or.reduce([_space_flags(p) for p in normal[c]])
    return flags, changed


@lru_cache(maxsize=1)
def _space_table() -> np.ndarray:
    """``_space_flags`` of every BMP codepoint, by the same regex and ``str.isspace`` over all of them at once."""
    bmp = "".join(map(chr, range(0x10000)))
    flags = ((chars.classes(np.arange(0x10000, dtype=np.uint32)) & chars.SPACE) != 0).astype(np.uint8) * OTHER_SPACE
    flags[[ord(" "), ord("\n")]] = 0
    flags[[ord(c) for c in "\t\u00a0\u3000"]] = TAB_LIKE
    flags[[m.start() for m in _CONTROL.finditer(bmp)]] = CONTROL
    return flags


@cache
def _kernel_tables(form: str) -> tuple[np.ndarray, ...]:
    """What ``_kernels.normalize_texts`` reads: the normal form's flags, each character's own flags,
    str.isspace, and every CHANGED character's normal form as a range of one codepoint array."""
    form_flags, changed = _table(form)
    char_flags = _space_table()
    space = ((chars.classes(np.arange(0x10000, dtype=np.uint32)) & chars.SPACE) != 0).view(np.uint8)
    repl_start, repl_length = np.zeros(0x10000, dtype=np.uint32), np.zeros(0x10000, dtype=np.uint8)
    parts: list[int] = []
    for c, normal in changed.items():
        repl_start[c], repl_length[c] = len(parts), len(normal)
        parts.extend(map(ord, normal))
    return form_flags, char_flags, space, repl_start, repl_length, np.array(parts, dtype=np.uint32)


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str, *, form: str = "NFKC", traditional_to_simplified: bool = False) -> str:
    return normalize_batch([text], form=form, traditional_to_simplified=traditional_to_simplified)[0]


def normalize_batch(texts: list[str], *, form: str = "NFKC", traditional_to_simplified: bool = False) -> list[str]:
    """Each text in the normal form, control characters out, runs of spaces one space, every line
    stripped, at most one blank line in a row, stripped. One pass of the compiled kernel for the
    texts whose normal form is per character (the table of ``_table``); ``_normalize_general`` for the rest."""
    cps = chars.codepoints("".join(texts))
    bounds = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in texts], out=bounds[1:])
    out = np.empty(2 * cps.size + 64, dtype=np.uint32)  # room for the normal forms that expand (ligatures, ...)
    out_bounds, fallback = np.empty(len(texts) + 1, dtype=np.int64), np.empty(len(texts), dtype=np.uint8)
    _kernels.normalize_texts(cps, bounds, *_kernel_tables(form), out, out_bounds, fallback)
    normalized = out[: out_bounds[-1]].tobytes().decode("utf-32-le", "surrogatepass")  # lone surrogates stay, as in str
    ends = out_bounds.tolist()
    result = [_normalize_general(t, form) if f else normalized[a:b] for t, f, a, b in zip(texts, fallback.tolist(), ends, ends[1:])]
    if traditional_to_simplified:
        result = [_t2s().convert(t) for t in result]
    return result


def _normalize_general(text: str, form: str) -> str:
    """What the kernel does, by unicodedata and the regexes (combining marks, jamo, codepoints above the BMP)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if form != "none":
        text = unicodedata.normalize(form, text)
    text = _SPACES.sub(" ", _CONTROL.sub("", text))
    return _BLANK_LINES.sub("\n\n", _LINE_EDGE_SPACE.sub("", text)).strip()
