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

from dmu_service.pipeline import chars

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


# The [a-z]+ runs of a lowered sample without a regex: as ASCII bytes (any other character becomes
# "?"), everything but a-z a space, then bytes.split() (~6x faster than findall).
_NOT_A_TO_Z = bytes(b if 97 <= b <= 122 else 32 for b in range(256))
# The commonest English function words; French/German/Spanish text shares almost none of them.
EN_FUNCTION_WORDS = frozenset(
    "the of and to a in is that for it as was with be by on not this are or from at which an have but "
    "you all can if will has one its they more we there when your their been use used may should must "
    "each only into such these than also then other any how what who".split()
)
_EN_FUNCTION_BYTES = frozenset(w.encode() for w in EN_FUNCTION_WORDS)


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
        else:
            out.append(_english_by_function_words(sample))
    return out


def _english_by_function_words(sample: str) -> tuple[str, float] | None:
    words = sample.lower().encode("ascii", "replace").translate(_NOT_A_TO_Z).split()
    if len(words) < 8:
        return None
    share = sum(map(_EN_FUNCTION_BYTES.__contains__, words)) / len(words)
    return ("en", 1.0) if share >= 0.15 else None


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
