"""Quality rules. English: Gopher quality + repetition (Rae et al. 2021), C4 line rules (Raffel et al.
2020) and FineWeb's extra rules, with datatrove's thresholds. Chinese: ad/boilerplate line removal,
CJK ratio, character n-gram repetition.

Each check returns the name of the first rule a document fails (counted per rule by the run), or
None. Line rules rewrite the text and count removed lines in ``line_counts``.
"""

from __future__ import annotations

import re
from collections import Counter

from dmu_service.pipeline.config import ChineseRulesConfig, EnglishRulesConfig
from dmu_service.pipeline.langid import cjk_ratio

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "●", "○", "■", "□", "▪", "▫", "–", "-", "*", "·")
ELLIPSES = ("...", "…")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？")
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?。！？]+(?:\s|$)")
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
TOP_NGRAMS = ((2, 0.20), (3, 0.18), (4, 0.16))
DUP_NGRAMS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
ZH_AD_LINE = re.compile(
    r"(扫[一描]?[扫码]|二维码|关注(我们|公众号|微信)|微信(号|公众号)|点击(这里|下载|查看|关注|进入|阅读原文)|阅读原文|"
    r"版权(所有|声明)|免责声明|转载请注明|联系电话|客服(电话|热线)|广告|上一篇|下一篇|返回(首页|顶部)|"
    r"copyright|all rights reserved|©)",
    re.IGNORECASE,
)


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _duplicate_fractions(items: list[str]) -> tuple[float, float]:
    """(share of items that repeat an earlier one, share of characters in those repeats)."""
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    dup_items = dup_chars = 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    total_chars = sum(len(i) for i in items)
    return dup_items / len(items), dup_chars / max(total_chars, 1)


def _top_ngram_char_fraction(words: list[str], n: int) -> float:
    ngrams = Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    if not ngrams:
        return 0.0
    gram, count = ngrams.most_common(1)[0]
    return len(gram) * count / max(sum(len(w) for w in words), 1) if count > 1 else 0.0


def _dup_ngram_char_fraction(units: list[str], n: int) -> float:
    """Share of characters inside n-grams that occurred before (units: words, or characters)."""
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(units)
    for i in range(len(units) - n + 1):
        gram = tuple(units[i : i + n])
        if gram in seen:
            for j in range(i, i + n):
                covered[j] = True
        else:
            seen.add(gram)
    total = sum(len(u) for u in units)
    return sum(len(u) for u, c in zip(units, covered, strict=True) if c) / max(total, 1)


def gopher_repetition(text: str) -> str | None:
    paragraphs = [p for p in re.split(r"\n{2,}", text) if p.strip()]
    para_frac, para_char_frac = _duplicate_fractions(paragraphs)
    if para_frac > 0.3:
        return "gopher_dup_para_frac"
    if para_char_frac > 0.2:
        return "gopher_dup_para_char_frac"
    lines = [line for line in text.split("\n") if line.strip()]
    line_frac, line_char_frac = _duplicate_fractions(lines)
    if line_frac > 0.3:
        return "gopher_dup_line_frac"
    if line_char_frac > 0.2:
        return "gopher_dup_line_char_frac"
    words = [w.lower() for w in _words(text)]
    for n, limit in TOP_NGRAMS:
        if _top_ngram_char_fraction(words, n) > limit:
            return f"gopher_top_{n}gram"
    for n, limit in DUP_NGRAMS:
        if _dup_ngram_char_fraction(words, n) > limit:
            return f"gopher_dup_{n}gram"
    return None


def gopher_quality(text: str, cfg: EnglishRulesConfig) -> str | None:
    tokens = text.split()
    words = _words(text)
    if len(words) < cfg.min_words:
        return "gopher_min_words"
    if len(words) > cfg.max_words:
        return "gopher_max_words"
    mean_length = sum(len(w) for w in words) / len(words)
    if not 3 <= mean_length <= 10:
        return "gopher_mean_word_length"
    symbols = text.count("#") + sum(text.count(e) for e in ELLIPSES)
    if symbols / len(words) > 0.1:
        return "gopher_symbol_word_ratio"
    lines = [line for line in text.split("\n") if line.strip()]
    if lines and sum(line.lstrip().startswith(BULLETS) for line in lines) / len(lines) > 0.9:
        return "gopher_bullet_lines"
    if lines and sum(line.rstrip().endswith(ELLIPSES) for line in lines) / len(lines) > 0.3:
        return "gopher_ellipsis_lines"
    if sum(any(c.isalpha() for c in t) for t in tokens) / max(len(tokens), 1) < 0.8:
        return "gopher_alpha_words"
    if sum(w.lower() in STOP_WORDS for w in words) < 2:
        return "gopher_stop_words"
    return None


def c4_lines(text: str, line_counts: Counter) -> tuple[str, str | None]:
    """C4: keep lines ending in terminal punctuation with >= 3 words; drop javascript/policy lines."""
    lowered = text.lower()
    if "lorem ipsum" in lowered:
        return text, "c4_lorem_ipsum"
    if "{" in text:
        return text, "c4_curly_bracket"
    kept = []
    for line in text.split("\n"):
        stripped = _CITATION.sub("", line).strip()
        if not stripped:
            kept.append("")
            continue
        low = stripped.lower()
        if max((len(w) for w in stripped.split()), default=0) > 1000:
            line_counts["c4_long_word_line"] += 1
        elif not stripped.endswith(TERMINAL_PUNCT) or stripped.endswith(ELLIPSES):
            line_counts["c4_no_terminal_punct_line"] += 1
        elif len(stripped.split()) < 3:
            line_counts["c4_short_line"] += 1
        elif "javascript" in low:
            line_counts["c4_javascript_line"] += 1
        elif any(p in low for p in POLICY_SUBSTRINGS):
            line_counts["c4_policy_line"] += 1
        else:
            kept.append(stripped)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    if len(_SENTENCE_END.findall(text)) < 5:
        return text, "c4_min_sentences"
    return text, None


def fineweb(text: str) -> str | None:
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return "fineweb_empty"
    if sum(line.rstrip().endswith(TERMINAL_PUNCT) for line in lines) / len(lines) < 0.12:
        return "fineweb_line_punct_ratio"
    if sum(len(line) <= 30 for line in lines) / len(lines) > 0.67:
        return "fineweb_short_line_ratio"
    _, dup_char_frac = _duplicate_fractions(lines)
    if dup_char_frac > 0.01:
        return "fineweb_char_dup_ratio"
    if text.count("\n") / max(len(_words(text)), 1) > 0.3:
        return "fineweb_newline_ratio"
    return None


def english_rules(text: str, cfg: EnglishRulesConfig, line_counts: Counter) -> tuple[str, str | None]:
    """datatrove's FineWeb order: Gopher repetition, Gopher quality, C4, FineWeb."""
    if cfg.gopher_repetition and (failed := gopher_repetition(text)):
        return text, failed
    if cfg.gopher_quality and (failed := gopher_quality(text, cfg)):
        return text, failed
    if cfg.c4:
        text, failed = c4_lines(text, line_counts)
        if failed:
            return text, failed
    if cfg.fineweb and (failed := fineweb(text)):
        return text, failed
    return text, None


def chinese_rules(text: str, cfg: ChineseRulesConfig, line_counts: Counter) -> tuple[str, str | None]:
    if cfg.strip_ad_lines:
        kept = []
        for line in text.split("\n"):
            # A long line that merely mentions 广告 is prose; short lines matching are the boilerplate.
            if len(line) <= 60 and ZH_AD_LINE.search(line):
                line_counts["zh_ad_line"] += 1
            else:
                kept.append(line)
        text = "\n".join(kept).strip()
    if len(text) < cfg.min_chars:
        return text, "zh_min_chars"
    if cjk_ratio(text) < cfg.min_cjk_ratio:
        return text, "zh_cjk_ratio"
    chars = [c for c in text if not c.isspace()]
    if _dup_ngram_char_fraction(chars, cfg.char_ngram) > cfg.max_char_ngram_dup_ratio:
        return text, "zh_char_ngram_repetition"
    lines = [line for line in text.split("\n") if line.strip()]
    if _duplicate_fractions(lines)[0] > 0.3:
        return text, "zh_dup_line_frac"
    return text, None
