"""Real English and Chinese text from Debian packages, as plain-text documents (for `make demo`, bench/ and tests/).

``hack/install-system-deps.sh`` installs the packages when they are missing. Each corpus is read
with the DMU's own converters (``dmu_service.pipeline.markup``), cut into documents of about
``target_chars`` at paragraph boundaries, in a fixed order (sorted paths), so the same machine
gives the same documents every time.

| corpus | package | language | what |
|---|---|---|---|
| ``man-en`` | manpages (+ every package's man pages) | en | /usr/share/man/man1-8 |
| ``man-zh`` | manpages-zh | zh | /usr/share/man/zh_CN, zh_TW (part of it untranslated English) |
| ``man-other`` | (installed translations) | de, fr, ja, ru, ... | other languages an EN/ZH corpus must drop |
| ``fortunes-en`` | fortunes | en | quotations, jokes, poems (packed ~10 to a document) |
| ``fortunes-zh`` | fortunes-zh | zh | 唐诗三百首, 宋词一百首, Debian 格言 |
| ``edu-en`` / ``edu-zh`` | debian-edu-doc-en / -zh-cn | en / zh | the Debian Edu manual (HTML) |
| ``python-doc`` | python3-doc | en | the Python library reference, tutorial, HOWTOs (HTML) |
| ``python-index`` | python3-doc | en | its generated index pages: real machine-made lists (junk) |
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dmu_service.pipeline.markup import html_to_text, roff_to_text, sections

MAN = Path("/usr/share/man")
FORTUNES = Path("/usr/share/games/fortunes")
EDU = Path("/usr/share/doc")
PYTHON_HTML = Path("/usr/share/doc/python3-doc/html")
# Packages whose files the corpora read, and a file that shows each is installed.
PACKAGES = {
    "manpages": MAN / "man7" / "man.7.gz",
    "manpages-zh": MAN / "zh_CN",
    "fortunes": FORTUNES / "fortunes",
    "fortunes-zh": FORTUNES / "tang300",
    "debian-edu-doc-en": EDU / "debian-edu-doc-en" / "debian-edu-bookworm-manual.html",
    "debian-edu-doc-zh-cn": EDU / "debian-edu-doc-zh-cn" / "debian-edu-bookworm-manual.html",
    "python3-doc": PYTHON_HTML / "library" / "json.html",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
OTHER_MAN_LANGUAGES = ("de", "fr", "es", "it", "pt", "ru", "ja", "ko")


@dataclass(frozen=True, slots=True)
class CorpusDoc:
    text: str
    language: str  # en | zh, or another ISO 639-1 code for man-other
    corpus: str
    origin: str  # file#part


def missing_packages() -> list[str]:
    return [package for package, marker in PACKAGES.items() if not marker.exists()]


def require_corpora() -> None:
    missing = missing_packages()
    if missing:
        raise RuntimeError(
            f"real-text corpora missing: Debian packages {' '.join(missing)}; run hack/install-system-deps.sh (it installs them)"
        )


def content_language(text: str, corpus_language: str) -> str:
    """zh when at least 10 % of the letters are CJK ideographs (one ideograph carries a word), else en.

    A document of a Chinese corpus that was never translated is English text, and is labelled so.
    """
    if corpus_language not in ("en", "zh"):
        return corpus_language
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    return "zh" if cjk >= 20 and cjk >= 0.1 * (cjk + latin) else "en"


def _read(path: Path) -> str:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _man_pages(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("man[1-8]/*") if p.is_file() and not p.is_symlink())


def _docs_of(texts: Iterator[tuple[str, str]], corpus: str, language: str, target_chars: int, min_chars: int) -> Iterator[CorpusDoc]:
    for origin, text in texts:
        for part, doc in enumerate(sections(text, target_chars=target_chars)):
            if len(doc) >= min_chars:
                yield CorpusDoc(doc, content_language(doc, language), corpus, f"{origin}#{part}")


def _every(paths: list[Path], limit: int | None) -> list[Path]:
    """An evenly spread subset of ``limit`` paths (all when ``limit`` is None)."""
    if limit is None or len(paths) <= limit:
        return paths
    step = len(paths) / limit
    return [paths[int(i * step)] for i in range(limit)]


def man_texts(folder: Path, limit: int | None) -> Iterator[tuple[str, str]]:
    for path in _every(_man_pages(folder), limit):
        text = roff_to_text(_read(path))
        if text:
            yield str(path), text


def fortune_texts(names: list[str], per_doc: int = 10) -> Iterator[tuple[str, str]]:
    """Fortune files hold entries separated by lines of ``%``; ``per_doc`` entries make one document."""
    for name in names:
        path = FORTUNES / name
        if not path.exists():
            continue
        entries = [_ANSI.sub("", e).strip() for e in re.split(r"\n%\n", _read(path))]
        entries = [e for e in entries if e]
        for i in range(0, len(entries), per_doc):
            yield f"{path}@{i}", "\n\n".join(entries[i : i + per_doc])


def html_texts(paths: list[Path]) -> Iterator[tuple[str, str]]:
    for path in paths:
        text = html_to_text(_read(path))
        if text:
            yield str(path), text


EN_FORTUNES = [
    "computers",
    "linux",
    "science",
    "literature",
    "wisdom",
    "humorists",
    "people",
    "platitudes",
    "education",
    "work",
    "songs-poems",
    "pratchett",
    "goedel",
    "tao",
    "startrek",
    "riddles",
]
ZH_FORTUNES = ["chinese", "tang300", "song100"]


def documents(corpus: str, *, limit_files: int | None = None, target_chars: int = 2000, min_chars: int = 200) -> Iterator[CorpusDoc]:
    """The documents of one corpus (see the module docstring); ``limit_files`` spreads a subset of files."""
    if corpus == "man-en":
        yield from _docs_of(man_texts(MAN, limit_files), corpus, "en", target_chars, min_chars)
    elif corpus == "man-zh":
        texts = (t for folder in ("zh_CN", "zh_TW") for t in man_texts(MAN / folder, limit_files))
        yield from _docs_of(texts, corpus, "zh", target_chars, min_chars)
    elif corpus == "man-other":
        for language in OTHER_MAN_LANGUAGES:
            yield from _docs_of(man_texts(MAN / language, limit_files), corpus, language, target_chars, min_chars)
    elif corpus == "fortunes-en":
        yield from _docs_of(fortune_texts(EN_FORTUNES), corpus, "en", target_chars, min_chars)
    elif corpus == "fortunes-zh":
        yield from _docs_of(fortune_texts(ZH_FORTUNES), corpus, "zh", target_chars, min_chars)
    elif corpus in ("edu-en", "edu-zh"):
        package = "debian-edu-doc-en" if corpus == "edu-en" else "debian-edu-doc-zh-cn"
        paths = sorted((EDU / package).glob("*.html"))
        yield from _docs_of(html_texts(paths), corpus, corpus[-2:], target_chars, min_chars)
    elif corpus == "python-doc":
        paths = sorted(
            p for sub in ("library", "tutorial", "howto", "reference", "faq", "using") for p in (PYTHON_HTML / sub).glob("*.html")
        )
        yield from _docs_of(html_texts(_every(paths, limit_files)), corpus, "en", target_chars, min_chars)
    elif corpus == "python-index":
        paths = sorted(PYTHON_HTML.glob("genindex-*.html")) + [PYTHON_HTML / "py-modindex.html"]
        yield from _docs_of(html_texts(paths), corpus, "en", target_chars, min_chars)
    else:
        raise ValueError(f"unknown corpus {corpus!r} (known: {', '.join(CORPORA)})")


CORPORA = ("man-en", "man-zh", "man-other", "fortunes-en", "fortunes-zh", "edu-en", "edu-zh", "python-doc", "python-index")
GOOD_CORPORA = ("man-en", "man-zh", "fortunes-en", "fortunes-zh", "edu-en", "edu-zh", "python-doc")
