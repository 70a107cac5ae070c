"""The DMU's labelled evaluation set on real text: good documents, junk, other languages, near-duplicates.

* **good** — documents of the real corpora (``heurimentor/corpora.py``): man pages, the Python docs, the
  Debian Edu manual, fortunes, in English and Chinese, with their code, option lists and poems.
  Documents that already near-duplicate an earlier one (a page installed twice, an untranslated
  zh_TW page equal to its zh_CN twin) are dropped, so the only duplicates are the variants below.
* **junk** — what a crawler meets: navigation and cookie boilerplate, keyword spam, generated
  product/price lists, encoding debris (UTF-8 read as cp1252/GBK), pages of one repeated line, link
  farms and tag clouds, lorem ipsum; plus the Python docs' generated index pages (real junk).
* **other** — man pages in de/fr/es/it/pt/ru/ja/ko: an EN/ZH corpus must drop them.
* **variants** — for a share of the good documents, one near-duplicate made by realistic span edits
  (insert / delete / replace sentences and phrases from other documents, an added header or
  footer) until ``edit_rate`` of the characters (2, 5, 10 or 15 %) are touched, and sometimes
  reflowed whitespace.

``quality_set()`` is good + junk + other; ``dedup_stream()`` is good + variants in a shuffled order,
labelled positive when an earlier document of the stream is its base or its variant.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from heurimentor.corpora import GOOD_CORPORA, CorpusDoc, documents, require_corpora

EDIT_RATES = (0.02, 0.05, 0.10, 0.15)


@dataclass(frozen=True, slots=True)
class EvalDoc:
    id: str
    text: str
    language: str
    label: str  # good | junk | other | variant
    kind: str  # the corpus, the junk generator, or "variant"
    origin: str = ""
    base: str = ""  # variants: id of the document it was made from
    edit_rate: float = 0.0  # variants: target share of characters edited
    edited: float = 0.0  # variants: measured share

    def to_json(self) -> dict:
        return asdict(self)


# --- good -------------------------------------------------------------------------------------------


def _shingle_set(text: str) -> set[int]:
    """Reference shingles for cleaning the base set: hashed 5-grams of script-aware units."""
    units = re.findall(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W\u3400-\u9fff\uf900-\ufaff]+", text.lower())
    return {hash(tuple(units[i : i + 5])) for i in range(max(len(units) - 4, 1))}


def drop_near_duplicates(docs: list[CorpusDoc], threshold: float = 0.5) -> list[CorpusDoc]:
    """Keep a document unless its true Jaccard with an earlier kept one reaches ``threshold``.

    Candidates share at least 10 shingles through an inverted index (shingles already in more than
    200 documents are boilerplate and are not followed); each candidate is then compared exactly.
    """
    kept: list[CorpusDoc] = []
    kept_sets: list[set[int]] = []
    postings: dict[int, list[int]] = {}
    for doc in docs:
        shingle_set = _shingle_set(doc.text)
        shared: dict[int, int] = {}
        for s in shingle_set:
            posting = postings.get(s, ())
            if len(posting) <= 200:
                for j in posting:
                    shared[j] = shared.get(j, 0) + 1
        if any(n >= 10 and len(shingle_set & kept_sets[j]) / len(shingle_set | kept_sets[j]) >= threshold for j, n in shared.items()):
            continue
        for s in shingle_set:
            postings.setdefault(s, []).append(len(kept))
        kept.append(doc)
        kept_sets.append(shingle_set)
    return kept


def good_documents(*, per_corpus_files: int | None = 300, seed: int = 0) -> list[EvalDoc]:
    require_corpora()
    docs: list[CorpusDoc] = []
    for corpus in GOOD_CORPORA:
        # A Python docs page makes ~8 documents, a man page ~2: fewer pages keep the corpora balanced.
        limit = per_corpus_files if corpus != "python-doc" or per_corpus_files is None else max(per_corpus_files * 2 // 5, 4)
        docs.extend(documents(corpus, limit_files=limit))
    seen: set[str] = set()
    unique = [d for d in docs if not (d.text in seen or seen.add(d.text))]
    cleaned = drop_near_duplicates(unique)
    return [EvalDoc(f"good-{i:05d}", d.text, d.language, "good", d.corpus, d.origin) for i, d in enumerate(cleaned)]


def other_language_documents(*, per_language_files: int = 20) -> list[EvalDoc]:
    """Translated man pages that really are in their language: lingua (the reference detector, on the whole
    document) must agree, since many "translations" are partly untranslated English."""
    from dmu_service.pipeline.langid import detect_batch

    docs = list(documents("man-other", limit_files=per_language_files))
    detected = detect_batch([d.text for d in docs], sample_chars=100_000)
    docs = [d for d, (code, _) in zip(docs, detected, strict=True) if code == d.language]
    return [EvalDoc(f"other-{i:05d}", d.text, d.language, "other", d.corpus, d.origin) for i, d in enumerate(docs)]


# --- junk -------------------------------------------------------------------------------------------

_NAV = {
    "en": [
        "Home",
        "About us",
        "Products",
        "Services",
        "Blog",
        "News",
        "Contact",
        "Login",
        "Sign up",
        "Cart (0)",
        "Support",
        "Careers",
        "Press",
        "FAQ",
        "Sitemap",
        "Privacy Policy",
        "Terms of Use",
        "Cookie Settings",
    ],
    "zh": [
        "首页",
        "关于我们",
        "产品中心",
        "新闻动态",
        "联系我们",
        "登录",
        "注册",
        "购物车",
        "帮助中心",
        "网站地图",
        "隐私政策",
        "用户协议",
        "加入我们",
        "客服中心",
        "下载APP",
        "返回顶部",
    ],
}
_BANNERS = {
    "en": [
        "We use cookies to improve your experience. By continuing to browse, you agree to our use of cookies.",
        "Accept all cookies",
        "Manage preferences",
        "This site uses cookies. Learn more.",
        "Subscribe to our newsletter",
        "Enter your email address",
        "Follow us on Facebook, Twitter and Instagram",
        "Copyright © 2024 Example Corp. All rights reserved.",
        "Share this page",
        "Skip to main content",
        "You are here: Home > Products > Category",
        "Loading...",
        "JavaScript is disabled in your browser.",
    ],
    "zh": [
        "本网站使用Cookie以提升您的浏览体验，继续浏览即表示您同意我们使用Cookie。",
        "接受全部",
        "管理偏好设置",
        "扫码关注公众号，获取更多资讯",
        "点击下载客户端",
        "版权所有 © 2024 示例科技有限公司 保留所有权利",
        "京ICP备12345678号-1",
        "分享到：微信 微博 QQ空间",
        "当前位置：首页 > 产品中心 > 分类",
        "加载中……",
        "客服热线：400-123-4567",
        "上一篇：",
        "下一篇：",
        "免责声明：本站内容来自网络，如有侵权请联系删除。",
    ],
}
_SPAM = {
    "en": [
        "cheap {k}",
        "buy {k} online",
        "best {k} price",
        "{k} discount",
        "{k} free shipping",
        "top {k} deals",
        "{k} coupon code",
        "{k} sale",
        "order {k} now",
        "{k} review",
        "{k} near me",
    ],
    "zh": [
        "{k}免费下载",
        "{k}破解版",
        "最新{k}",
        "{k}官网",
        "{k}价格",
        "{k}哪家好",
        "正品{k}",
        "{k}批发",
        "{k}排行榜",
        "{k}在线观看",
        "{k}优惠券",
    ],
}
_KEYWORDS = {
    "en": [
        "viagra",
        "casino",
        "replica watches",
        "payday loans",
        "weight loss pills",
        "bitcoin",
        "cheap flights",
        "essay writing",
        "seo services",
        "forex signals",
    ],
    "zh": ["手机", "游戏", "电影", "减肥药", "彩票", "贷款", "代写论文", "网赚", "股票", "外挂"],
}


def _junk_nav(rng: random.Random, lang: str) -> str:
    lines = []
    for _ in range(rng.randint(8, 25)):
        if rng.random() < 0.5:
            lines.append(" | ".join(rng.sample(_NAV[lang], rng.randint(3, 8))))
        else:
            lines.append(rng.choice(_BANNERS[lang]))
    return "\n".join(lines)


def _junk_spam(rng: random.Random, lang: str) -> str:
    keywords = rng.sample(_KEYWORDS[lang], 2)
    sep = " " if lang == "en" else "，"
    lines = [
        sep.join(rng.choice(_SPAM[lang]).format(k=rng.choice(keywords)) for _ in range(rng.randint(5, 14)))
        for _ in range(rng.randint(4, 14))
    ]
    return "\n".join(lines)


def _junk_list(rng: random.Random, lang: str) -> str:
    lines = []
    for _ in range(rng.randint(15, 60)):
        sku, price, stock = rng.randint(10000, 99999), rng.randint(1, 999) + rng.choice((0.99, 0.5, 0.0)), rng.randint(0, 500)
        if lang == "en":
            lines.append(
                rng.choice(
                    [
                        f"SKU {sku} - ${price:.2f} - In stock: {stock}",
                        f"Item #{sku} | {rng.choice(_KEYWORDS['en'])} | ${price:.2f}",
                        f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {sku} {stock} {price:.2f}",
                    ]
                )
            )
        else:
            lines.append(
                rng.choice(
                    [
                        f"产品编号：A{sku} 价格：¥{price:.2f} 库存：{stock}件",
                        f"{rng.choice(_KEYWORDS['zh'])} 型号{sku} ￥{price:.0f} 月销{stock}",
                        f"2024年{rng.randint(1, 12)}月{rng.randint(1, 28)}日 订单{sku} 金额{price:.2f}元",
                    ]
                )
            )
    return "\n".join(lines)


def _junk_debris(rng: random.Random, lang: str, source: str) -> str:
    """Real text decoded with the wrong codec (mojibake), sometimes with replacement characters."""
    data = source.encode("utf-8")
    codec = rng.choice(["cp1252", "latin-1"] if lang == "en" else ["latin-1", "cp1252", "gbk_as_latin"])
    if codec == "gbk_as_latin":
        text = data.decode("gbk", errors="replace").encode("utf-8").decode("latin-1")
    else:
        text = data.decode(codec, errors="replace")
    if lang == "en":
        # English mojibake only shows on non-ASCII: replace a share of letters with debris, as a bad transcode does.
        chars = list(text)
        for i in rng.sample(range(len(chars)), len(chars) // 3):
            chars[i] = rng.choice(["Ã©", "â€™", "Ã¤", "�", "Â", "â€œ", "Ã¶", "ï»¿"])
        text = "".join(chars)
    return text


def _junk_repeated(rng: random.Random, lang: str, source: str) -> str:
    lines = [line for line in source.split("\n") if len(line) > 20] or [source[:80]]
    line = rng.choice(lines)[:160]
    return "\n".join([line] * rng.randint(15, 120))


def _junk_links(rng: random.Random, lang: str, source: str) -> str:
    words = re.findall(r"\w+", source) or ["link"]
    if lang == "zh":
        words = [w[:4] for w in words if w] or ["链接"]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(40, 150))]
    return "\n".join(lines) if rng.random() < 0.5 else " · ".join(lines)


def _junk_lorem(rng: random.Random, lang: str) -> str:
    words = (
        "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua".split()
    )
    sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))).capitalize() + "." for _ in range(rng.randint(10, 30))]
    return "Lorem ipsum dolor sit amet. " + " ".join(sentences)


def _make_junk(rng: random.Random, kind: str, lang: str, source: str) -> str:
    if kind == "nav_boilerplate":
        return _junk_nav(rng, lang)
    if kind == "keyword_spam":
        return _junk_spam(rng, lang)
    if kind == "generated_list":
        return _junk_list(rng, lang)
    if kind == "encoding_debris":
        return _junk_debris(rng, lang, source)
    if kind == "repeated_line":
        return _junk_repeated(rng, lang, source)
    if kind == "link_farm":
        return _junk_links(rng, lang, source)
    return _junk_lorem(rng, lang)


JUNK_KINDS = ("nav_boilerplate", "keyword_spam", "generated_list", "encoding_debris", "repeated_line", "link_farm", "lorem_ipsum")


def junk_documents(good: list[EvalDoc], *, per_kind: int = 40, seed: int = 0) -> list[EvalDoc]:
    rng = random.Random(seed)
    out: list[EvalDoc] = []
    by_lang = {lang: [g for g in good if g.language == lang] for lang in ("en", "zh")}
    for lang in ("en", "zh"):
        for kind in JUNK_KINDS:
            if kind == "lorem_ipsum" and lang == "zh":
                continue
            for i in range(per_kind):
                source = rng.choice(by_lang[lang]).text
                text = _make_junk(rng, kind, lang, source)
                out.append(EvalDoc(f"junk-{lang}-{kind}-{i:03d}", text, lang, "junk", kind))
    index_pages = list(documents("python-index"))
    for i, d in enumerate(rng.sample(index_pages, min(per_kind, len(index_pages)))):
        out.append(EvalDoc(f"junk-en-generated_index-{i:03d}", d.text, "en", "junk", "generated_index", d.origin))
    return out


# --- near-duplicate variants ------------------------------------------------------------------------

_SPANS = re.compile(r"[^.!?。！？;；\n]+[.!?。！？;；]*\s*|\n")
_PHRASES = re.compile(r"[^,，、:：()（）]+[,，、:：()（）]?")
_HEADERS = {
    "en": [
        "Posted by admin on March 3, 2024",
        "Last updated: 2024-05-17",
        "Reading time: 4 min",
        "From Wikipedia, the free encyclopedia",
        "Share: Twitter Facebook LinkedIn",
        "Related articles",
        "This page was last edited on 12 June 2024, at 09:14.",
    ],
    "zh": [
        "发布时间：2024-03-03 来源：本站",
        "作者：管理员 阅读：1024次",
        "更新于 2024年5月17日",
        "本文转载自网络",
        "分享到：微信 微博",
        "相关文章推荐",
        "责任编辑：小编",
    ],
}


def _spans(text: str) -> list[str]:
    return [s for s in _SPANS.findall(text) if s]


def make_variant(rng: random.Random, text: str, language: str, rate: float, donors: list[str]) -> tuple[str, float]:
    """Edit ``rate`` of the characters with span operations; returns (variant, measured share edited)."""
    spans = _spans(text)
    budget = rate * len(text)
    edited = 0
    guard = 0
    while edited < budget and guard < 400 and spans:
        guard += 1
        room = budget - edited + 0.25 * budget + 5  # what one more operation may add without overshooting much
        op = rng.choices(["insert", "delete", "replace", "phrase", "header"], weights=[3, 3, 3, 3, 1])[0]
        donor_spans = _spans(rng.choice(donors))
        donor = rng.choice(donor_spans) if donor_spans else "x"
        i = rng.randrange(len(spans))
        if max(len(spans[i]), len(donor)) > room and op in ("delete", "replace"):
            op = "phrase"  # a long span would overshoot the budget: edit a phrase of it instead
        if op == "insert" and len(donor) <= room:
            spans.insert(i, donor)
            edited += len(donor)
        elif op == "delete" and spans[i].strip():
            edited += len(spans[i])
            del spans[i]
        elif op == "replace" and spans[i].strip():
            edited += max(len(spans[i]), len(donor))
            spans[i] = donor
        elif op == "phrase":
            phrases = _PHRASES.findall(spans[i]) or [spans[i]]
            j = rng.randrange(len(phrases))
            donor_phrases = _PHRASES.findall(donor) or [donor]
            new = rng.choice(donor_phrases)
            if max(len(phrases[j]), len(new)) > room:
                # Still too big: change a few words / characters in place.
                words = phrases[j].split(" ") if language == "en" else list(phrases[j])
                k = rng.randrange(len(words))
                replacement = rng.choice(re.findall(r"\w+", donor) or ["x"])[: max(len(words[k]), 1) + 2]
                edited += max(len(words[k]), len(replacement))
                words[k] = replacement
                phrases[j] = (" " if language == "en" else "").join(words)
            else:
                edited += max(len(phrases[j]), len(new))
                phrases[j] = new
            spans[i] = "".join(phrases)
        elif op == "header":
            line = rng.choice(_HEADERS[language]) + "\n"
            if len(line) <= room:
                spans.insert(0 if rng.random() < 0.5 else len(spans), line if rng.random() < 0.5 else "\n" + line)
                edited += len(line)
    variant = "".join(spans)
    if rng.random() < 0.3:
        variant = _reflow(rng, variant)
    return variant, edited / max(len(text), 1)


def _reflow(rng: random.Random, text: str) -> str:
    """Re-wrap lines at another width or join them: whitespace changes only."""
    width = rng.choice((60, 72, 100))
    out = []
    for paragraph in text.split("\n\n"):
        words = paragraph.split(" ")
        line, lines = "", []
        for w in words:
            if len(line) + len(w) > width and line:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}" if line else w
        lines.append(line)
        out.append("\n".join(lines))
    return "\n\n".join(out)


def variants(good: list[EvalDoc], *, share: float = 0.5, seed: int = 0) -> list[EvalDoc]:
    """One variant for ``share`` of the good documents; edit rates cycle so each has the same count per language."""
    rng = random.Random(seed)
    out: list[EvalDoc] = []
    for lang in ("en", "zh"):
        pool = [g for g in good if g.language == lang]
        donors = [g.text for g in pool]
        chosen = rng.sample(pool, int(len(pool) * share))
        for n, base in enumerate(chosen):
            rate = EDIT_RATES[n % len(EDIT_RATES)]
            text, edited = make_variant(rng, base.text, lang, rate, donors)
            out.append(EvalDoc(f"var-{base.id}", text, lang, "variant", "variant", base.origin, base.id, rate, round(edited, 4)))
    return out


# --- the sets ---------------------------------------------------------------------------------------


@dataclass
class EvalSet:
    good: list[EvalDoc]
    junk: list[EvalDoc]
    other: list[EvalDoc]
    variants: list[EvalDoc]

    def quality_set(self) -> list[EvalDoc]:
        return self.good + self.junk + self.other

    def dedup_stream(self, seed: int = 0) -> tuple[list[EvalDoc], list[bool]]:
        """Good documents and variants, shuffled; positive = an earlier document has the same base."""
        docs = self.good + self.variants
        random.Random(seed).shuffle(docs)
        seen: set[str] = set()
        labels = []
        for d in docs:
            cluster = d.base or d.id
            labels.append(cluster in seen)
            seen.add(cluster)
        return docs, labels


def build(*, per_corpus_files: int | None = 300, junk_per_kind: int = 40, variant_share: float = 0.5, seed: int = 0) -> EvalSet:
    good = good_documents(per_corpus_files=per_corpus_files, seed=seed)
    return EvalSet(
        good,
        junk_documents(good, per_kind=junk_per_kind, seed=seed),
        other_language_documents(),
        variants(good, share=variant_share, seed=seed),
    )


def summary(docs: Iterable[EvalDoc]) -> dict:
    out: dict = {}
    for d in docs:
        key = f"{d.label}/{d.language}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


CACHE_VERSION = 2


def load_or_build(cache: Path | None = None, **kwargs) -> EvalSet:
    """``build(**kwargs)``, cached as JSONL (building reads ~10k files: about a minute and a half)."""
    cache = cache or Path.home() / ".cache" / "heurimentor" / f"dmu-eval-v{CACHE_VERSION}-{_key(kwargs)}.jsonl"
    if cache.exists():
        groups: dict[str, list[EvalDoc]] = {"good": [], "junk": [], "other": [], "variant": []}
        with open(cache, encoding="utf-8") as f:
            for line in f:
                doc = EvalDoc(**json.loads(line))
                groups[doc.label].append(doc)
        return EvalSet(groups["good"], groups["junk"], groups["other"], groups["variant"])
    eval_set = build(**kwargs)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for doc in eval_set.good + eval_set.junk + eval_set.other + eval_set.variants:
            f.write(json.dumps(doc.to_json(), ensure_ascii=False) + "\n")
    tmp.replace(cache)
    return eval_set


def _key(kwargs: dict) -> str:
    return hashlib.sha256(json.dumps(sorted(kwargs.items())).encode()).hexdigest()[:8]
