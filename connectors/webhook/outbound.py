"""The webhook's signature scheme, both ways: HMAC-SHA256 over the timestamp and the exact body.

    X-Omnirouter-Timestamp: <unix seconds>
    X-Omnirouter-Signature: v1=<hex of HMAC-SHA256(key, b"<timestamp>." + body)>

The helpers (constant-time compare, clock skew) are `router.connector.signing`'s.
A replayed event needs no refusal here: it carries its event id, so it gives
the same envelope id and the router drops the repeat.
"""

from __future__ import annotations

from router.connector import signing
from router.connector.signing import BadSignature

ID_HEADER = "X-Omnirouter-Id"
TIMESTAMP_HEADER = "X-Omnirouter-Timestamp"
SIGNATURE_HEADER = "X-Omnirouter-Signature"
SCHEME = "v1"


def signature(key: bytes, timestamp: int, body: bytes) -> str:
    """The header value: `v1=<hex>`."""
    return f"{SCHEME}={signing.hmac_hex(key, timestamp, body)}"


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
    when = signing.check_timestamp(timestamp, now=now, max_skew=max_skew, name=TIMESTAMP_HEADER)
    signing.check(signature(key, when, body), signed)
