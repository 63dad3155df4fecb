"""HMAC signing and verification for connectors that take signed requests.

The common scheme (Slack, Stripe, our webhook): HMAC-SHA256 over
`<timestamp>.<body>`. The timestamp inside the signed bytes makes an old
request worthless once it is outside the allowed clock skew; every
comparison is constant-time. Within the skew a captured request can be sent
again: a channel whose inputs carry no id of their own (so the router cannot
drop the repeat) refuses replays with `Replays`.

Refusal reasons are our own fixed texts: an intake may answer and log them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict

from router.errors import ConnectorError

MAX_TIMESTAMP_DIGITS = 12


class BadSignature(ConnectorError):
    """A request is not signed with the key, not recently, or was seen already (401)."""

    retriable = False


def hmac_hex(key: bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.<body>`."""
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def same(expected: str, given: str) -> bool:
    """Constant-time equality; `given` may be anything a caller sent."""
    # Both as bytes: compare_digest refuses non-ASCII str, and a forged header may be.
    return hmac.compare_digest(expected.encode(), given.strip().encode("utf-8", "replace"))


def check(expected: str, given: str) -> None:
    """Raise `BadSignature` unless `given` is `expected`."""
    if not same(expected, given):
        raise BadSignature("signature does not match")


def check_timestamp(value: str, *, now: float, max_skew: float, name: str = "timestamp") -> int:
    """The Unix seconds in `value` (named `name` in the reasons), if within `max_skew` of `now`."""
    stripped = value.strip()
    if not stripped.isascii() or not stripped.isdigit() or len(stripped) > MAX_TIMESTAMP_DIGITS:
        raise BadSignature(f"{name} must be Unix seconds")
    when = int(stripped)
    if abs(now - when) > max_skew:
        raise BadSignature(f"{name} is outside the allowed clock skew")
    return when


class Replays:
    """A bounded memory of the signatures (or request ids) seen in the last `window` seconds.

    Set `window` to the allowed clock skew: older requests are refused by their
    timestamp anyway. When more than `capacity` are remembered the oldest are
    forgotten first (a flood needs validly signed requests, so only the key's
    holder can push one out). An intake calls `forget` when it did not take
    the request (answered 503), so the sender may send the very same bytes again.
    """

    def __init__(self, window: float, capacity: int = 10_000) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, key: str, *, now: float) -> None:
        """Remember `key`; raise `BadSignature` if it was seen within the window."""
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self.window and len(self._seen) < self.capacity:
                break
            del self._seen[oldest]
        if key in self._seen:
            raise BadSignature("request already received (replayed)")
        self._seen[key] = now

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)
