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
from functools import cached_property, lru_cache

import numpy as np

from dmu_service.pipeline import _kernels, chars
from dmu_service.pipeline.config import ChineseRulesConfig, EnglishRulesConfig
from dmu_service.pipeline.minhash import _BASE, NGRAM_MULTIPLIERS  # the same odd base and multipliers as the shingles

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
# The definitions that _kernels.line_statistics implements (LineStats; the tests compare the two).
BULLETS = ("•", "●", "○", "■", "□", "▪", "▫", "–", "-", "*", "·")
ELLIPSES = ("...", "…")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？")
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?。！？]+(?:\s|$)")
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_PARAGRAPHS = re.compile(r"\n{2,}")
_MENU_SEPARATOR = re.compile(r"\s[|·•»›>/]\s")
TOP_NGRAMS = ((2, 0.20), (3, 0.18), (4, 0.16))
DUP_NGRAMS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
_NGRAM_KINDS = {None: 0, "top": 1, "dup": 2}  # the kernel's codes
_GOPHER_NGRAMS = {n: "top" for n, _ in TOP_NGRAMS} | {n: "dup" for n, _ in DUP_NGRAMS}
_ZH_AD_CJK = (
    r"扫[一描]?[扫码]|二维码|关注(我们|公众号|微信)|微信(号|公众号)|点击(这里|下载|查看|关注|进入|阅读原文)|阅读原文|"
    r"版权(所有|声明)|免责声明|转载请注明|联系电话|客服(电话|热线)|广告|上一篇|下一篇|返回(首页|顶部)"
)
_ZH_AD_LATIN = ("copyright", "all rights reserved")
ZH_AD_LINE = re.compile(f"({_ZH_AD_CJK}|{'|'.join(_ZH_AD_LATIN)}|©)", re.IGNORECASE)
# ZH_AD_LINE.search of a whole text in two cheaper parts: the caseless part without IGNORECASE (~7x
# faster), the Latin words as substrings of the lowered text. Lowering matches IGNORECASE for them
# except on the characters below (İ lowers to two characters, ı and ſ match i and s caselessly).
_ZH_AD_CASELESS = re.compile(f"{_ZH_AD_CJK}|©")
_LOWER_MISMATCH = ("\u0130", "\u0131", "\u017f")
# Function characters of modern and classical Chinese: running text (prose, poems, manuals) uses
# them in every sentence; menus, keyword spam and product lists hardly do.
ZH_FUNCTION_CHARS = frozenset("的了是在和也就都而及与或这那之其为以于被把将对所但并等从我你他她它们有不一个上中者乎矣焉兮无")
_ZH_FUNCTION_TABLE = np.zeros(0x10000, dtype=bool)  # all of them are in the BMP
_ZH_FUNCTION_TABLE[[ord(c) for c in ZH_FUNCTION_CHARS]] = True


@dataclass(frozen=True, slots=True)
class Failure:
    rule: str
    value: float  # the measured value that crossed the rule's threshold


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


class Units:
    """A document's units (words, or characters) as hashes and lengths, for the n-gram kernel."""

    __slots__ = ("hashes", "lengths")

    def __init__(self, hashes: np.ndarray, lengths: np.ndarray):
        self.hashes = hashes
        self.lengths = lengths

    @classmethod
    def of_words(cls, words: list[str]) -> Units:
        n = len(words)
        # Python's str hash is randomised per process, which is fine: only equality inside one document matters.
        hashes = np.fromiter(map(hash, words), dtype=np.int64, count=n).view(np.uint64)
        return cls(hashes, np.fromiter(map(len, words), dtype=np.int64, count=n))


# The stop words' lowered codepoints packed 16 bits each (a word of 2-4 characters against these).
_STOP_CODES = np.array([sum(ord(c) << 16 * k for k, c in enumerate(w)) for w in sorted(STOP_WORDS)], dtype=np.uint64)


@lru_cache(maxsize=1)
def _lower_table() -> tuple[np.ndarray, np.ndarray]:
    """(lowercase codepoint, whether str.lower maps it to that one character alone) of every BMP codepoint.

    Not so for İ (two characters) and Σ (σ or ς by context): a text with one is lowered by str.lower."""
    bmp = [chr(c) for c in range(0x10000)]
    lowered = [ch.lower() for ch in bmp]
    one = np.array([len(lo) == 1 for lo in lowered], dtype=bool)
    one[0x3A3] = False
    return np.array([ord(lo) if len(lo) == 1 else 0 for lo in lowered], dtype=np.uint64), one


class Words:
    """What the English rules use of a document's words (``_WORD`` matches): their number and
    characters, the stop words among them lowered, and the lowered words as ``Units``."""

    def __init__(self, count: int, chars: int, stop: int, units: Units):
        self.count, self.chars, self.stop, self.units = count, chars, stop, units

    @classmethod
    def of_list(cls, words: list[str], lowered: list[str] | None = None) -> Words:
        # Words hold no space, so lowercasing them joined by spaces is lowercasing each (in one call).
        lowered = lowered if lowered is not None else (" ".join(words).lower().split(" ") if words else [])
        return cls(len(words), sum(map(len, words)), sum(map(STOP_WORDS.__contains__, lowered)), Units.of_words(lowered))

    @classmethod
    def of_texts(cls, texts: list[str], joined: _Joined) -> list[Words]:
        """The words of every text from the compiled kernel's pass (a findall, a lower, a hash per word
        in Python cost ~130 us a 2 KB document): runs of ``\\w`` joined by single apostrophes, hashed as
        polynomials of their lowered codepoints (only equality inside one document matters). A text
        that ``str.lower`` does not lower character by character, or with a codepoint above the BMP,
        takes ``of_list``."""
        words = joined.words
        out = []
        for d, text in enumerate(texts):
            if words.plain[d]:
                a, b = words.first[d], words.first[d + 1]
                out.append(cls(b - a, words.chars[d], words.stops[d], Units(words.hashes[a:b], words.lengths[a:b])))
            else:
                out.append(cls.of_list(_words(text)))
        return out


@dataclass(frozen=True, slots=True)
class _WordPass:
    """``_kernels.english_words`` of a batch: the words of text d are ``hashes/lengths[first[d]:first[d + 1]]``."""

    hashes: np.ndarray
    lengths: np.ndarray
    first: list[int]
    chars: list[int]
    stops: list[int]
    plain: list[bool]
    tokens: list[int]  # whitespace-separated (str.split())
    with_letter: list[int]  # of those, the ones with a letter (Gopher's alpha words)


@dataclass(frozen=True, slots=True)
class LineStats:
    """A text's lines (pieces between newlines with a non-space character, as
    ``filter(str.strip, text.split("\n"))``) and paragraphs (pieces between runs of 2+ newlines with
    one), counted by ``_kernels.line_statistics`` in the order of its ``ST_*`` statistics."""

    lines: int
    line_chars: int
    line_repeats: int  # lines equal to an earlier one
    line_repeat_chars: int
    bullet: int  # lines whose first non-space character is one of BULLETS
    ellipsis: int  # lines that end (right-stripped) with one of ELLIPSES
    punct: int  # lines that end (right-stripped) with one of TERMINAL_PUNCT
    short: int  # lines of at most 30 characters
    menu: int  # lines with 2+ non-overlapping _MENU_SEPARATOR matches
    zh_short: int  # lines with fewer than 10 characters other than spaces
    paragraphs: int
    paragraph_chars: int
    paragraph_repeats: int
    paragraph_repeat_chars: int
    sentences: int  # _SENTENCE_END matches
    newlines: int

    def line_fractions(self) -> tuple[float, float]:
        """(share of lines that repeat an earlier one, share of line characters in those repeats)."""
        return _repeat_fractions(self.lines, self.line_repeats, self.line_chars, self.line_repeat_chars)

    def paragraph_fractions(self) -> tuple[float, float]:
        return _repeat_fractions(self.paragraphs, self.paragraph_repeats, self.paragraph_chars, self.paragraph_repeat_chars)

    @classmethod
    def of_text(cls, text: str) -> LineStats:
        return _Joined([text]).lines[0]


def _repeat_fractions(items: int, repeats: int, chars: int, repeat_chars: int) -> tuple[float, float]:
    return (repeats / items, repeat_chars / max(chars, 1)) if items else (0.0, 0.0)


class _Joined:
    """The codepoints and classes of a batch of texts in one array: a newline before, between and
    after them (a token starts after whitespace and never spans two texts); text k is
    ``cps[bounds[k] + 1 : bounds[k + 1]]``."""

    def __init__(self, texts: list[str]):
        self.cps = chars.codepoints("\n" + "\n".join(texts) + "\n")
        self.flags = chars.classes(self.cps)
        self.bounds = np.concatenate([[0], np.cumsum([len(t) + 1 for t in texts], dtype=np.int64)])

    @cached_property
    def words(self) -> _WordPass:
        """The words and the whitespace tokens of every text, in one pass of the kernel."""
        docs, size = self.bounds.size - 1, self.cps.size
        lower, single = _lower_table()
        hashes, lengths = np.empty(size, dtype=np.uint64), np.empty(size, dtype=np.int64)
        first = np.empty(docs + 1, dtype=np.int64)
        counts = np.empty((4, docs), dtype=np.int64)  # chars, stops, tokens, with_letter
        plain = np.empty(docs, dtype=bool)
        _kernels.english_words(
            self.cps, self.flags, self.bounds, lower, single, _STOP_CODES, _BASE, chars.WORD, chars.SPACE, chars.LETTER,
            hashes, lengths, first, counts[0], counts[1], plain, counts[2], counts[3],
        )  # fmt: skip
        chars_, stops, tokens, with_letter = counts.tolist()
        return _WordPass(hashes, lengths, first.tolist(), chars_, stops, plain.tolist(), tokens, with_letter)

    @cached_property
    def lines(self) -> list[LineStats]:
        """The line and paragraph statistics of every text, in one pass of the kernel."""
        out = np.empty((len(LineStats.__slots__), self.bounds.size - 1), dtype=np.int64)
        _kernels.line_statistics(self.cps, self.flags, self.bounds, chars.SPACE, out)
        return [LineStats(*column) for column in zip(*out.tolist())]


def _top_ngram_char_fraction(units: Units, n: int) -> float:
    """Characters of the most frequent n-gram x its count / all characters (0 when no n-gram repeats)."""
    return _ngram_fractions(units, {n: "top"})[n]


def _dup_ngram_char_fraction(units: Units, n: int) -> float:
    """Share of characters inside n-grams that occurred before (units: words, or characters)."""
    return _ngram_fractions(units, {n: "dup"})[n]


def _ngram_fractions(units: Units, wanted: dict[int, str]) -> dict[int, float]:
    return ngram_fractions_batch([units], wanted)[0]


def ngram_fractions_batch(docs: list[Units], wanted: dict[int, str]) -> list[dict[int, float]]:
    """Per document, the top (``"top"``) or duplicated (``"dup"``) n-gram character fraction of each wanted n.

    One call of the compiled kernel for the whole batch (``_kernels.c``: a hash table per document;
    numpy needed a sort of the batch per n-gram size). The grams are the polynomial hashes of the
    units (the sum of ``hash[p + k] * NGRAM_MULTIPLIERS[k]``); an n-gram that repeats has a repeating (n-1)-gram prefix, so each n is
    computed only where the (n-1)-gram repeats; the top n-gram among equally frequent ones is the one
    that occurs first (datatrove's ``Counter.most_common``)."""
    if not docs:
        return []
    low, high = min(wanted), max(wanted)
    kinds = bytes(_NGRAM_KINDS[wanted.get(n)] for n in range(low, high + 1))
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([d.hashes.size for d in docs], out=offsets[1:])
    hashes = np.concatenate([d.hashes for d in docs]).astype(np.uint64, copy=False)
    lengths = np.concatenate([d.lengths for d in docs]).astype(np.int64, copy=False)
    out = np.empty((len(docs), len(kinds)), dtype=np.float64)
    _kernels.ngram_fractions(hashes, lengths, offsets, NGRAM_MULTIPLIERS, low, kinds, out)
    columns = [(n, n - low) for n in wanted]
    return [{n: row[j] for n, j in columns} for row in out.tolist()]


def menu_lines(stats: LineStats, limit: float, rule: str) -> Failure | None:
    """Navigation menus, breadcrumbs and link farms: lines with two or more `` | `` / `` > `` / `` · `` separators."""
    if not stats.lines:
        return None
    share = stats.menu / stats.lines
    return Failure(rule, share) if share > limit else None


def gopher_repetition(
    text: str,
    cfg: EnglishRulesConfig,
    words: list[str] | Words,
    stats: LineStats | None = None,
    lowered: list[str] | None = None,
    fractions: dict[int, float] | None = None,
) -> Failure | None:
    """Duplicated paragraphs and lines, then the top 2-4-grams and duplicated 5-10-grams (``stats`` and
    ``fractions`` when the caller computed them for a batch)."""
    stats = stats or LineStats.of_text(text)
    para_frac, para_char_frac = stats.paragraph_fractions()
    if para_frac > cfg.max_dup_para_frac:
        return Failure("gopher_dup_para_frac", para_frac)
    if para_char_frac > cfg.max_dup_para_char_frac:
        return Failure("gopher_dup_para_char_frac", para_char_frac)
    line_frac, line_char_frac = stats.line_fractions()
    if line_frac > cfg.max_dup_line_frac:
        return Failure("gopher_dup_line_frac", line_frac)
    if line_char_frac > cfg.max_dup_line_char_frac:
        return Failure("gopher_dup_line_char_frac", line_char_frac)
    if fractions is None:
        units = words.units if isinstance(words, Words) else Units.of_words(lowered if lowered is not None else [w.lower() for w in words])
        fractions = _ngram_fractions(units, _GOPHER_NGRAMS)
    for n, limit in TOP_NGRAMS:
        if (value := fractions[n]) > limit * cfg.ngram_limit_scale:
            return Failure(f"gopher_top_{n}gram", value)
    for n, limit in DUP_NGRAMS:
        if (value := fractions[n]) > limit * cfg.ngram_limit_scale:
            return Failure(f"gopher_dup_{n}gram", value)
    return None


def alpha_word_shares(texts: list[str]) -> list[float]:
    """Per text, the share of its whitespace-separated tokens (``str.split()``) with a letter
    (``[^\\W\\d_]``): Gopher's alpha words. One pass of the compiled kernel over the batch (a regex over the tokens
    without a letter and a split per document cost ~70 us a 2 KB document)."""
    return _alpha_word_shares(_Joined(texts)) if texts else []


def _alpha_word_shares(joined: _Joined) -> list[float]:
    words = joined.words
    return [a / max(t, 1) for a, t in zip(words.with_letter, words.tokens)]


def gopher_quality(
    text: str,
    cfg: EnglishRulesConfig,
    words: list[str] | Words,
    stats: LineStats | None = None,
    lowered: list[str] | None = None,
    alpha: float | None = None,
) -> Failure | None:
    words = words if isinstance(words, Words) else Words.of_list(words, lowered)
    if words.count < cfg.min_words:
        return Failure("gopher_min_words", words.count)
    if words.count > cfg.max_words:
        return Failure("gopher_max_words", words.count)
    mean_length = words.chars / words.count
    if not cfg.min_mean_word_length <= mean_length <= cfg.max_mean_word_length:
        return Failure("gopher_mean_word_length", mean_length)
    symbols = text.count("#") + sum(text.count(e) for e in ELLIPSES)
    if symbols / words.count > cfg.max_symbol_word_ratio:
        return Failure("gopher_symbol_word_ratio", symbols / words.count)
    stats = stats or LineStats.of_text(text)
    if stats.lines:
        if (bullets := stats.bullet / stats.lines) > cfg.max_bullet_lines:
            return Failure("gopher_bullet_lines", bullets)
        if (ellipsis := stats.ellipsis / stats.lines) > cfg.max_ellipsis_lines:
            return Failure("gopher_ellipsis_lines", ellipsis)
    alpha = alpha if alpha is not None else alpha_word_shares([text])[0]
    if alpha < cfg.min_alpha_words:
        return Failure("gopher_alpha_words", alpha)
    if words.stop < cfg.min_stop_words:
        return Failure("gopher_stop_words", words.stop)
    return None


def c4(text: str, cfg: EnglishRulesConfig, line_counts: Counter, stats: LineStats | None = None) -> tuple[str, Failure | None]:
    """C4: lorem ipsum and ``{`` documents; optionally its line rules and minimum sentence count
    (``stats``: the text's, when the caller counted them for a batch; the line rules rewrite the text)."""
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
        stats = None
    # The count reported stops at the threshold (the first ones are enough to pass).
    if cfg.c4_min_sentences and (n := min((stats or LineStats.of_text(text)).sentences, cfg.c4_min_sentences)) < cfg.c4_min_sentences:
        return text, Failure("c4_min_sentences", n)
    return text, None


def fineweb(text: str, cfg: EnglishRulesConfig, words: list[str] | Words, stats: LineStats | None = None) -> Failure | None:
    stats = stats or LineStats.of_text(text)
    if not stats.lines:
        return Failure("fineweb_empty", 0)
    if (punct := stats.punct / stats.lines) < cfg.min_line_punct_ratio:
        return Failure("fineweb_line_punct_ratio", punct)
    if (short := stats.short / stats.lines) > cfg.max_short_line_ratio:
        return Failure("fineweb_short_line_ratio", short)
    if (dup_char_frac := stats.line_fractions()[1]) > cfg.max_dup_line_char_ratio:
        return Failure("fineweb_char_dup_ratio", dup_char_frac)
    newline = stats.newlines / max(words.count if isinstance(words, Words) else len(words), 1)
    if newline > cfg.max_newline_word_ratio:
        return Failure("fineweb_newline_ratio", newline)
    return None


def english_rules(text: str, cfg: EnglishRulesConfig, line_counts: Counter) -> tuple[str, Failure | None]:
    return english_rules_batch([text], cfg, [line_counts])[0]


def english_rules_batch(texts: list[str], cfg: EnglishRulesConfig, line_counts: list[Counter]) -> list[tuple[str, Failure | None]]:
    """datatrove's FineWeb order: Gopher repetition, Gopher quality, C4, FineWeb; then menu lines.

    Each document's words and lines are found once for all the rules; the words, the alpha-word
    shares and the Gopher n-gram fractions of the whole batch in numpy passes."""
    if not texts:
        return []
    joined = _Joined(texts)
    words = Words.of_texts(texts, joined)
    fractions = ngram_fractions_batch([w.units for w in words], _GOPHER_NGRAMS) if cfg.gopher_repetition else [None] * len(texts)
    alphas = _alpha_word_shares(joined) if cfg.gopher_quality else [None] * len(texts)
    return [_english_rules(*args, cfg=cfg) for args in zip(texts, words, joined.lines, fractions, alphas, line_counts)]


def _english_rules(text, words, stats, fractions, alpha, line_counts, *, cfg: EnglishRulesConfig) -> tuple[str, Failure | None]:
    if cfg.gopher_repetition and (failed := gopher_repetition(text, cfg, words, stats, fractions=fractions)):
        return text, failed
    if cfg.gopher_quality and (failed := gopher_quality(text, cfg, words, stats, alpha=alpha)):
        return text, failed
    if cfg.c4:
        text, failed = c4(text, cfg, line_counts, stats)
        if failed:
            return text, failed
        if cfg.c4_line_rules:  # they rewrite the text
            words, stats = _words(text), LineStats.of_text(text)
    if cfg.fineweb and (failed := fineweb(text, cfg, words, stats)):
        return text, failed
    if failed := menu_lines(stats, cfg.max_menu_line_ratio, "menu_lines"):
        return text, failed
    return text, None


def chinese_rules(text: str, cfg: ChineseRulesConfig, line_counts: Counter) -> tuple[str, Failure | None]:
    return chinese_rules_batch([text], cfg, [line_counts])[0]


def chinese_rules_batch(texts: list[str], cfg: ChineseRulesConfig, line_counts: list[Counter]) -> list[tuple[str, Failure | None]]:
    """Ad lines out, then length, CJK share, character n-gram repetition (one numpy pass over the
    documents still in), duplicate/menu/short lines, function characters."""
    if not texts:
        return []
    texts = [_strip_ad_lines(t, c) if cfg.strip_ad_lines else t for t, c in zip(texts, line_counts)]
    # The character statistics of all texts from one codepoint array (one encode and lookup, not three per text).
    joined = _Joined(texts)
    cps, flags, bounds = joined.cps, joined.flags, joined.bounds

    ideographs, letters, han = chars.counts_per_text(flags, bounds, (chars.IDEOGRAPH, chars.ALPHA, chars.HAN))
    (function,) = chars.counts_per_text(_ZH_FUNCTION_TABLE[np.minimum(cps, 0xFFFF)].view(np.uint8), bounds, (1,))
    not_space = np.flatnonzero((flags & chars.SPACE) == 0)  # whitespace does not count in the n-grams
    cut = np.searchsorted(not_space, bounds)
    results: list[tuple[str, Failure | None]] = []
    alive: list[int] = []
    for i, text in enumerate(texts):
        if len(text) < cfg.min_chars:
            results.append((text, Failure("zh_min_chars", len(text))))
        elif (cjk := ideographs[i] / max(letters[i], 1) if ideographs[i] else 0.0) < cfg.min_cjk_ratio:  # langid.cjk_share
            results.append((text, Failure("zh_cjk_ratio", cjk)))
        else:
            results.append((text, None))
            alive.append(i)
    units = [cps[not_space[cut[i] : cut[i + 1]]].astype(np.uint64) for i in alive]
    repetition = ngram_fractions_batch([Units(u, np.ones(u.size, dtype=np.int64)) for u in units], {cfg.char_ngram: "dup"})
    for i, fractions in zip(alive, repetition):
        text = results[i][0]
        if (value := fractions[cfg.char_ngram]) > cfg.max_char_ngram_dup_ratio:
            results[i] = (text, Failure("zh_char_ngram_repetition", value))
        else:
            results[i] = (text, _chinese_line_rules(joined.lines[i], cfg, function[i] / max(han[i], 1)))
    return results


def _has_ad(text: str) -> bool:
    """Whether ``ZH_AD_LINE`` matches anywhere in the text."""
    if _ZH_AD_CASELESS.search(text):
        return True
    if any(c in text for c in _LOWER_MISMATCH):
        return ZH_AD_LINE.search(text) is not None
    low = text.lower()
    return any(word in low for word in _ZH_AD_LATIN)


def _strip_ad_lines(text: str, line_counts: Counter) -> str:
    if not _has_ad(text):  # no match anywhere: no line to remove (the common case)
        return text.strip()
    kept = []
    for line in text.split("\n"):
        # A long line that merely mentions 广告 is prose; short lines matching are the boilerplate.
        if len(line) <= 60 and ZH_AD_LINE.search(line):
            line_counts["zh_ad_line"] += 1
        else:
            kept.append(line)
    return "\n".join(kept).strip()


def _chinese_line_rules(stats: LineStats, cfg: ChineseRulesConfig, function: float) -> Failure | None:
    if (value := stats.line_fractions()[0]) > cfg.max_dup_line_frac:
        return Failure("zh_dup_line_frac", value)
    if failed := menu_lines(stats, cfg.max_menu_line_ratio, "zh_menu_lines"):
        return failed
    # Link lists and tag clouds: lines of a few characters (poems' lines are longer than 10).
    if stats.lines and (short := stats.zh_short / stats.lines) > cfg.max_short_line_ratio:
        return Failure("zh_short_lines", short)
    # function: the function characters / the ideographs U+3400-U+9FFF.
    if function < cfg.min_function_char_ratio:
        return Failure("zh_function_chars", function)
    return None
