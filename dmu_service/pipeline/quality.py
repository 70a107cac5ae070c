"""Quality rules. English: Gopher quality + repetition (Rae et al. 2021), C4 (Raffel et al. 2020) and
FineWeb's extra rules, as datatrove implements them. Chinese: ad/boilerplate line removal, CJK
share, character n-gram repetition, duplicate lines, function-character share.

Every threshold is a per-source setting (``config.py``). The defaults are calibrated on real
text (bench/dmu_quality.py over bench/dmu_eval_set.py: man pages, the Python docs, the Debian Edu
manual, fortunes, and the junk a crawler meets); docs/dmu.md has the figures of every rule.

Each check returns a ``Failure`` (the rule and the value that tripped it, which the run's
exclusion log keeps) or None. Line rules rewrite the text and count removed lines in
``line_counts``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from dmu_service.pipeline.config import ChineseRulesConfig, EnglishRulesConfig
from dmu_service.pipeline.langid import cjk_share
from dmu_service.pipeline.minhash import NGRAM_MULTIPLIERS  # the same odd multipliers as the shingles

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "●", "○", "■", "□", "▪", "▫", "–", "-", "*", "·")
ELLIPSES = ("...", "…")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？")
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?。！？]+(?:\s|$)")
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_PARAGRAPHS = re.compile(r"\n{2,}")
_IDEOGRAPHS = re.compile(r"[\u3400-\u9fff]")
_MENU_SEPARATOR = re.compile(r"\s[|·•»›>/]\s")
_ALPHA_TOKEN = re.compile(r"[^\s]*?[^\W\d_][^\s]*")  # a whitespace-separated token with a letter in it
TOP_NGRAMS = ((2, 0.20), (3, 0.18), (4, 0.16))
DUP_NGRAMS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
ZH_AD_LINE = re.compile(
    r"(扫[一描]?[扫码]|二维码|关注(我们|公众号|微信)|微信(号|公众号)|点击(这里|下载|查看|关注|进入|阅读原文)|阅读原文|"
    r"版权(所有|声明)|免责声明|转载请注明|联系电话|客服(电话|热线)|广告|上一篇|下一篇|返回(首页|顶部)|"
    r"copyright|all rights reserved|©)",
    re.IGNORECASE,
)
# Function characters of modern and classical Chinese: running text (prose, poems, manuals) uses
# them in every sentence; menus, keyword spam and product lists hardly do.
ZH_FUNCTION_CHARS = frozenset("的了是在和也就都而及与或这那之其为以于被把将对所但并等从我你他她它们有不一个上中者乎矣焉兮无")


@dataclass(frozen=True, slots=True)
class Failure:
    rule: str
    value: float  # the measured value that crossed the rule's threshold


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _duplicate_fractions(items: list[str]) -> tuple[float, float]:
    """(share of items that repeat an earlier one, share of characters in those repeats)."""
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    dup_items = dup_chars = total_chars = 0
    for item in items:
        total_chars += len(item)
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup_items / len(items), dup_chars / max(total_chars, 1)


class Units:
    """A document's units (words, or characters) as hashes and lengths, for the n-gram rules in numpy."""

    def __init__(self, hashes: np.ndarray, lengths: np.ndarray):
        self.hashes = hashes
        self.lengths = lengths
        self.total = int(lengths.sum())

    @classmethod
    def of_words(cls, words: list[str]) -> Units:
        n = len(words)
        # Python's str hash is randomised per process, which is fine: only equality inside one document matters.
        hashes = np.fromiter(map(hash, words), dtype=np.int64, count=n).view(np.uint64)
        return cls(hashes, np.fromiter(map(len, words), dtype=np.int64, count=n))

    @classmethod
    def of_chars(cls, text: str) -> Units:
        cps = np.frombuffer(re.sub(r"\s+", "", text).encode("utf-32-le"), dtype="<u4").astype(np.uint64)
        return cls(cps, np.ones(cps.size, dtype=np.int64))

    def grams(self, n: int) -> np.ndarray:
        count = self.hashes.size - n + 1
        if count <= 0:
            return np.zeros(0, dtype=np.uint64)
        gram = np.zeros(count, dtype=np.uint64)
        for k in range(n):
            gram += self.hashes[k : k + count] * NGRAM_MULTIPLIERS[k]
        return gram


def _top_ngram_char_fraction(units: Units, n: int) -> float:
    """Characters of the most frequent n-gram x its count / all characters (0 when no n-gram repeats)."""
    grams = units.grams(n)
    if grams.size < 2:
        return 0.0
    values, first, counts = np.unique(grams, return_index=True, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] < 2:
        return 0.0
    start = first[top]
    return float(units.lengths[start : start + n].sum() * counts[top] / max(units.total, 1))


def _dup_ngram_char_fraction(units: Units, n: int) -> float:
    """Share of characters inside n-grams that occurred before (units: words, or characters)."""
    grams = units.grams(n)
    if grams.size < 2:
        return 0.0
    _, first, inverse = np.unique(grams, return_index=True, return_inverse=True)
    dup_starts = np.flatnonzero(first[inverse] < np.arange(grams.size))
    if dup_starts.size == 0:
        return 0.0
    cover = np.zeros(units.hashes.size + 1, dtype=np.int32)
    np.add.at(cover, dup_starts, 1)
    np.add.at(cover, dup_starts + n, -1)
    covered = np.cumsum(cover[:-1]) > 0
    return float(units.lengths[covered].sum() / max(units.total, 1))


def menu_lines(lines: list[str], limit: float, rule: str) -> Failure | None:
    """Navigation menus, breadcrumbs and link farms: lines with two or more `` | `` / `` > `` / `` · `` separators."""
    if not lines:
        return None
    share = sum(len(_MENU_SEPARATOR.findall(line)) >= 2 for line in lines) / len(lines)
    return Failure(rule, share) if share > limit else None


def gopher_repetition(text: str, cfg: EnglishRulesConfig, words: list[str]) -> Failure | None:
    paragraphs = [p for p in _PARAGRAPHS.split(text) if p.strip()]
    para_frac, para_char_frac = _duplicate_fractions(paragraphs)
    if para_frac > cfg.max_dup_para_frac:
        return Failure("gopher_dup_para_frac", para_frac)
    if para_char_frac > cfg.max_dup_para_char_frac:
        return Failure("gopher_dup_para_char_frac", para_char_frac)
    lines = [line for line in text.split("\n") if line.strip()]
    line_frac, line_char_frac = _duplicate_fractions(lines)
    if line_frac > cfg.max_dup_line_frac:
        return Failure("gopher_dup_line_frac", line_frac)
    if line_char_frac > cfg.max_dup_line_char_frac:
        return Failure("gopher_dup_line_char_frac", line_char_frac)
    units = Units.of_words([w.lower() for w in words])
    for n, limit in TOP_NGRAMS:
        if (value := _top_ngram_char_fraction(units, n)) > limit * cfg.ngram_limit_scale:
            return Failure(f"gopher_top_{n}gram", value)
    for n, limit in DUP_NGRAMS:
        if (value := _dup_ngram_char_fraction(units, n)) > limit * cfg.ngram_limit_scale:
            return Failure(f"gopher_dup_{n}gram", value)
    return None


def gopher_quality(text: str, cfg: EnglishRulesConfig, words: list[str]) -> Failure | None:
    if len(words) < cfg.min_words:
        return Failure("gopher_min_words", len(words))
    if len(words) > cfg.max_words:
        return Failure("gopher_max_words", len(words))
    mean_length = sum(map(len, words)) / len(words)
    if not cfg.min_mean_word_length <= mean_length <= cfg.max_mean_word_length:
        return Failure("gopher_mean_word_length", mean_length)
    symbols = text.count("#") + sum(text.count(e) for e in ELLIPSES)
    if symbols / len(words) > cfg.max_symbol_word_ratio:
        return Failure("gopher_symbol_word_ratio", symbols / len(words))
    lines = [line for line in text.split("\n") if line.strip()]
    if lines:
        bullets = sum(line.lstrip().startswith(BULLETS) for line in lines) / len(lines)
        if bullets > cfg.max_bullet_lines:
            return Failure("gopher_bullet_lines", bullets)
        ellipsis = sum(line.rstrip().endswith(ELLIPSES) for line in lines) / len(lines)
        if ellipsis > cfg.max_ellipsis_lines:
            return Failure("gopher_ellipsis_lines", ellipsis)
    alpha = len(_ALPHA_TOKEN.findall(text)) / max(len(text.split()), 1)
    if alpha < cfg.min_alpha_words:
        return Failure("gopher_alpha_words", alpha)
    stop = sum(w.lower() in STOP_WORDS for w in words)
    if stop < cfg.min_stop_words:
        return Failure("gopher_stop_words", stop)
    return None


def c4(text: str, cfg: EnglishRulesConfig, line_counts: Counter) -> tuple[str, Failure | None]:
    """C4: lorem ipsum and ``{`` documents; optionally its line rules and minimum sentence count."""
    if cfg.c4_lorem_ipsum and "lorem ipsum" in text.lower():
        return text, Failure("c4_lorem_ipsum", 1)
    if cfg.c4_curly_bracket and "{" in text:
        return text, Failure("c4_curly_bracket", 1)
    if cfg.c4_line_rules:
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
    if cfg.c4_min_sentences and (n := len(_SENTENCE_END.findall(text))) < cfg.c4_min_sentences:
        return text, Failure("c4_min_sentences", n)
    return text, None


def fineweb(text: str, cfg: EnglishRulesConfig, words: list[str]) -> Failure | None:
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return Failure("fineweb_empty", 0)
    punct = sum(line.rstrip().endswith(TERMINAL_PUNCT) for line in lines) / len(lines)
    if punct < cfg.min_line_punct_ratio:
        return Failure("fineweb_line_punct_ratio", punct)
    short = sum(len(line) <= 30 for line in lines) / len(lines)
    if short > cfg.max_short_line_ratio:
        return Failure("fineweb_short_line_ratio", short)
    _, dup_char_frac = _duplicate_fractions(lines)
    if dup_char_frac > cfg.max_dup_line_char_ratio:
        return Failure("fineweb_char_dup_ratio", dup_char_frac)
    newline = text.count("\n") / max(len(words), 1)
    if newline > cfg.max_newline_word_ratio:
        return Failure("fineweb_newline_ratio", newline)
    return None


def english_rules(text: str, cfg: EnglishRulesConfig, line_counts: Counter) -> tuple[str, Failure | None]:
    """datatrove's FineWeb order: Gopher repetition, Gopher quality, C4, FineWeb."""
    words = _words(text)
    if cfg.gopher_repetition and (failed := gopher_repetition(text, cfg, words)):
        return text, failed
    if cfg.gopher_quality and (failed := gopher_quality(text, cfg, words)):
        return text, failed
    if cfg.c4:
        text, failed = c4(text, cfg, line_counts)
        if failed:
            return text, failed
        if cfg.c4_line_rules:
            words = _words(text)
    if cfg.fineweb and (failed := fineweb(text, cfg, words)):
        return text, failed
    if failed := menu_lines([line for line in text.split("\n") if line.strip()], cfg.max_menu_line_ratio, "menu_lines"):
        return text, failed
    return text, None


def chinese_rules(text: str, cfg: ChineseRulesConfig, line_counts: Counter) -> tuple[str, Failure | None]:
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
        return text, Failure("zh_min_chars", len(text))
    cjk = cjk_share(text)
    if cjk < cfg.min_cjk_ratio:
        return text, Failure("zh_cjk_ratio", cjk)
    chars = Units.of_chars(text)
    if (value := _dup_ngram_char_fraction(chars, cfg.char_ngram)) > cfg.max_char_ngram_dup_ratio:
        return text, Failure("zh_char_ngram_repetition", value)
    lines = [line for line in text.split("\n") if line.strip()]
    if (value := _duplicate_fractions(lines)[0]) > cfg.max_dup_line_frac:
        return text, Failure("zh_dup_line_frac", value)
    if failed := menu_lines(lines, cfg.max_menu_line_ratio, "zh_menu_lines"):
        return text, failed
    # Link lists and tag clouds: lines of a few characters (poems' lines are longer than 10).
    if lines and (short := sum(len(line) - line.count(" ") < 10 for line in lines) / len(lines)) > cfg.max_short_line_ratio:
        return text, Failure("zh_short_lines", short)
    ideographs = _IDEOGRAPHS.findall(text)
    function = sum(map(ZH_FUNCTION_CHARS.__contains__, ideographs)) / max(len(ideographs), 1)
    if function < cfg.min_function_char_ratio:
        return text, Failure("zh_function_chars", function)
    return text, None
