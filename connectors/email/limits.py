"""Limits checked before parsing: one linear scan of the raw bytes.

The standard library's email parser is quadratic (or close to it) on some
inputs we measured: `;` runs in Content-Type or Content-Disposition
(100,000 of them kept a parse busy for minutes), many addresses or RFC 2047
encoded words in one address field, deep MIME nesting (each line is checked
against every open boundary) and many parts. `check` refuses such a message
with `MalformedMessage` naming the limit, before the parser sees it; the
intake dead-letters it with that reason. Whatever slips past these counts is
stopped by the CPU budget the intake runs `normalize` under (`router.budget`).

The scan is deliberately cheap rather than exact: it counts in every line
that starts like a header field, wherever it is (a part's header, or a
message attached to this one, is parsed too), and a MIME nesting depth from
the order of the boundary lines. HTML is bounded separately (`html_depth`):
html5ever and `html.parser` slow down with the nesting of elements.
"""

from __future__ import annotations

import re

from connectors.email.config import EmailLimits
from connectors.email.errors import MalformedMessage

HARD_MAX_DEPTH = 100  # the most `max_depth` may be set to: deeper is refused unparsed

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.M)
# Searched for in the lower-cased message, each after a newline: a literal first
# character lets the regex engine skip ahead in C (re.M with re.I was 10 times slower).
_STRUCTURED_NAME = re.compile(
    rb"\n(content-type|content-disposition|from|sender|reply-to|to|cc|bcc|resent-[a-z]+"
    rb"|return-path|delivered-to|x-original-to|envelope-to|disposition-notification-to)"
    rb"[ \t]*:"
)
_VALUE = re.compile(rb"[^\n]*(?:\n[ \t][^\n]*)*")
_ADDRESS_FIELDS = frozenset(
    b"from sender reply-to to cc bcc return-path delivered-to x-original-to envelope-to"
    b" disposition-notification-to".split()
)
_BOUNDARY_NAME = re.compile(rb"boundary[ \t]*=")
_BOUNDARY_VALUE = re.compile(rb"""[ \t]*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""")
_DELIMITER = re.compile(rb"\n--([^\r\n]{1,210})")


def check(raw: bytes, limits: EmailLimits) -> None:
    """Raise `MalformedMessage` if `raw` is over one of `limits` (see the module docstring)."""
    if not raw.strip():
        raise MalformedMessage("empty message")
    if len(raw) > limits.max_message_bytes:
        raise MalformedMessage(
            f"message is {len(raw)} bytes, more than limits.max_message_bytes"
            f" ({limits.max_message_bytes})"
        )
    end = _HEADER_END.search(raw, 0, limits.max_header_bytes + 4)
    header_len = end.start() if end else len(raw)
    if header_len > limits.max_header_bytes:
        raise MalformedMessage(
            f"header block larger than limits.max_header_bytes ({limits.max_header_bytes})"
        )
    fields = 0
    for match in _FIELD.finditer(raw, 0, header_len):
        fields += 1
        _check_field(match.group(1), match.group(2), limits)
    if fields > limits.max_header_fields:
        raise MalformedMessage(
            f"{fields} header fields, more than limits.max_header_fields"
            f" ({limits.max_header_fields})"
        )
    lowered = raw.lower()  # the same length: ASCII letters only
    for match in _STRUCTURED_NAME.finditer(lowered, header_len):
        value = _VALUE.match(raw, match.end())
        assert value is not None  # it matches the empty string
        _check_field(raw[match.start(1) : match.end(1)], value.group(), limits)
    _check_structure(raw, lowered, limits)


def _check_field(name: bytes, value: bytes, limits: EmailLimits) -> None:
    what = name[:40].decode("ascii", "replace")
    if len(value) > limits.max_header_field_bytes:
        raise MalformedMessage(
            f"{what} header field is {len(value)} bytes, more than"
            f" limits.max_header_field_bytes ({limits.max_header_field_bytes})"
        )
    lower = name.lower()
    if lower in (b"content-type", b"content-disposition"):
        params = value.count(b";")
        if params > limits.max_header_params:
            raise MalformedMessage(
                f"{what} header field has {params} parameters (;), more than"
                f" limits.max_header_params ({limits.max_header_params})"
            )
        return
    if lower not in _ADDRESS_FIELDS and not lower.startswith(b"resent-"):
        return  # unstructured: decoded in linear time
    addresses = value.count(b"@")
    if addresses > limits.max_addresses:
        raise MalformedMessage(
            f"{what} header field has {addresses} addresses (@), more than"
            f" limits.max_addresses ({limits.max_addresses})"
        )
    words = value.count(b"=?")
    if words > limits.max_encoded_words:
        raise MalformedMessage(
            f"{what} header field has {words} encoded words (=?), more than"
            f" limits.max_encoded_words ({limits.max_encoded_words})"
        )


def _check_structure(raw: bytes, lowered: bytes, limits: EmailLimits) -> None:
    """Boundary lines (an upper bound on the parts) and the nesting their order shows."""
    boundaries = set()
    for match in _BOUNDARY_NAME.finditer(lowered):
        value = _BOUNDARY_VALUE.match(raw, match.end())
        if value is not None:
            boundaries.add(value.group(1) or value.group(2))
    if not boundaries:
        return
    most_lines = 2 * limits.max_parts
    lines = 0
    open_at: dict[bytes, int] = {}  # boundary -> its depth, for the boundaries still open
    stack: list[bytes] = []
    deepest = 0
    for match in _DELIMITER.finditer(raw):
        line = match.group(1).rstrip(b" \t")
        closing = line.endswith(b"--") and line[:-2] in boundaries
        boundary = line[:-2] if closing else line
        if boundary not in boundaries:
            continue
        lines += 1
        if lines > most_lines:
            raise MalformedMessage(
                f"more than {most_lines} MIME boundary lines (twice limits.max_parts,"
                f" {limits.max_parts}): too many parts to parse"
            )
        if boundary in open_at:  # a sibling or a close: everything opened inside ends
            del stack[open_at[boundary] + 1 :]
            open_at = {b: i for i, b in enumerate(stack)}
        else:
            open_at[boundary] = len(stack)
            stack.append(boundary)
            deepest = max(deepest, len(stack))
            if deepest > HARD_MAX_DEPTH:
                raise MalformedMessage(
                    f"MIME parts nested more than {HARD_MAX_DEPTH} deep (limits.max_depth"
                    f" cuts at {limits.max_depth}; this deep is refused unparsed)"
                )
        if closing:
            del stack[open_at[boundary] :]
            open_at = {b: i for i, b in enumerate(stack)}


_TAG = re.compile(rb"<(/?)([a-zA-Z][a-zA-Z0-9]{0,20})[^<>]*?(/?)>")
# Elements that hold nothing, or that the next sibling ends without an end tag.
_FLAT = frozenset(
    b"area base br col embed hr img input link meta param source track wbr"
    b" p li dt dd tr td th option tbody thead tfoot".split()
)


def html_depth(html: str, start: int = 0) -> tuple[int, int]:
    """(deepest, at the end) element nesting of `html`, from `start` open elements.

    An estimate from start and end tags (a linear scan): elements that end
    implicitly are not counted, and an end tag closes one level.
    """
    depth = deepest = start
    for closing, name, selfclosing in _TAG.findall(html.encode("utf-8", "surrogatepass")):
        if name.lower() in _FLAT or selfclosing:
            continue
        if closing:
            depth = max(0, depth - 1)
        else:
            depth += 1
            deepest = max(deepest, depth)
    return deepest, depth
