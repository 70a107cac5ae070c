"""Normalization, language id (accuracy on our EN/ZH set) and the quality rules, each rule on a document that trips it."""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter

import numpy as np
import pytest

from dmu_service.pipeline import _kernels, chars, langid
from dmu_service.pipeline.config import ChineseRulesConfig, EnglishRulesConfig, PipelineConfig
from dmu_service.pipeline.normalize import normalize, normalize_batch
from dmu_service.pipeline.process import DocumentProcessor
from dmu_service.pipeline.quality import (
    _MENU_SEPARATOR,
    _PARAGRAPHS,
    _SENTENCE_END,
    BULLETS,
    ELLIPSES,
    TERMINAL_PUNCT,
    Failure,
    LineStats,
    Units,
    Words,
    _Joined,
    _words,
    alpha_word_shares,
    c4,
    chinese_rules,
    english_rules,
    english_rules_batch,
    fineweb,
    gopher_quality,
    gopher_repetition,
    ngram_fractions_batch,
)
from dmu_service.pipeline.readers import Record
from hack import dmu_eval
from tests.dmu.testlib import make_doc, sentences


def _ngram_fractions_by_counting(words: list[str], n: int, kind: str) -> float:
    """The Gopher n-gram fractions counted the plain way (tuples, a Counter): what the compiled kernel must equal."""
    lengths = [len(w) for w in words]
    total = max(sum(lengths), 1)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 2:
        return 0.0
    if kind == "top":  # the most frequent n-gram, the first one among equals
        gram, count = Counter(grams).most_common(1)[0]
        start = grams.index(gram)
        return sum(lengths[start : start + n]) * count / total if count >= 2 else 0.0
    seen: set[tuple] = set()
    covered = [False] * len(words)
    for i, gram in enumerate(grams):
        if gram in seen:
            covered[i : i + n] = [True] * n
        seen.add(gram)
    return sum(length for length, c in zip(lengths, covered) if c) / total


def test_normalize() -> None:
    assert normalize("Ｈｅｌｌｏ\u3000ｗｏｒｌｄ\x00\u200b！\r\n\r\n\r\n\r\nnext") == "Hello world!\n\nnext"
    assert normalize("ｆｕｌｌ", form="NFC") == "ｆｕｌｌ"
    assert normalize("這個軟體很實用", traditional_to_simplified=True) == "这个软体很实用"


def test_whitespace_and_control_table_equals_the_per_character_flags() -> None:
    from dmu_service.pipeline.normalize import _space_flags, _space_table

    assert _space_table().tolist() == [_space_flags(chr(c)) for c in range(0x10000)]


def test_normalize_strips_every_line_as_str_strip_does() -> None:
    """The whole-text passes equal a line-by-line strip, whatever whitespace a line starts or ends with."""
    rng = random.Random(0)
    pieces = [" ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003", "\u2028", "\u1680", "\x85", "\x1c", "a", "中", "ﬁ", "\n\n\n"]
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        lines = unicodedata.normalize("NFKC", text.replace("\r\n", "\n")).replace("\x85", "").replace("\x1c", "").split("\n")
        expected = re.sub(r"\n{3,}", "\n\n", "\n".join(re.sub(r"[ \t\u00a0\u3000]+", " ", line).strip() for line in lines)).strip()
        assert normalize(text) == expected, repr(text)


def _normalize_plainly(text: str, form: str) -> str:
    """normalize as written before its fast paths: unicodedata on every text, every regex pass."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize(form, text) if form != "none" else text
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]", "", text)
    text = re.sub(r" [ \t\u00a0\u3000]+|[\t\u00a0\u3000][ \t\u00a0\u3000]*", " ", text)
    text = re.sub(r"^[^\S\n]+|[^\S\n]+$", "", text, flags=re.MULTILINE)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


@pytest.mark.parametrize("form", ["NFKC", "NFC", "none"])
def test_normalize_fast_paths_equal_unicodedata(form: str) -> None:
    """The per-character normal form (and the skipped passes) equal the plain way: every BMP character
    between letters that compose with a following mark, and random texts of marks, jamo, full-width
    forms, ligatures, spaces and controls."""
    for c in range(0x10000):
        text = f"A{chr(c)}e{chr(c)}{chr(c)}  x"
        assert normalize(text, form=form) == _normalize_plainly(text, form), hex(c)
    rng = random.Random(1)
    weird = [
        chr(c)
        for c in [*range(0x300, 0x370), *range(0x1100, 0x1200), *range(0xAC00, 0xAC10), *range(0xFF00, 0xFFEF), *range(0x3131, 0x3190)]
    ]
    weird += list("AaEeUuNnCcKkS \n\t\r\u00a0\u3000\u2003\u2028\x85\x1c\u200b，。ﬁ½①㍿") + ["\U0001f600", "\U0002f800", "\U0001d15e"]
    for _ in range(20000):
        text = "".join(rng.choice(weird) if rng.random() < 0.7 else chr(rng.randrange(0x10000)) for _ in range(rng.randint(0, 30)))
        assert normalize(text, form=form) == _normalize_plainly(text, form), repr(text)
    # Batches: the kernel's texts and the ones left to unicodedata (marks, jamo, above the BMP) side by side.
    texts = ["".join(rng.choice(weird) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    for i in range(0, len(texts), 250):
        batch = texts[i : i + 250]
        assert normalize_batch(batch, form=form) == [_normalize_plainly(t, form) for t in batch]


def test_words_and_alpha_shares_in_numpy_equal_the_regexes() -> None:
    """A batch's words (count, characters, lowered stop words, equal lowered words) and alpha-word
    shares equal the word regex, str.lower and a findall of the letterless tokens, on random texts
    of apostrophes, digits, case pairs, İ/ı/ſ/Σ, CJK and codepoints above the BMP."""
    letterless = re.compile(r"(?<!\S)(?:[\d_]|[^\w\s])+(?!\S)")
    rng = random.Random(2)
    pool = list(" \n\t'’_1aAbtThHeE²½中-é.ΣσİıſK") + [
        "\U0001f600",
        "the",
        "THE",
        "and",
        "that",
        "have",
        "with",
        "be",
        "to",
        "of",
        "don't",
        "a''b",
    ]
    for _ in range(500):
        texts = [
            "".join(rng.choice(pool) if rng.random() < 0.95 else chr(rng.randrange(0x10000)) for _ in range(rng.randint(0, 80)))
            for _ in range(4)
        ]
        texts = [t.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass") for t in texts]
        for text, words, alpha in zip(texts, Words.of_texts(texts, _Joined(texts)), alpha_word_shares(texts), strict=True):
            expected = Words.of_list(_words(text))
            assert (words.count, words.chars, words.stop) == (expected.count, expected.chars, expected.stop), repr(text)
            assert words.units.lengths.tolist() == expected.units.lengths.tolist()
            hashes, expected_hashes = words.units.hashes.tolist(), expected.units.hashes.tolist()
            assert [hashes.index(h) for h in hashes] == [expected_hashes.index(h) for h in expected_hashes], repr(text)
            tokens = len(text.split())
            assert alpha == (tokens - len(letterless.findall(text))) / max(tokens, 1), repr(text)


def test_langid_accuracy_on_sample_set() -> None:
    """Sentences and short prefixes (5 words / 8 characters) of the EN/ZH sample text."""
    cases = [(s, "en") for s in sentences("en")] + [(s, "zh") for s in sentences("zh")]
    cases += [(" ".join(s.split()[:5]), "en") for s in sentences("en")] + [(s[:8], "zh") for s in sentences("zh")]
    predicted = [code for code, _ in langid.detect_batch([text for text, _ in cases])]
    accuracy = sum(p == gold for p, (_, gold) in zip(predicted, cases)) / len(cases)
    assert accuracy >= 0.97, f"lingua accuracy {accuracy:.3f} on {len(cases)} samples"
    assert langid.detect("これは日本語の文章です。ひらがなが多いです。")[0] == "ja"
    assert langid.detect("12345 !!!")[0] == "und"


def _en_doc() -> str:
    return make_doc("en", 1)


# datatrove's thresholds: the rules a source can switch back on (the defaults are calibrated on real text).
DATATROVE = EnglishRulesConfig(
    min_words=50,
    min_alpha_words=0.8,
    ngram_limit_scale=1.0,
    c4_curly_bracket=True,
    c4_line_rules=True,
    c4_min_sentences=5,
    min_line_punct_ratio=0.12,
    max_short_line_ratio=0.67,
    max_dup_line_char_ratio=0.01,
    max_newline_word_ratio=0.3,
)


def _rule(failure: Failure | None) -> str | None:
    return failure.rule if failure else None


def test_ngram_fractions_of_a_batch_equal_counting_each_document() -> None:
    rng = random.Random(1)
    wanted = {2: "top", 3: "top", 4: "top"} | {n: "dup" for n in range(5, 11)}
    for _ in range(100):
        docs = []
        for _ in range(rng.randint(1, 6)):
            vocabulary = [f"w{i}" * rng.randint(1, 3) for i in range(rng.randint(1, 25))]
            docs.append([rng.choice(vocabulary) for _ in range(rng.randint(0, 250))])
        batch = ngram_fractions_batch([Units.of_words(words) for words in docs], wanted)
        for words, fractions in zip(docs, batch):
            assert fractions == {n: _ngram_fractions_by_counting(words, n, kind) for n, kind in wanted.items()}


def test_ngram_fractions_of_small_integer_units_equal_counting() -> None:
    """Chinese units are raw codepoints, not hashes: keys of low entropy, and long runs of a few values
    (every n-gram size repeats, the kernel's table probes long chains)."""
    rng = random.Random(2)
    wanted = {2: "top", 3: "top", 4: "top"} | {n: "dup" for n in range(5, 11)}
    for alphabet in (1, 2, 3, 8, 40):
        docs = [[rng.randrange(0x4E00, 0x4E00 + alphabet) for _ in range(rng.randint(0, 2000))] for _ in range(6)]
        units = [Units(np.array(d, dtype=np.uint64), np.ones(len(d), dtype=np.int64)) for d in docs]
        for d, fractions in zip(docs, ngram_fractions_batch(units, wanted)):
            assert fractions == {n: _ngram_fractions_by_counting(list(map(chr, d)), n, kind) for n, kind in wanted.items()}


def _line_stats_plainly(text: str) -> LineStats:
    """LineStats by str methods and the rules' regexes: what the kernel's one pass must equal."""
    lines = list(filter(str.strip, text.split("\n")))
    paragraphs = [p for p in _PARAGRAPHS.split(text) if p.strip()]
    return LineStats(
        lines=len(lines),
        line_chars=sum(map(len, lines)),
        line_repeats=len(lines) - len(set(lines)),
        line_repeat_chars=sum(map(len, lines)) - sum(map(len, set(lines))),
        bullet=sum(line.lstrip().startswith(BULLETS) for line in lines),
        ellipsis=sum(line.rstrip().endswith(ELLIPSES) for line in lines),
        punct=sum(line.rstrip().endswith(TERMINAL_PUNCT) for line in lines),
        short=sum(len(line) <= 30 for line in lines),
        menu=sum(len(_MENU_SEPARATOR.findall(line)) >= 2 for line in lines),
        zh_short=sum(len(line) - line.count(" ") < 10 for line in lines),
        paragraphs=len(paragraphs),
        paragraph_chars=sum(map(len, paragraphs)),
        paragraph_repeats=len(paragraphs) - len(set(paragraphs)),
        paragraph_repeat_chars=sum(map(len, paragraphs)) - sum(map(len, set(paragraphs))),
        sentences=len(_SENTENCE_END.findall(text)),
        newlines=text.count("\n"),
    )


def test_line_statistics_equal_str_methods_and_the_regexes() -> None:
    """Random texts of newlines (runs of them), Unicode spaces, bullets, ellipses, terminal and menu
    punctuation, repeated pieces and codepoints above the BMP; and the eval set's real documents."""
    rng = random.Random(4)
    pool = list("\n\n\n  \t\u3000\u00a0\r\x0bab.!?。！？…\"'”’•●–-*·|»›>/x中") + [
        "...",
        "a | b | c",
        "menu / x / y",
        "same line",
        "\n\n",
        "\U0001f600",
    ]
    texts = ["", "\n", "\n\n", "a\n\n", "\n\na", "a\n\n\n\nb\n\na", " . ", "end."]
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    texts += [d.text for d in dmu_eval.load_or_build().quality_set()[::7]]
    for i in range(0, len(texts), 97):
        batch = texts[i : i + 97]
        for text, stats in zip(batch, _Joined(batch).lines, strict=True):
            assert stats == _line_stats_plainly(text), repr(text)


def test_function_word_counts_equal_lower_encode_split() -> None:
    """Language id's a-z words (the lowercase as ASCII, everything but a-z a separator) and its
    function words, by the kernel and by str.lower/encode/split, on random samples with İ, the Kelvin
    sign, Σ, accents, digits and codepoints above the BMP."""
    not_a_to_z = bytes(b if 97 <= b <= 122 else 32 for b in range(256))
    pool = list(" \n\t'.,1aAzZİıKΣσéÉß中\U0001f600") + ["the", "THE", "The", "of", "and", "which", "İt", "iT", "x" * 14, "andthe"]
    rng = random.Random(5)
    samples = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    cps = chars.codepoints("".join(samples))
    bounds = np.cumsum([0] + [len(t) for t in samples])
    counts = np.empty((2, len(samples)), dtype=np.int64)
    _kernels.ascii_words(cps, bounds, langid._ascii_letters(), langid._EN_FUNCTION_CODES, counts[0], counts[1])
    for sample, words, matches in zip(samples, *counts.tolist(), strict=True):
        expected = sample.lower().encode("ascii", "replace").translate(not_a_to_z).split()
        assert (words, matches) == (len(expected), sum(w.decode() in langid.EN_FUNCTION_WORDS for w in expected)), repr(sample)


def test_class_counts_per_text_equal_numpy_sums() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        values = rng.integers(0, 256, size=int(rng.integers(0, 500)), dtype=np.uint8)
        bounds = np.sort(rng.integers(0, values.size + 1, size=int(rng.integers(1, 12))))
        masks = tuple(int(m) for m in rng.integers(1, 256, size=int(rng.integers(1, 9))))
        expected = [[int(np.count_nonzero(values[a:b] & m)) for a, b in zip(bounds[:-1], bounds[1:])] for m in masks]
        assert chars.counts_per_text(values, bounds, masks) == expected
    with pytest.raises(ValueError, match="bounds"):
        chars.counts_per_text(np.zeros(3, dtype=np.uint8), np.array([0, 4]), (1,))


def test_ngram_kernel_refuses_inconsistent_arrays() -> None:
    from dmu_service.pipeline import _kernels
    from dmu_service.pipeline.minhash import NGRAM_MULTIPLIERS

    hashes, lengths, out = np.zeros(4, dtype=np.uint64), np.ones(4, dtype=np.int64), np.zeros(1, dtype=np.float64)
    with pytest.raises(ValueError, match="offsets"):
        _kernels.ngram_fractions(hashes, lengths, np.array([0, 5], dtype=np.int64), NGRAM_MULTIPLIERS, 2, b"\x01", out)
    with pytest.raises(ValueError, match="sizes"):  # more n-gram sizes than multipliers
        _kernels.ngram_fractions(hashes, lengths, np.array([0, 4], dtype=np.int64), NGRAM_MULTIPLIERS, 2, bytes(12), np.zeros(12))
    with pytest.raises(TypeError, match="lengths"):
        _kernels.ngram_fractions(hashes, lengths.astype(np.int32), np.array([0, 4], dtype=np.int64), NGRAM_MULTIPLIERS, 2, b"\x01", out)


def test_english_rules_of_a_batch_equal_one_by_one() -> None:
    cfg = EnglishRulesConfig(ngram_limit_scale=1.0)
    docs = [
        _en_doc(),
        "\n".join(["the cat sat on the mat"] * 12),
        " ".join(["the cat sat on the mat"] * 12),
        "Too short.",
        make_doc("en", 2),
    ]
    batch = english_rules_batch(docs, cfg, [Counter() for _ in docs])
    assert batch == [english_rules(d, cfg, Counter()) for d in docs]
    rules = [failed.rule if failed else None for _, failed in batch]
    assert rules == [None, "gopher_dup_line_frac", "gopher_top_2gram", "gopher_min_words", None]


def test_clean_english_and_chinese_pass() -> None:
    counts = Counter()
    text, failed = english_rules(_en_doc(), EnglishRulesConfig(), counts)
    assert failed is None and text
    text, failed = chinese_rules(make_doc("zh", 1), ChineseRulesConfig(), counts)
    assert failed is None and text


@pytest.mark.parametrize(
    ("doc", "rule"),
    [
        ("Too short to be a document of any use to anyone.", "gopher_min_words"),
        (" ".join(["a"] * 60), "gopher_mean_word_length"),
        ("#tag " * 30 + " ".join(sentences("en")[:3]), "gopher_symbol_word_ratio"),
        ("\n".join(f"- item {i} of the list that has the and to of words" for i in range(40)), "gopher_bullet_lines"),
        (
            "\n".join(f"Story number {i} continues with the man and his dog of the village green ..." for i in range(30)),
            "gopher_ellipsis_lines",
        ),
        (" ".join(["1234 5678 90 == ++"] * 20) + " the and of with " * 3, "gopher_alpha_words"),
        (" ".join(f"lorem{i} ipsumword dolorish sitting ametish" for i in range(20)), "gopher_stop_words"),
    ],
)
def test_gopher_quality_rules(doc: str, rule: str) -> None:
    failure = gopher_quality(doc, EnglishRulesConfig(), _words(doc))
    assert _rule(failure) == rule and isinstance(failure.value, float | int)


def test_gopher_repetition_rules() -> None:
    cfg = EnglishRulesConfig()

    def check(text: str) -> str | None:
        return _rule(gopher_repetition(text, cfg, _words(text)))

    paragraph = sentences("en")[0]
    assert check("\n\n".join([paragraph] * 4 + [sentences("en")[1]])) == "gopher_dup_para_frac"
    many_lines = "\n".join([sentences("en")[i] for i in range(10)] + [sentences("en")[0]] * 5)
    assert check(many_lines) in ("gopher_dup_line_frac", "gopher_dup_line_char_frac")
    spam = " ".join(sentences("en")[2:6]) + " " + "buy cheap shoes " * 40
    assert check(spam).startswith(("gopher_top_", "gopher_dup_"))
    assert check(_en_doc()) is None
    # The n-gram limits scale: datatrove's own (scale 1) are stricter.
    repeated_phrase = " ".join(sentences("en")[:8]) + " " + " ".join(sentences("en")[:2])
    scaled = gopher_repetition(repeated_phrase, cfg, _words(repeated_phrase))
    strict = gopher_repetition(repeated_phrase, DATATROVE, _words(repeated_phrase))
    assert scaled is None and strict is not None and strict.rule.startswith("gopher_dup_") and strict.value > 0.1


def test_c4_rules_rewrite_and_count() -> None:
    counts = Counter()
    lines = sentences("en")[:6] + [
        "Click here",
        "Please enable JavaScript to view the comments on this page.",
        "Read our privacy policy for more details about this site.",
        "Menu Home About",
    ]
    text, failed = c4("\n".join(lines), DATATROVE, counts)
    assert failed is None
    assert text.split("\n") == sentences("en")[:6]
    assert counts == Counter(c4_no_terminal_punct_line=2, c4_javascript_line=1, c4_policy_line=1)
    # Off by default: the line rules, ``{`` and five sentences (they removed a third of real manuals).
    assert c4("\n".join(lines), EnglishRulesConfig(), Counter()) == ("\n".join(lines), None)
    assert _rule(c4(_en_doc() + "\nLorem ipsum dolor sit amet.", EnglishRulesConfig(), Counter())[1]) == "c4_lorem_ipsum"
    assert _rule(c4(_en_doc() + "\nfunction f() { return 1; }", DATATROVE, Counter())[1]) == "c4_curly_bracket"
    assert c4(_en_doc() + "\nfunction f() { return 1; }", EnglishRulesConfig(), Counter())[1] is None
    failed = c4(" ".join(sentences("en")[:3]), DATATROVE, Counter())[1]
    assert _rule(failed) == "c4_min_sentences" and failed.value == 3
    assert _rule(c4("a list without any sentence end\nsecond item", EnglishRulesConfig(), Counter())[1]) == "c4_min_sentences"


def test_fineweb_rules() -> None:
    def check(text: str, cfg: EnglishRulesConfig = DATATROVE) -> str | None:
        return _rule(fineweb(text, cfg, _words(text)))

    assert check("\n".join(["Home", "Products and services", "Contact us today", "About"] * 3 + [_en_doc()])) in (
        "fineweb_short_line_ratio",
        "fineweb_char_dup_ratio",
    )
    assert check("\n".join(f"entry {i} has no final punctuation at all in this line" for i in range(20))) == "fineweb_line_punct_ratio"
    duplicated = _en_doc() + "\n" + sentences("en")[5] + "\n" + sentences("en")[5]
    assert check(duplicated) == "fineweb_char_dup_ratio"
    assert check(duplicated, EnglishRulesConfig()) is None
    assert check(_en_doc()) is None


def test_menu_lines() -> None:
    menus = ["Home | News | Sport | Contact", "Products > Shoes > Running", "Share · Tweet · Mail", "Blog | Shop | Help"]
    menu = "\n".join(menus + sentences("en")[:6])
    _, failed = english_rules(menu, EnglishRulesConfig(), Counter())
    assert _rule(failed) == "menu_lines" and failed.value > 0.25


def test_chinese_rules() -> None:
    counts = Counter()
    doc = make_doc("zh", 2) + "\n扫码关注公众号\n版权所有 © 2024 某某网站\n点击阅读原文"
    text, failed = chinese_rules(doc, ChineseRulesConfig(), counts)
    assert failed is None and "扫码" not in text and counts["zh_ad_line"] == 3
    assert _rule(chinese_rules("太短了。", ChineseRulesConfig(), Counter())[1]) == "zh_min_chars"
    mostly_latin = "这是中文。" + " ".join(sentences("en")[:4])
    assert _rule(chinese_rules(mostly_latin, ChineseRulesConfig(), Counter())[1]) == "zh_cjk_ratio"
    repeated = sentences("zh")[0] + "优惠大促销全场五折起快来抢购吧" * 12
    assert _rule(chinese_rules(repeated, ChineseRulesConfig(), Counter())[1]) == "zh_char_ngram_repetition"
    menu = "\n".join(["首页 | 新闻 | 体育 | 联系我们"] * 2 + ["产品中心 > 手机 > 配件"] * 2 + [sentences("zh")[0]])
    assert _rule(chinese_rules(menu, ChineseRulesConfig(), Counter())[1]) in ("zh_menu_lines", "zh_dup_line_frac")
    tags = "手机 游戏 电影 彩票 贷款 外挂 股票 网赚 减肥 美容 汽车 房产 旅游 美食 健身 教育 招聘 二手 租房 婚恋".split()
    spam = "\n".join(f"{a}{b}" for a, b in zip(tags, reversed(tags), strict=True))
    assert _rule(chinese_rules(spam, ChineseRulesConfig(), Counter())[1]) in ("zh_function_chars", "zh_short_lines", "zh_dup_line_frac")


def test_processor_routes_by_language_and_counts() -> None:
    processor = DocumentProcessor(PipelineConfig.for_source("en"))
    records = [
        Record(0, _en_doc()),
        Record(1, make_doc("zh", 3)),
        Record(2, "   \u200b "),
        Record(3, None, "malformed"),
        Record(4, "Too short."),
    ]
    outcomes = [(p.index, p.outcome, p.language) for p in processor.process(records)]
    assert outcomes == [(0, "ok", "en"), (1, "language", "zh"), (2, "empty", "und"), (3, "malformed", "und"), (4, "gopher_min_words", "en")]
    mixed = DocumentProcessor(PipelineConfig.for_source("mixed", {"langid": {"min_confidence": 0.2}}))
    assert [p.outcome for p in mixed.process([Record(0, _en_doc()), Record(1, make_doc("zh", 3))])] == ["ok", "ok"]
    code = DocumentProcessor(PipelineConfig.for_source("code"))
    assert code.process([Record(0, "def f(x):\n    return {x: 1}\n")])[0].outcome == "ok"
