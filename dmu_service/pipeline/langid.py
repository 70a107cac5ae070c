"""Language identification with lingua (``lingua-language-detector``: offline models inside the wheel).

The detector knows English and Chinese plus the languages most often confused with them or mixed
into web crawls, so that a Japanese or Russian page is recognised as such instead of being forced
into "en" or "zh".
"""

from __future__ import annotations

from functools import lru_cache

CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF))


@lru_cache(maxsize=1)
def _detector():
    from lingua import Language, LanguageDetectorBuilder

    languages = [
        Language.ENGLISH, Language.CHINESE, Language.JAPANESE, Language.KOREAN, Language.FRENCH,
        Language.GERMAN, Language.SPANISH, Language.PORTUGUESE, Language.RUSSIAN, Language.ITALIAN,
    ]
    return LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models().build()


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


def detect_batch(texts: list[str], *, sample_chars: int = 2000) -> list[tuple[str, float]]:
    samples = [t[:sample_chars] for t in texts]
    results = _detector().compute_language_confidence_values_in_parallel(samples)
    out = []
    for values in results:
        if not values or values[0].value <= 0:
            out.append(("und", 0.0))
            continue
        top = values[0]
        out.append((_CODES.get(top.language.name) or top.language.iso_code_639_1.name.lower(), float(top.value)))
    return out


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
