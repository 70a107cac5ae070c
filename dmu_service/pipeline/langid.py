"""Language identification: a fast path for clear English/Chinese text, lingua for the rest.

lingua (``lingua-language-detector``: offline models inside the wheel) knows English and Chinese
plus the languages most often confused with them or mixed into web crawls, so that a Japanese or
Russian page is recognised as such instead of being forced into "en" or "zh". It costs ~1 ms per
2 KB document, more than the rest of the pipeline together, so ``detect_batch(fast_path=True)``
first decides what needs no model: a sample whose letters are >= 10 % CJK ideographs with no
kana or hangul is Chinese (one ideograph carries a word, so a Chinese page that is mostly commands
stays Chinese); a sample with (almost) no letters outside ASCII whose words are >= 15 % English
function words is English. Everything else (other scripts, accented Latin, few function words) goes to lingua.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from dmu_service.pipeline import _kernels, chars

CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF))


@lru_cache(maxsize=1)
def _detector():
    from lingua import Language, LanguageDetectorBuilder

    languages = [
        Language.ENGLISH,
        Language.CHINESE,
        Language.JAPANESE,
        Language.KOREAN,
        Language.FRENCH,
        Language.GERMAN,
        Language.SPANISH,
        Language.PORTUGUESE,
        Language.RUSSIAN,
        Language.ITALIAN,
    ]
    # Models load on first use, per language (~0.2 s CPU each): a corpus whose documents the fast
    # path decides, or that lingua only sees in Latin script, never loads the others.
    return LanguageDetectorBuilder.from_languages(*languages).build()


_CODES = {"ENGLISH": "en", "CHINESE": "zh"}


def detect(text: str, *, sample_chars: int = 2000) -> tuple[str, float]:
    """(language code, confidence): ``en``/``zh``, another lowercase ISO 639-1 code, or ``und``."""
    sample = text[:sample_chars]
    values = _detector().compute_language_confidence_values(sample)
    if not values or values[0].value <= 0:
        return "und", 0.0
    top = values[0]
    code = _CODES.get(top.language.name) or top.language.iso_code_639_1.name.lower()
    return code, float(top.value)


# The commonest English function words; French/German/Spanish text shares almost none of them.
EN_FUNCTION_WORDS = frozenset(
    "the of and to a in is that for it as was with be by on not this are or from at which an have but "
    "you all can if will has one its they more we there when your their been use used may should must "
    "each only into such these than also then other any how what who".split()
)


def _packed(word: str) -> int:
    """A word of a-z as ``_kernels.ascii_words`` packs it: 5 bits a letter, a = 1."""
    return sum((ord(c) - 96) << 5 * k for k, c in enumerate(word))


_EN_FUNCTION_CODES = np.array(sorted(map(_packed, EN_FUNCTION_WORDS)), dtype=np.uint64)


@lru_cache(maxsize=1)
def _ascii_letters() -> np.ndarray:
    """Per BMP codepoint, the a-z letter its lowercase is as ASCII (``str.lower`` then
    ``encode("ascii", "replace")``: A-Z, a-z, the Kelvin sign), 0 for a separator; İ lowers to i and
    a combining dot, a letter then a separator (0x80 | i)."""
    letters = np.zeros(0x10000, dtype=np.uint8)
    letters[ord("A") : ord("Z") + 1] = letters[ord("a") : ord("z") + 1] = np.arange(ord("a"), ord("z") + 1)
    letters[0x212A], letters[0x130] = ord("k"), 0x80 | ord("i")
    return letters


def fast_detect(sample: str) -> tuple[str, float] | None:
    """("zh"/"en", confidence) when the script and function words decide, None when lingua must."""
    return _fast_detect_batch([sample])[0]


def _fast_detect_batch(samples: list[str]) -> list[tuple[str, float] | None]:
    # The script counts of all samples in one pass (a table lookup per codepoint, the kernel's counts).
    cps = chars.codepoints("".join(samples))
    bounds = np.cumsum([0] + [len(s) for s in samples])
    flags = chars.classes(cps)

    ideographs, kana_hangul, letters, non_ascii_letters = chars.counts_per_text(
        flags, bounds, (chars.IDEOGRAPH, chars.KANA_HANGUL, chars.ALPHA, chars.NON_ASCII_LETTER)
    )
    # English function words: the a-z words of each sample's lowercase.
    counts = np.empty((2, len(samples)), dtype=np.int64)
    _kernels.ascii_words(cps, bounds, _ascii_letters(), _EN_FUNCTION_CODES, counts[0], counts[1])
    words, function_words = counts.tolist()
    out: list[tuple[str, float] | None] = []
    for i, sample in enumerate(samples):
        if ideographs[i]:
            if kana_hangul[i]:
                out.append(None)
            else:
                share = ideographs[i] / max(letters[i], 1)
                out.append(("zh", 1.0) if ideographs[i] >= 10 and share >= 0.1 else None)
        elif non_ascii_letters[i] > 0.005 * len(sample):
            out.append(None)  # accented Latin, Cyrillic, Greek...: lingua tells them apart (dashes and quotes do not count)
        elif words[i] < 8:
            out.append(None)
        else:
            out.append(("en", 1.0) if function_words[i] / words[i] >= 0.15 else None)
    return out


def detect_batch(texts: list[str], *, sample_chars: int = 2000, fast_path: bool = False) -> list[tuple[str, float]]:
    samples = [t[:sample_chars] for t in texts]
    out: list[tuple[str, float] | None] = _fast_detect_batch(samples) if fast_path and samples else [None] * len(samples)
    undecided = [i for i, o in enumerate(out) if o is None]
    if undecided:
        for i, result in zip(undecided, _lingua_batch([samples[i] for i in undecided]), strict=True):
            out[i] = result
    return out  # type: ignore[return-value]


def _lingua_batch(samples: list[str]) -> list[tuple[str, float]]:
    results = _detector().compute_language_confidence_values_in_parallel(samples)
    out = []
    for values in results:
        if not values or values[0].value <= 0:
            out.append(("und", 0.0))
            continue
        top = values[0]
        out.append((_CODES.get(top.language.name) or top.language.iso_code_639_1.name.lower(), float(top.value)))
    return out


def cjk_share(text: str) -> float:
    """CJK ideographs / letters (a CJK ideograph is a letter too)."""
    flags = chars.classes(chars.codepoints(text))
    ideographs = int(np.count_nonzero(flags & chars.IDEOGRAPH))
    return ideographs / max(int(np.count_nonzero(flags & chars.ALPHA)), 1) if ideographs else 0.0


def cjk_ratio(text: str) -> float:
    """Share of non-space characters that are CJK ideographs."""
    total = cjk = 0
    for ch in text:
        if ch.isspace():
            continue
        total += 1
        cp = ord(ch)
        if any(lo <= cp <= hi for lo, hi in CJK_RANGES):
            cjk += 1
    return cjk / total if total else 0.0
