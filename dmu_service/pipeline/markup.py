"""Markup to plain text: roff (man pages) and HTML, as a pretraining corpus wants them.

Both keep the prose and the literal text (commands, options, code blocks) and drop the
presentation: roff requests, font escapes and comments; HTML scripts, styles, navigation,
headers/footers and forms. A page with a ``<main>``/``role="main"``/``<article>`` element keeps only
that, which is how documentation generators (Sphinx, DocBook) mark the content. Section headings
become lines of their own, so ``sections()`` can cut a long page into documents.

No subprocess (groff) and no third-party parser: these run inside the pipeline on every document.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# --- roff ---------------------------------------------------------------------------------------

# Named glyphs \(xx and \[xx] that man pages actually use; others become nothing.
_ROFF_GLYPHS = {
    "em": "—",
    "en": "–",
    "hy": "-",
    "mi": "-",
    "aq": "'",
    "dq": '"',
    "lq": "“",
    "rq": "”",
    "oq": "‘",
    "cq": "’",
    "bu": "•",
    "co": "©",
    "rg": "®",
    "tm": "™",
    "de": "°",
    "ti": "~",
    "ha": "^",
    "ga": "`",
    "rs": "\\",
    "ba": "|",
    "br": "|",
    "sl": "/",
    "lh": "<",
    "rh": ">",
    "<=": "≤",
    ">=": "≥",
    "mu": "×",
    "+-": "±",
    "->": "→",
    "<-": "←",
    "fo": "«",
    "fc": "»",
    "Fo": "«",
    "Fc": "»",
    "ul": "_",
    "pl": "+",
    "eq": "=",
    "at": "@",
    "sh": "#",
    "Do": "$",
    "Eu": "€",
    "ct": "¢",
    "ps": "¶",
    "sc": "§",
    "dg": "†",
}
_ROFF_ESCAPE = re.compile(
    r"\\(?:"
    r"\((?P<glyph2>..)|\[(?P<glyph>[^\]]*)\]"  # named glyphs
    r"|\*(?:\((?P<str2>..)|\[(?P<str>[^\]]*)\]|(?P<str1>.))"  # strings (\*(Aq, \*[..], \*R)
    r"|[fFn](?:\(..|\[[^\]]*\]|.)"  # fonts, number registers
    r"|[sS][-+]?(?:\d\d?|\(\d\d|\[[^\]]*\])"  # point size
    r"|[hvwlLDNoXbxkuzHCRAZY]'[^']*'"  # motions and other quoted-argument escapes
    r"|(?P<char>.)"  # everything else: \- \e \& \| \^ \0 \~ \c ...
    r")"
)
_ROFF_CHAR = {
    "-": "-",
    "e": "\\",
    "\\": "\\",
    "~": " ",
    "0": " ",
    " ": " ",
    ".": ".",
    "'": "'",
    "`": "`",
    "t": "\t",
    "(": "(",
    "%": "",
    "&": "",
    "|": "",
    "^": "",
    "c": "",
    "/": "",
    ",": "",
    "{": "",
    "}": "",
    ":": "",
    "d": "",
    "u": "",
    "r": "",
    "p": "",
    "a": "",
}
_ROFF_STRINGS = {"Aq": "'", "R": "®", "Tm": "™", "lq": "“", "rq": "”", 'L"': "“", 'R"': "”"}
_FONT_MACROS = {"B", "I", "R", "SM", "SB", "BI", "BR", "IB", "IR", "RB", "RI", "CW", "CB", "CR", "CI"}
_HEADING_MACROS = {"SH", "SS", "Sh", "Ss"}
_BREAK_MACROS = {"PP", "LP", "P", "TP", "IP", "HP", "sp", "br", "RS", "RE", "TQ", "Pp", "Bl", "El", "It", "Dl", "Bd", "Ed"}
_SKIP_UNTIL = {"de": "..", "ig": "..", "TS": "TE", "EQ": "EN", "PS": "PE"}


def _roff_args(rest: str) -> list[str]:
    """Macro arguments: whitespace-separated, double quotes group ("" is a literal quote)."""
    args, current, quoted, i = [], [], False, 0
    while i < len(rest):
        ch = rest[i]
        if ch == '"':
            if quoted and rest[i + 1 : i + 2] == '"':
                current.append('"')
                i += 1
            else:
                quoted = not quoted
        elif ch in " \t" and not quoted:
            if current:
                args.append("".join(current))
                current = []
        else:
            current.append(ch)
        i += 1
    if current:
        args.append("".join(current))
    return args


def _roff_inline(text: str) -> str:
    def replace(match: re.Match) -> str:
        if (glyph := match["glyph2"] or match["glyph"]) is not None:
            return _ROFF_GLYPHS.get(glyph, "")
        if (name := match["str2"] or match["str"] or match["str1"]) is not None:
            return _ROFF_STRINGS.get(name, "")
        if (char := match["char"]) is not None:
            return _ROFF_CHAR.get(char, char)
        return ""

    return _ROFF_ESCAPE.sub(replace, text)


def roff_to_text(source: str) -> str:
    """A man page (man or mdoc macros) as plain text: headings and paragraphs on lines of their own."""
    out: list[str] = []
    paragraph: list[str] = []
    skip_until: str | None = None
    literal = False
    tag_pending = False  # after .TP the next line is the item's tag, on a line of its own

    def flush() -> None:
        if paragraph:
            out.append((" " if not literal else "\n").join(paragraph))
            paragraph.clear()

    for raw in source.replace("\r\n", "\n").split("\n"):
        if skip_until is not None:
            if raw.strip().startswith("." + skip_until) or (skip_until == ".." and raw.strip() == ".."):
                skip_until = None
            continue
        line = re.sub(r'\\".*$', "", raw).rstrip()  # comments (\" and \#)
        line = re.sub(r"\\#.*$", "", line)
        if not line.startswith((".", "'")):
            if line.strip() or literal:
                paragraph.append(_roff_inline(line) if literal else _roff_inline(line).strip())
                if tag_pending:
                    flush()
                    tag_pending = False
            else:
                flush()
            continue
        name, _, rest = line[1:].strip().partition(" ")
        if tag_pending and name in _FONT_MACROS:
            paragraph.append(_roff_inline(("" if len(name) == 2 else " ").join(_roff_args(rest))).strip())
            flush()
            tag_pending = False
            continue
        if name in _SKIP_UNTIL:
            skip_until = _SKIP_UNTIL[name]
            flush()
        elif name in ("nf", "EX", "Vb"):
            flush()
            literal = True
        elif name in ("fi", "EE", "Ve"):
            flush()
            literal = False
        elif name in _HEADING_MACROS:
            flush()
            title = _roff_inline(" ".join(_roff_args(rest))).strip()
            if title:
                out.append("")
                out.append(title)
        elif name in _FONT_MACROS:
            words = [_roff_inline(a) for a in _roff_args(rest)]
            # Alternating-font macros (BR, IR, ...) join their arguments without spaces.
            paragraph.append(("" if len(name) == 2 and name not in ("SM", "SB", "CW") else " ").join(words).strip())
        elif name in ("TP", "IP", "HP", "TQ", "It"):
            flush()
            tag_pending = name in ("TP", "TQ")
            if name in ("IP", "It") and rest:
                label = _roff_inline(" ".join(_roff_args(rest)[:1] if name == "IP" else _roff_args(rest))).strip()
                if label:
                    paragraph.append(label)
        elif name in _BREAK_MACROS:
            flush()
            if name in ("PP", "LP", "P", "Pp", "sp"):
                out.append("")
        elif name in ("Nm", "Nd", "Op", "Ar", "Fl", "Cm", "Pa", "Xr", "Em", "Sy", "Va", "Ev", "Li", "Ql", "Dq", "Sq"):
            # mdoc: keep the words; flags get their dash back.
            words = [("-" + a if name == "Fl" else a) for a in _roff_args(rest) if a not in ("Ns", "Pq", "Op", "Ar", "Fl")]
            paragraph.append(_roff_inline(" ".join(words)).strip())
        # Every other request (.TH, .ds, .nr, .ft, .ad, .nh, .so, .if ...) carries no text.
    flush()
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- HTML ---------------------------------------------------------------------------------------

_SKIPPED_TAGS = {
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "svg",
    "button",
    "select",
    "textarea",
    "template",
    "iframe",
    "object",
    "head",
    "title",
}
_SKIPPED_ROLES = {"navigation", "search", "banner", "contentinfo", "complementary"}
# Blocks that start a paragraph (a blank line before) and blocks that only start a line.
_PARAGRAPH_TAGS = {
    "p",
    "pre",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "dl",
    "table",
    "blockquote",
    "section",
    "article",
    "main",
    "figure",
    "hr",
    "body",
    "html",
    "address",
    "menu",
    "dir",
}
_LINE_TAGS = {"div", "li", "dt", "dd", "tr", "br", "caption", "figcaption"}
_VOID_TAGS = {"br", "hr", "img", "meta", "link", "input", "wbr", "area", "base", "col", "embed", "source", "track", "param"}


class _TextExtractor(HTMLParser):
    """Collects text blocks twice: all visible ones, and those inside a main-content element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, skipped, inside main)
        self.blocks: dict[bool, list[list]] = {False: [["\n\n", ""]], True: [["\n\n", ""]]}  # [separator, text]
        self.has_main = False
        self.pre_depth = 0

    def _break(self, separator: str) -> None:
        for blocks in self.blocks.values():
            if blocks[-1][1].strip():
                blocks.append([separator, ""])
            elif separator == "\n\n":
                blocks[-1][0] = separator

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        role = (dict(attrs).get("role") or "").lower()
        outer_skipped, outer_main = self.stack[-1][1:] if self.stack else (False, False)
        skipped = outer_skipped or tag in _SKIPPED_TAGS or role in _SKIPPED_ROLES
        is_main = tag in ("main", "article") or role == "main"
        self.has_main |= is_main and not skipped
        self._block_boundary(tag)
        if tag == "pre":
            self.pre_depth += 1
        if tag not in _VOID_TAGS:
            self.stack.append((tag, skipped, outer_main or is_main))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._block_boundary(tag)

    def _block_boundary(self, tag: str) -> None:
        if tag in _PARAGRAPH_TAGS:
            self._break("\n\n")
        elif tag in _LINE_TAGS:
            self._break("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID_TAGS:
            return
        # Pop to the matching open tag (HTML in the wild leaves tags unclosed).
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth][0] == tag:
                del self.stack[depth:]
                break
        if tag == "pre":
            self.pre_depth = max(self.pre_depth - 1, 0)
        self._block_boundary(tag)

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][1]:
            return
        if not self.pre_depth:
            data = re.sub(r"\s+", " ", data)
        self.blocks[False][-1][1] += data
        if self.stack and self.stack[-1][2]:
            self.blocks[True][-1][1] += data


def html_to_text(html: str) -> str:
    """The readable text of an HTML page: its main content when marked; paragraphs apart by a blank line."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    out: list[str] = []
    for separator, text in parser.blocks[parser.has_main]:
        # Outside <pre> whitespace was collapsed to single spaces, so only a leading space can remain.
        lines = [line.rstrip() for line in text.replace("¶", "").split("\n") if line.strip()]
        if lines and "\n" not in text:
            lines = [lines[0].strip()]
        if lines:
            if out:
                out.append(separator)
            out.append("\n".join(lines).strip("\n"))
    return "".join(out).strip()


def sections(text: str, *, target_chars: int = 2000, max_chars: int = 6000) -> list[str]:
    """Cut converted text into documents of about ``target_chars``, at paragraph boundaries.

    Paragraphs are packed in order until a document reaches ``target_chars``; a paragraph longer
    than ``max_chars`` is cut at line boundaries.
    """
    docs: list[str] = []
    current: list[str] = []
    size = 0
    for part in (p.strip() for p in re.split(r"\n\s*\n", text)):
        while len(part) > max_chars:
            cut = part.rfind("\n", 0, max_chars)
            cut = cut if cut > max_chars // 4 else max_chars
            current.append(part[:cut].strip())
            docs.append("\n\n".join(current))
            current, size = [], 0
            part = part[cut:].strip()
        if part:
            current.append(part)
            size += len(part)
        if size >= target_chars:
            docs.append("\n\n".join(current))
            current, size = [], 0
    if current:
        docs.append("\n\n".join(current))
    return docs
