"""The demo's raw data: real English and Chinese text from Debian packages, one JSONL file per source.

Each source is one corpus of ``heurimentor.corpora`` (man pages, fortunes, the Debian Edu manual;
roff and HTML converted by the DMU's readers), written as the DMU's input: one ``{"text"}`` line per
document, in a fixed order. Nothing is cleaned here: the DMU's pipeline does that (a Chinese man
page that was never translated stays in ``man-zh`` for the language filter to find).

The junk source is what a careless export produces: real documents with the words of every line
shuffled (characters, for Chinese). It reads like text to document-level rules, and no model can
learn its order.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from heurimentor.corpora import CorpusDoc, documents, missing_packages


@dataclass(frozen=True)
class DemoSource:
    name: str  # the DMU source, the mixture key
    corpus: str  # heurimentor.corpora corpus
    language: str  # what the DMU's language filter keeps
    origin: str  # the Debian package and format, for people
    limit_files: int | None = None  # man pages: an evenly spread subset


SOURCES = (
    DemoSource("man-en", "man-en", "en", "manpages and other packages' man pages (roff)", limit_files=400),
    DemoSource("fortunes-en", "fortunes-en", "en", "fortunes (quotations, poems)"),
    DemoSource("edu-en", "edu-en", "en", "debian-edu-doc-en (HTML manual)"),
    DemoSource("man-zh", "man-zh", "zh", "manpages-zh, zh_CN + zh_TW (roff)", limit_files=200),
    DemoSource("fortunes-zh", "fortunes-zh", "zh", "fortunes-zh (Tang and Song poems, sayings)"),
    DemoSource("edu-zh", "edu-zh", "zh", "debian-edu-doc-zh-cn (HTML manual)"),
)
JUNK = DemoSource("shuffled-en", "man-en", "en", "other man pages, the words of each line shuffled (junk)")


def require_packages() -> None:
    missing = missing_packages()
    if missing:
        raise SystemExit(
            f"demo: the real-text corpora need the Debian packages {' '.join(missing)}; "
            "`make demo` installs them (hack/install-system-deps.sh corpora)"
        )


def _write_jsonl(path: Path, texts: list[str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
    path.write_text(data, encoding="utf-8")
    return len(data.encode())


def shuffled(text: str, rng: random.Random) -> str:
    """Every line's words (CJK: characters) in a random order; line breaks kept."""
    out = []
    for line in text.split("\n"):
        units = line.split() if line.isascii() else list(line.replace(" ", ""))
        rng.shuffle(units)
        out.append((" " if line.isascii() else "").join(units))
    return "\n".join(out)


@dataclass
class RawCorpus:
    files: dict[str, Path]  # source -> raw JSONL
    docs: dict[str, list[CorpusDoc]]  # source -> the documents written, in line order
    bytes: dict[str, int]
    tokenizer_files: dict[str, Path]  # en / zh -> documents by content language, for the tokenizer


def write_raw_corpus(folder: Path, *, scale: float = 1.0, seed: int = 0) -> RawCorpus:
    """One JSONL per source (``scale`` < 1 keeps that share of each, for a quick run), plus the junk source."""
    require_packages()
    rng = random.Random(seed)
    raw = RawCorpus({}, {}, {}, {})
    by_language: dict[str, list[str]] = {"en": [], "zh": []}
    for source in SOURCES:
        docs = list(documents(source.corpus, limit_files=source.limit_files))
        docs = docs[: max(1, round(len(docs) * scale))]
        raw.docs[source.name] = docs
        raw.files[source.name] = folder / f"{source.name}.jsonl"
        raw.bytes[source.name] = _write_jsonl(raw.files[source.name], [d.text for d in docs])
        for d in docs:
            if d.language in by_language:
                by_language[d.language].append(d.text)
    # The junk: man pages the other sources do not hold (every other one of a larger spread), shuffled.
    kept = {d.origin.split("#")[0] for d in raw.docs["man-en"]}
    pool = [d for d in documents(JUNK.corpus, limit_files=2 * SOURCES[0].limit_files) if d.origin.split("#")[0] not in kept]
    junk = [CorpusDoc(shuffled(d.text, rng), "en", JUNK.name, d.origin) for d in pool[: max(1, round(len(pool) * scale))]]
    raw.docs[JUNK.name] = junk
    raw.files[JUNK.name] = folder / f"{JUNK.name}.jsonl"
    raw.bytes[JUNK.name] = _write_jsonl(raw.files[JUNK.name], [d.text for d in junk])
    for language, texts in by_language.items():
        raw.tokenizer_files[language] = folder / "tokenizer" / f"{language}.jsonl"
        _write_jsonl(raw.tokenizer_files[language], texts)
    return raw
