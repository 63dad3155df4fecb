"""MIME → envelope on a corpus of realistic messages, the limits, the CLI, and fuzzing."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.email.config import EmailLimits
from connectors.email.errors import MalformedMessage
from connectors.email.inbound import Options, normalize
from router.blobs import BlobStore
from router.cli import main as cli
from router.envelope import decode, encode
from router.errors import ConnectorError, EnvelopeError

CORPUS = Path(__file__).parent / "corpus"
RU_SUBJECT = "Вопрос о заказе"  # noqa: RUF001  (Cyrillic on purpose)


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


# Each row: file, expected fields (dotted paths into the envelope's JSON form).
ROWS: list[tuple[str, dict[str, Any]]] = [
    (
        "plain_reply.eml",
        {
            "sender.address": "ana.perez@example.net",
            "sender.name": "Ana Pérez",
            "subject": "Re: Your order #10442 has shipped [#k7m2q9ta]",
            "text": "Hi, the parcel arrived but the blue mug is missing. Can you send it?"
            "\n\nThanks,\nAna",
            "thread_key": "<CA+root-1@mail.example.net>",
            "meta.thread_source": "references",
            "meta.in_reply_to": "<omni.8c1f0e5a@shop.example>",
            "meta.conversation_ref": "k7m2q9ta",
            "automated": None,
            "reply_context.to": ["ana.perez@example.net"],
            "sent_at": "2025-03-03T10:02:05+01:00",
        },
    ),
    (
        "alternative.eml",
        {
            "text": "I would like a refund for order 10500 — the item was damaged.\n\nBob",
            "thread_key": "<20250304133000.1234@example.org>",
            "meta.thread_source": "message_id",
        },
    ),
    (
        "nested_mixed.eml",
        {
            "text": "Please find the invoice attached, and a photo of the damage.",
            "meta.cc": ["accounting@example.com"],
            "attachments.names": ["damage.png", "invoice-10442.pdf", "résumé de commande.txt"],
        },
    ),
    (
        "latin1_rfc2047.eml",
        {
            "subject": "Bestätigung für Bestellung ÄÖÜ",
            "sender.name": "André Müller",
            "text": "Grüße, wo ist meine Bestellung? Schöne Grüße",
        },
    ),
    (
        "koi8r.eml",
        {"subject": RU_SUBJECT, "sender.name": "Петр Иванов", "text": "Где мой заказ?"},
    ),
    (
        "html_only.eml",
        {
            "text": "Hello,\n\nDoes the XL size run large?\n\n- Model: Parka\n\n- Colour: navy",
        },
    ),
    (
        "forwarded.eml",
        {
            "attachments.names": ["part-3.eml"],
            "automated": None,
        },
    ),
    (
        "dsn_bounce.eml",
        {
            "automated.auto": True,
            # Ours: the Message-ID names the envelope the router sent.
            "automated.bounce.envelope_id": "5d41402abc4b2a76b9719d911017c592",
            "automated.bounce.original_id": (
                "<omni.5d41402abc4b2a76b9719d911017c592@shop.example>"
            ),
        },
    ),
    (
        "auto_reply.eml",
        {
            "automated.auto": True,
            "automated.auto_reply": True,
            "meta.auto_submitted": "auto-replied",
            "thread_key": "<frank-root@example.com>",
        },
    ),
    ("newsletter.eml", {"automated.auto": True, "automated.auto_reply": False}),
    (
        "malformed_headers.eml",
        {"sender.address": "greg@example.com", "meta.message_id": None},
    ),
    ("charset_lie.eml", {"text": "注文が届きません"}),
]


def pick(obj: dict[str, Any], path: str) -> Any:
    if path == "attachments.names":
        return [a["name"] for a in obj["attachments"]]
    for part in path.split("."):
        obj = obj[part]
    return obj


@pytest.mark.parametrize(("name", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_corpus_message_normalizes(name: str, expected: dict[str, Any], blobs: BlobStore) -> None:
    env = normalize(load(name), "support-email", blobs)
    assert decode(encode(env)) == env  # a valid envelope that survives the bus
    data = orjson.loads(encode(env))
    for path, value in expected.items():
        assert pick(data, path) == value, path
    for att in env.attachments:  # every attachment is really in the blob store
        assert blobs.get(att.ref) and len(blobs.get(att.ref)) == att.size


def test_every_corpus_file_is_an_envelope_or_a_reason(blobs: BlobStore) -> None:
    for path in sorted(CORPUS.glob("*.eml")):
        try:
            env = normalize(path.read_bytes(), "c", blobs)
        except MalformedMessage as exc:
            assert str(exc) and not str(exc).startswith("internal"), path.name
        else:
            assert env.id and env.thread_key, path.name


def test_same_input_same_id_and_quoted_history_kept_for_transcript(blobs: BlobStore) -> None:
    a = normalize(load("plain_reply.eml"), "support-email", blobs)
    b = normalize(load("plain_reply.eml"), "support-email", blobs)
    assert a.id == b.id
    assert "your order #10442 has shipped" in a.meta["full_text"]
    assert "Ana Pérez · +34" in a.meta["full_text"]  # the signature too


def test_html_is_sanitized(blobs: BlobStore) -> None:
    env = normalize(load("alternative.eml"), "c", blobs)
    assert env.html is not None
    assert "<script" not in env.html and "onclick" not in env.html
    assert "<b>refund</b>" in env.html
    nested = normalize(load("nested_mixed.eml"), "c", blobs)
    assert nested.html is not None and 'src="cid:photo1@example.com"' in nested.html


def test_bounce_names_the_failed_recipient(blobs: BlobStore) -> None:
    env = normalize(load("dsn_bounce.eml"), "c", blobs)
    assert env.automated is not None and env.automated.bounce is not None
    [rcpt] = env.automated.bounce.recipients
    assert rcpt.address == "nobody@example.net"
    assert rcpt.action == "failed" and rcpt.status == "5.1.1"
    assert "null return path" in env.automated.reasons


def test_forwarded_message_is_kept_not_stripped(blobs: BlobStore) -> None:
    env = normalize(load("forwarded.eml"), "c", blobs)
    assert "We could not deliver parcel 99887" in env.text


def test_missing_message_id_falls_back_to_content_hash(blobs: BlobStore) -> None:
    env = normalize(load("malformed_headers.eml"), "c", blobs)
    assert env.meta["native_id"].startswith("sha256:")
    assert env.meta["charset_problems"]
    assert env.meta["defects"] >= 1


def test_no_sender_is_rejected_with_reason(blobs: BlobStore) -> None:
    with pytest.raises(MalformedMessage, match="no sender address"):
        normalize(load("no_sender.eml"), "c", blobs)


def test_subject_and_plus_address_tokens(blobs: BlobStore) -> None:
    raw = (
        b"From: ana@example.net\r\nTo: support+k7m2q9ta@shop.example\r\n"
        b"Subject: still broken\r\nMessage-ID: <new-client@x>\r\n\r\nhello\r\n"
    )
    env = normalize(raw, "c", blobs, Options(own_address="support@shop.example"))
    assert env.meta["conversation_ref"] == "k7m2q9ta"
    assert env.thread_key == "<new-client@x>"  # the intake resolves the token against the store
    assert "conversation_ref" not in normalize(raw, "c", blobs).meta  # not our address


# --- limits -----------------------------------------------------------------------------


def _with_attachment(size: int) -> bytes:
    payload = base64.encodebytes(b"\0" * size)
    return (
        b"From: a@example.com\r\nMessage-ID: <att@x>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        b"Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="big.zip"\r\n\r\n' + payload + b"\r\n--b--\r\n"
    )


def test_oversized_attachment_is_recorded_as_skipped(blobs: BlobStore) -> None:
    env = normalize(_with_attachment(5000), "c", blobs, Options(max_attachment_bytes=4096))
    assert env.attachments == []
    [skipped] = env.meta["skipped_parts"]
    assert skipped["name"] == "big.zip" and skipped["size"] == 5000
    assert "max_attachment_bytes" in skipped["reason"]


def test_message_and_header_size_limits(blobs: BlobStore) -> None:
    limits = EmailLimits(max_message_bytes=2048, max_header_bytes=1024)
    with pytest.raises(MalformedMessage, match="max_message_bytes"):
        normalize(_with_attachment(4000), "c", blobs, Options(limits=limits))
    huge_header = b"From: a@example.com\r\nX-Junk: " + b"x" * 1500 + b"\r\n\r\nbody\r\n"
    with pytest.raises(MalformedMessage, match="max_header_bytes"):
        normalize(huge_header, "c", blobs, Options(limits=limits))


def _nested(depth: int) -> bytes:
    head = b"From: a@example.com\r\nMessage-ID: <deep@x>\r\nMIME-Version: 1.0\r\n"
    body = b"Content-Type: text/plain\r\n\r\ndeepest\r\n"
    for i in range(depth):
        b = f"b{i}".encode()
        body = (
            b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n"
            + body + b"\r\n--" + b + b"--\r\n"
        )  # fmt: skip
    return head + body


def test_absurd_nesting_is_cut_with_a_reason(blobs: BlobStore) -> None:
    env = normalize(_nested(30), "c", blobs, Options(limits=EmailLimits(max_depth=10)))
    assert any("max_depth" in s["reason"] for s in env.meta["skipped_parts"])
    deeper = _nested(2000)  # deeper than the parser can go: rejected, not crashed
    try:
        normalize(deeper, "c", blobs)
    except MalformedMessage as exc:
        assert not str(exc).startswith("internal")


def test_part_count_limit(blobs: BlobStore) -> None:
    parts = b"".join(
        b"--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" for _ in range(15)
    )  # (more than twice max_parts boundary lines would be refused unparsed)
    raw = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    )
    env = normalize(raw, "c", blobs, Options(limits=EmailLimits(max_parts=10)))
    assert len(env.attachments) == 9  # the container counts as one part
    assert "max_parts" in env.meta["skipped_parts"][-1]["reason"]


# --- the CLI ------------------------------------------------------------------------------


def test_cli_prints_the_envelope(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["normalize", "--type", "email", str(CORPUS / "koi8r.eml")]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["subject"] == RU_SUBJECT and out["channel_type"] == "email"


def test_cli_exits_2_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["normalize", "--type", "email", str(CORPUS / "no_sender.eml")]) == 2
    err = capsys.readouterr().err
    assert "no sender address" in err and err.count("\n") == 1


# --- fuzzing ------------------------------------------------------------------------------


def _check_outcome(raw: bytes, blobs: BlobStore) -> None:
    try:
        env = normalize(raw, "fuzz", blobs)
    except (EnvelopeError, ConnectorError) as exc:
        assert not str(exc).startswith("internal error"), str(exc)
        return
    assert decode(encode(env)) == env


_SEEDS = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=4000))
def test_fuzz_random_bytes(raw: bytes, blobs: BlobStore) -> None:
    _check_outcome(raw, blobs)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.sampled_from(_SEEDS),
    cuts=st.lists(
        st.tuples(st.integers(0, 4000), st.integers(0, 64), st.binary(max_size=40)),
        max_size=6,
    ),
)
def test_fuzz_mutated_corpus(
    seed: bytes, cuts: list[tuple[int, int, bytes]], blobs: BlobStore
) -> None:
    raw = bytearray(seed)
    for pos, length, insert in cuts:
        pos %= len(raw) + 1
        raw[pos : pos + length] = insert
    _check_outcome(bytes(raw), blobs)


_HEADER_JUNK = st.sampled_from(
    [
        b"From: ", b"To: ", b"Subject: ", b"Date: ", b"Message-ID: ", b"References: ",
        b"Content-Type: multipart/mixed; boundary=", b"Content-Type: text/plain; charset=",
        b"Content-Transfer-Encoding: ", b"=?utf-8?b?", b"=?x?q?", b"?=", b"<", b">", b"@",
        b"\r\n", b"\r\n\r\n", b"--", b'"', b";", b"base64", b"quoted-printable", b"\xff",
        b"message/rfc822", b"multipart/report; report-type=delivery-status", b"=\r\n",
    ]
)  # fmt: skip


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tokens=st.lists(st.one_of(_HEADER_JUNK, st.binary(max_size=12)), max_size=80))
def test_fuzz_mime_shaped_junk(tokens: list[bytes], blobs: BlobStore) -> None:
    _check_outcome(b"From: a@example.com\r\n" + b"".join(tokens), blobs)


def test_undecodable_header_bytes_become_replacement_characters(blobs: BlobStore) -> None:
    # Found by the fuzzer: a raw 0x80 in an address header reached the envelope as a
    # lone surrogate, and the envelope could not be encoded for the bus.
    _check_outcome(
        b"From: a@example.com\r\nTo: Content-Type: multipart/mixed; boundary=@\x80", blobs
    )


def test_a_sender_address_over_the_envelopes_bound_is_refused_with_the_field(
    blobs: BlobStore,
) -> None:
    raw = (
        b"From: Eva <" + b"a" * 2500 + b"@x.test>\r\nMessage-ID: <m1@x>\r\n"
        b"Subject: hi\r\n\r\nhello\r\n"
    )
    with pytest.raises(MalformedMessage, match=r"does not fit an envelope: address: .*2000"):
        normalize(raw, "support", blobs)
