"""Character classes of whole texts in numpy: one table lookup per codepoint instead of a regex or a
``str`` method call per character.

The classes are the ones the language id and the rules used as regexes and ``str`` methods, so a
count here equals the count there: ``ALPHA`` is ``str.isalpha``, ``SPACE`` is ``str.isspace`` (what
``\\s`` and ``str.split()`` use), ``LETTER`` is ``[^\\W\\d_]``, ``WORD`` is ``\\w``, ``IDEOGRAPH`` the CJK ideograph blocks
of ``langid``, ``KANA_HANGUL`` kana and hangul, ``NON_ASCII_LETTER`` a ``LETTER`` above U+007F, ``HAN``
U+3400-U+9FFF (the Chinese rules' function-character share). Codepoints above the BMP (rare) are classified one
by one with the same predicates.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from dmu_service.pipeline import _kernels

ALPHA, SPACE, LETTER, IDEOGRAPH, KANA_HANGUL, WORD, NON_ASCII_LETTER, HAN = 1, 2, 4, 8, 16, 32, 64, 128
IDEOGRAPH_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
KANA_HANGUL_CLASS = "\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff"
_LETTER = re.compile(r"[^\W\d_]")
_WORD = re.compile(r"\w")
_IDEOGRAPH = re.compile(f"[{IDEOGRAPH_CLASS}]")
_KANA_HANGUL = re.compile(f"[{KANA_HANGUL_CLASS}]")


def _flags(ch: str) -> int:
    return (
        (ALPHA if ch.isalpha() else 0)
        | (SPACE if ch.isspace() else 0)
        | (LETTER if _LETTER.match(ch) else 0)
        | (IDEOGRAPH if _IDEOGRAPH.match(ch) else 0)
        | (KANA_HANGUL if _KANA_HANGUL.match(ch) else 0)
        | (WORD if _WORD.match(ch) else 0)
        | (NON_ASCII_LETTER if ord(ch) > 0x7F and _LETTER.match(ch) else 0)
        | (HAN if 0x3400 <= ord(ch) <= 0x9FFF else 0)
    )


@lru_cache(maxsize=1)
def _bmp_table() -> np.ndarray:
    """``_flags`` of every BMP codepoint (the regexes run once over all of them: ~30 ms)."""
    bmp = "".join(map(chr, range(0x10000)))
    table = np.array([ALPHA if ch.isalpha() else 0 for ch in bmp], dtype=np.uint8)
    table |= np.array([SPACE if ch.isspace() else 0 for ch in bmp], dtype=np.uint8)
    for pattern, flag in ((_LETTER, LETTER), (_IDEOGRAPH, IDEOGRAPH), (_KANA_HANGUL, KANA_HANGUL), (_WORD, WORD)):
        table[[m.start() for m in pattern.finditer(bmp)]] |= flag
    table[0x80:][(table[0x80:] & LETTER) != 0] |= NON_ASCII_LETTER
    table[0x3400:0xA000] |= HAN
    return table


def codepoints(text: str) -> np.ndarray:
    """The text's codepoints as uint32 (lone surrogates kept as they are)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def classes(cps: np.ndarray) -> np.ndarray:
    """The class bits of each codepoint (uint8)."""
    table = _bmp_table()
    if cps.size == 0 or int(cps.max()) < 0x10000:
        return table[cps]
    out = table[np.minimum(cps, 0xFFFF)]
    astral = cps >= 0x10000
    values, inverse = np.unique(cps[astral], return_inverse=True)
    out[astral] = np.array([_flags(chr(int(v))) for v in values], dtype=np.uint8)[inverse]
    return out


def counts_per_text(values: np.ndarray, bounds: np.ndarray, masks: tuple[int, ...]) -> list[list[int]]:
    """For each mask, per text ``values[bounds[k]:bounds[k + 1]]``, how many values have one of its bits."""
    out = np.empty((len(masks), bounds.size - 1), dtype=np.int64)
    _kernels.segment_counts(values, bounds.astype(np.int64, copy=False), bytes(masks), out)
    return out.tolist()
