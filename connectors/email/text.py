"""Body text: HTML to plain text, HTML sanitizing, quoted history and signatures stripped.

`strip_quoted` keeps what the customer wrote this time: it cuts at the first
reply header (`On ... wrote:` and its translations, Outlook's `From:/Sent:`
block or `-----Original Message-----`), at a signature delimiter (`-- `), at
"Sent from my phone" lines, and drops a trailing block of `>` lines. It never
cuts a forwarded message (the customer forwards it for us to read), and if
cutting would leave nothing, the text is kept whole.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

_REPLY_HEADER = re.compile(
    r"^\s*(on\b.{0,300}\bwrote|le\b.{0,300}\ba [ée]crit|el\b.{0,300}\bescribi[oó]|"
    r"am\b.{0,300}\bschrieb|il\b.{0,300}\bha scritto|op\b.{0,300}\bschreef|"
    r"em\b.{0,300}\bescreveu|w dniu\b.{0,300}\bnapisa[lł])\s*(\S+\s*)?:\s*$",
    re.I,
)
_REPLY_HEADER_START = re.compile(r"^\s*(on|le|el|am|il|op|em)\s.{0,200}$", re.I)
_REPLY_HEADER_END = re.compile(
    r"^.{0,200}\b(wrote|a [ée]crit|escribi[oó]|schrieb|ha scritto|schreef|escreveu)\s*:\s*$",
    re.I,
)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(original message|mensaje original|message d'origine|"
    r"urspr[üu]ngliche nachricht|messaggio originale)\s*-{2,}\s*$",
    re.I,
)
_OUTLOOK_FROM = re.compile(r"^\s*\*?(from|de|von|da|van)\s*:\*?\s+\S", re.I)
_OUTLOOK_NEXT = re.compile(
    r"^\s*\*?(sent|date|to|subject|enviado|gesendet|envoy[ée]|datum|fecha|an|objet|asunto)"
    r"\s*:",
    re.I,
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_SIGNATURE = re.compile(r"^-- ?$")
_MOBILE = re.compile(
    r"^\s*(sent from my \w+|get outlook for (ios|android)|enviado desde mi \w+|"
    r"von meinem \w+ gesendet|envoy[ée] de mon \w+)",
    re.I,
)
_FORWARD = re.compile(
    r"^\s*(-{2,}\s*(forwarded message|mensaje reenviado|message transf[ée]r[ée]|"
    r"weitergeleitete nachricht|messaggio inoltrato)\s*-{2,}|begin forwarded message:)",
    re.I,
)


def strip_quoted(text: str, *, keep_whole: bool = True) -> str:
    """The new part of a reply: quoted history and signature removed.

    When that leaves nothing, the whole text is returned (`keep_whole`, for a
    customer's mail: better too much than nothing) or "" (for an agent's reply,
    which must never send the quoted notification to the customer).
    """
    lines = text.splitlines()
    cut = len(lines)
    forwarded = False
    for i, line in enumerate(lines):
        if _FORWARD.match(line):
            forwarded = True
            break  # everything after a forward marker is content, not history
        if (
            _SIGNATURE.match(line)
            or _ORIGINAL.match(line)
            or _MOBILE.match(line)
            or _REPLY_HEADER.match(line)
        ):
            cut = i
            break
        if (
            _REPLY_HEADER_START.match(line)
            and i + 1 < len(lines)
            and _REPLY_HEADER_END.match(lines[i + 1])
        ):
            cut = i
            break
        if _UNDERSCORES.match(line) and _next_is_outlook_header(lines, i + 1):
            cut = i
            break
        if (
            _OUTLOOK_FROM.match(line)
            and (i == 0 or not lines[i - 1].strip())
            and _next_is_outlook_header(lines, i + 1)
        ):
            cut = i
            break
    kept = lines[:cut]
    # A trailing block of quoted lines (top-posting with "> " history, no header).
    end = len(kept)
    while end > 0 and (not kept[end - 1].strip() or kept[end - 1].lstrip().startswith(">")):
        end -= 1
    if not forwarded and any(line.lstrip().startswith(">") for line in kept[end:]):
        kept = kept[:end]
    result = "\n".join(kept).strip()
    return result or (text.strip() if keep_whole else "")


def _next_is_outlook_header(lines: list[str], start: int) -> bool:
    return any(_OUTLOOK_NEXT.match(line) for line in lines[start : start + 4])


_BLOCK = {
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
}  # fmt: skip
_SKIP = {"script", "style", "head", "title", "template", "noscript"}
_SHAPING = _BLOCK | {"td", "th"}
MAX_QUOTE_MARKS = 20  # "> " per line: deeper quotes look the same (and cost no more)
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.quote = 0

    def _newline(self) -> None:
        self.out.append("\n" + "> " * min(self.quote, MAX_QUOTE_MARKS))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif tag == "blockquote":
            self.quote += 1
            self._newline()
        elif tag == "pre":
            self.pre += 1
            self._newline()
        elif tag in _BLOCK:
            self._newline()
            if tag == "li":
                self.out.append("- ")
        elif tag in ("td", "th"):
            self.out.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "blockquote":
            self.quote = max(0, self.quote - 1)
            self._newline()
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self._newline()
        elif tag in _BLOCK:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            self.out.append(data.replace("\n", "\n" + "> " * min(self.quote, MAX_QUOTE_MARKS)))
        else:
            self.out.append(_SPACES.sub(" ", data))


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body (links' text kept, scripts and styles dropped).

    `html.parser` is quadratic on some broken markup (thousands of unclosed
    `<!--` or `<a<a<a`), so it reads html5ever's re-serialization (nh3, linear
    in Rust) of only the elements that shape the text: well-formed, and cheap
    to read. The nesting html5ever slows down with is bounded by the caller
    (`limits.html_depth`).
    """
    parser = _TextExtractor()
    try:
        parser.feed(nh3.clean(html, tags=_SHAPING, attributes={}, clean_content_tags=_SKIP))
        parser.close()
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup
        pass
    lines = [line.rstrip() for line in "".join(parser.out).split("\n")]
    text = "\n".join(line if line.strip(" >") else line.strip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_URL_SCHEMES = nh3.ALLOWED_URL_SCHEMES | {"cid"}  # inline images point at their part


def sanitize_html(html: str) -> str:
    """HTML safe to show an agent: no scripts, event handlers or forms (nh3)."""
    return nh3.clean(html, url_schemes=_URL_SCHEMES)
