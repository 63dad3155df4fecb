"""Hostile mail is refused before parsing, with the limit in the reason; HTML depth is bounded.

Each row was measured to keep the standard library's parser (or html5ever,
or html.parser) busy for seconds to minutes; the CPU each one costs now is
printed by bench/normalize.py, not asserted here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.email.config import EmailLimits
from connectors.email.errors import MalformedMessage
from connectors.email.inbound import Options, normalize
from connectors.email.limits import check, html_depth
from connectors.email.text import html_to_text
from router.blobs import BlobStore
from router.cli import main as cli

HEAD = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: x\r\nMessage-ID: <h@example.com>\r\n"


def with_header(field: bytes) -> bytes:
    return HEAD + field + b"\r\n\r\nhello\r\n"


def in_a_part(field: bytes) -> bytes:
    return (
        HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nhi\r\n--b\r\n" + field + b"\r\n\r\ndata\r\n--b--\r\n"
    )


def nested(depth: int) -> bytes:
    body = b"Content-Type: text/plain\r\n\r\ndeepest\r\n"
    for i in range(depth):
        b = b"b%d" % i
        body = (
            b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n"
            + body + b"\r\n--" + b + b"--\r\n"
        )  # fmt: skip
    return HEAD + body


def parts(n: int) -> bytes:
    return (
        HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * n + b"--b--\r\n"
    )  # fmt: skip


def hostile_content_type(semicolons: int = 100_000) -> bytes:
    """The message from the issue: `Content-Type: text/plain;;;;...`."""
    return with_header(b"Content-Type: text/plain" + b";" * semicolons)


# Each row: what, the message, the limits, what the reason must say.
ROWS: list[tuple[str, Callable[[], bytes], EmailLimits, str]] = [
    (
        "100,000 semicolons in Content-Type",
        hostile_content_type,
        EmailLimits(),
        "Content-Type header field is 100011 bytes, more than limits.max_header_field_bytes",
    ),
    (
        "the same, under the field size limit",
        hostile_content_type,
        EmailLimits(max_header_field_bytes=1024 * 1024),
        "Content-Type header field has 100000 parameters (;), more than"
        " limits.max_header_params (50)",
    ),
    (
        "parameters in a part's Content-Disposition",
        lambda: in_a_part(b"Content-Disposition: attachment" + b"; a=b" * 51),
        EmailLimits(),
        "Content-Disposition header field has 51 parameters",
    ),
    (
        "addresses in Cc",
        lambda: with_header(b"Cc: " + b"a@example.com, " * 1001),
        EmailLimits(),
        "Cc header field has 1001 addresses (@), more than limits.max_addresses (1000)",
    ),
    (
        "encoded words in To",
        lambda: with_header(b"To: " + b"=?utf-8?q?a?= " * 1001 + b"<a@example.com>"),
        EmailLimits(),
        "To header field has 1001 encoded words (=?), more than limits.max_encoded_words",
    ),
    (
        "a very long header line",
        lambda: with_header(b"X-Long: " + b"a" * 70_000),
        EmailLimits(),
        "X-Long header field is 70001 bytes",
    ),
    (
        "a long folded address field in a part",
        lambda: in_a_part(b"Reply-To: x@example.com" + b"\r\n x" * 40_000),
        EmailLimits(),
        "Reply-To header field is 160015 bytes",
    ),
    (
        "many header fields",
        lambda: with_header(b"X-A: b\r\n" * 1000 + b"X-B: c"),
        EmailLimits(),
        "1005 header fields, more than limits.max_header_fields (1000)",
    ),
    (
        "deep MIME nesting",
        lambda: nested(101),
        EmailLimits(),
        "MIME parts nested more than 100 deep",
    ),
    (
        "many parts",
        lambda: parts(1001),
        EmailLimits(),
        "more than 1000 MIME boundary lines (twice limits.max_parts, 500)",
    ),
    (
        "the header block",
        lambda: with_header(b"X-A: " + b"b" * 60_000 + b"\r\nX-B: " + b"c" * 60_000),
        EmailLimits(max_header_bytes=100_000),
        "header block larger than limits.max_header_bytes (100000)",
    ),
]


@pytest.mark.parametrize(
    ("raw", "limits", "reason"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_hostile_mail_is_refused_before_parsing(
    raw: Callable[[], bytes], limits: EmailLimits, reason: str, tmp_path: Path
) -> None:
    message = raw()
    with pytest.raises(MalformedMessage) as refused:
        check(message, limits)
    assert reason in str(refused.value)
    with pytest.raises(MalformedMessage) as refused:  # and normalize says the same
        normalize(message, "c", BlobStore(tmp_path), Options(limits=limits))
    assert reason in str(refused.value)


def test_mail_at_the_limits_is_taken_in(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    env = normalize(with_header(b"Cc: " + b"a@example.com, " * 999), "c", blobs)
    assert len(env.meta["cc"]) == 999
    env = normalize(nested(30), "c", blobs)  # cut at max_depth, not refused
    assert any("max_depth" in s["reason"] for s in env.meta["skipped_parts"])
    env = normalize(parts(999), "c", blobs)  # cut at max_parts, not refused
    assert "max_parts" in env.meta["skipped_parts"][-1]["reason"]
    content_type = b'Content-Type: text/plain; charset="utf-8"; format=flowed; delsp=yes'
    assert normalize(with_header(content_type), "c", blobs).text == "hello"


def test_the_cli_refuses_the_hostile_header_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hostile.eml"
    path.write_bytes(hostile_content_type())
    assert cli(["normalize", "--type", "email", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Content-Type header field is 100011 bytes" in err and err.count("\n") == 1


# --- HTML -------------------------------------------------------------------------------


def html_mail(html: bytes, plain: bytes | None = None) -> bytes:
    if plain is None:
        return HEAD + b"Content-Type: text/html\r\n\r\n" + html + b"\r\n"
    return (
        HEAD + b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n--a\r\n'
        b"Content-Type: text/plain\r\n\r\n" + plain + b"\r\n--a\r\n"
        b"Content-Type: text/html\r\n\r\n" + html + b"\r\n--a--\r\n"
    )


def test_html_nested_too_deep_is_kept_as_an_attachment_not_as_the_body(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    deep = b"<div>" * 100_000 + b"hi"
    env = normalize(html_mail(deep, plain=b"the text"), "c", blobs)
    assert env.text == "the text" and env.html is None
    [skipped] = env.meta["skipped_parts"]
    assert "HTML nested deeper than limits.max_html_depth (500)" in skipped["reason"]
    [kept] = env.attachments
    assert kept.content_type == "text/html" and blobs.get(kept.ref).startswith(b"<div><div>")


def test_html_depth_counts_what_nests() -> None:
    assert html_depth("<div><p>a<p>b<br><img src=x><div/></div>") == (1, 0)
    assert html_depth("<div><div>", start=3) == (5, 5)
    assert html_depth("<table><tr><td>x</td></tr></table>")[0] == 1
    assert html_depth("</div></div><b>")[0] == 1


@pytest.mark.parametrize(
    "html",
    ["<!--" * 250_000, "<a" * 500_000, "<blockquote>" * 400 + "deep"],
    ids=["unclosed comments", "unclosed tags", "deep quotes"],
)
def test_html_to_text_reads_broken_markup(html: str) -> None:
    """html.parser alone took minutes on the first two (bench/normalize.py has the times)."""
    text = html_to_text(html)
    if html.endswith("deep"):  # quote marks stop at 20 levels (they cost lines x depth)
        assert "> " * 20 + "deep" in text.splitlines()
        assert max(map(len, text.splitlines())) == 44
    else:
        assert text == ""
