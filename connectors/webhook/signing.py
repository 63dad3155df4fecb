"""The signature scheme, both ways: HMAC-SHA256 over the timestamp and the exact body.

    X-Omnirouter-Timestamp: <unix seconds>
    X-Omnirouter-Signature: v1=<hex of HMAC-SHA256(key, b"<timestamp>." + body)>

The timestamp inside the signed bytes makes an old request worthless once it
is outside the allowed clock skew; the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac

from connectors.webhook.errors import BadSignature

ID_HEADER = "X-Omnirouter-Id"
TIMESTAMP_HEADER = "X-Omnirouter-Timestamp"
SIGNATURE_HEADER = "X-Omnirouter-Signature"
SCHEME = "v1"


def signature(key: bytes, timestamp: int, body: bytes) -> str:
    """The header value: `v1=<hex>`."""
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(
    key: bytes,
    timestamp: str | None,
    signed: str | None,
    body: bytes,
    *,
    now: float,
    max_skew: float,
) -> None:
    """Raise `BadSignature` (with a short reason) unless the request is signed with `key`
    at a time within `max_skew` seconds of `now`."""
    if not timestamp:
        raise BadSignature(f"missing {TIMESTAMP_HEADER}")
    if not signed:
        raise BadSignature(f"missing {SIGNATURE_HEADER}")
    stripped = timestamp.strip()
    if not stripped.isascii() or not stripped.isdigit() or len(stripped) > 12:
        raise BadSignature(f"{TIMESTAMP_HEADER} must be Unix seconds")
    when = int(stripped)
    if abs(now - when) > max_skew:
        raise BadSignature(f"{TIMESTAMP_HEADER} is outside the allowed clock skew")
    expected = signature(key, when, body)
    # Both sides as bytes: compare_digest refuses non-ASCII str, and a forged header may be.
    if not hmac.compare_digest(expected.encode(), signed.strip().encode("utf-8", "replace")):
        raise BadSignature("signature does not match")
