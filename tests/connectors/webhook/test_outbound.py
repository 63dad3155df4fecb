"""The signature scheme: what verifies, and every way a request is refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from connectors.webhook.errors import BadSignature
from connectors.webhook.outbound import signature, verify

KEY = b"0123456789abcdef-key"
BODY = b'{"id":"e1","agent":"ana","type":"reply","text":"hi","token":"c.x"}'
NOW = 1_760_000_000


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(KEY, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(KEY, NOW, BODY) == f"v1={expected}"


def test_good_signature_verifies() -> None:
    verify(KEY, str(NOW), signature(KEY, NOW, BODY), BODY, now=NOW + 30, max_skew=300)


@pytest.mark.parametrize(
    ("timestamp", "signed", "body", "now", "reason"),
    [
        (str(NOW), signature(b"another-key-entirely", NOW, BODY), BODY, NOW, "does not match"),
        (str(NOW), signature(KEY, NOW, BODY), BODY.replace(b"hi", b"ho"), NOW, "does not match"),
        # the timestamp is part of what is signed: moving it breaks the signature
        (str(NOW + 1), signature(KEY, NOW, BODY), BODY, NOW, "does not match"),
        (str(NOW), "v1=" + "0" * 64, BODY, NOW, "does not match"),
        (str(NOW), signature(KEY, NOW, BODY)[3:], BODY, NOW, "does not match"),  # no v1=
        (str(NOW), "v1=ünicode", BODY, NOW, "does not match"),
        (str(NOW - 301), signature(KEY, NOW - 301, BODY), BODY, NOW, "clock skew"),
        (str(NOW + 301), signature(KEY, NOW + 301, BODY), BODY, NOW, "clock skew"),
        ("yesterday", signature(KEY, NOW, BODY), BODY, NOW, "Unix seconds"),
        ("-5", signature(KEY, NOW, BODY), BODY, NOW, "Unix seconds"),
        (None, signature(KEY, NOW, BODY), BODY, NOW, "missing X-Omnirouter-Timestamp"),
        (str(NOW), None, BODY, NOW, "missing X-Omnirouter-Signature"),
        (str(NOW), "", BODY, NOW, "missing X-Omnirouter-Signature"),
    ],
)
def test_refused(
    timestamp: str | None, signed: str | None, body: bytes, now: int, reason: str
) -> None:
    with pytest.raises(BadSignature, match=reason):
        verify(KEY, timestamp, signed, body, now=now, max_skew=300)
