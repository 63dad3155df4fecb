"""The kit's HMAC helpers: signature, constant-time check, clock skew, replays."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from router.connector.signing import (
    BadSignature,
    Replays,
    check,
    check_timestamp,
    hmac_hex,
    same,
)
from router.errors import ConnectorError

KEY = b"0123456789abcdef-key"
NOW = 1_760_000_000


def test_hmac_is_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(KEY, f"{NOW}.".encode() + b"body", hashlib.sha256).hexdigest()
    assert hmac_hex(KEY, NOW, b"body") == expected


@pytest.mark.parametrize(
    ("given", "equal"),
    [("abc", True), (" abc\n", True), ("abd", False), ("ünicode", False), ("", False)],
)
def test_same(given: str, equal: bool) -> None:
    assert same("abc", given) is equal


def test_check_refuses_with_a_fixed_reason_and_is_not_retriable() -> None:
    with pytest.raises(BadSignature, match=r"^signature does not match$") as caught:
        check("abc", "abd")
    assert isinstance(caught.value, ConnectorError) and not caught.value.retriable


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (str(NOW - 301), "X-Ts is outside the allowed clock skew"),
        (str(NOW + 301), "X-Ts is outside the allowed clock skew"),
        ("yesterday", "X-Ts must be Unix seconds"),
        ("-5", "X-Ts must be Unix seconds"),
        ("١٧٦٠٠٠٠٠٠٠", "X-Ts must be Unix seconds"),  # digits, but not ASCII ones
        ("9" * 13, "X-Ts must be Unix seconds"),
    ],
)
def test_check_timestamp_refuses(value: str, reason: str) -> None:
    with pytest.raises(BadSignature, match=f"^{reason}$"):
        check_timestamp(value, now=NOW, max_skew=300, name="X-Ts")


def test_check_timestamp_within_the_skew() -> None:
    assert check_timestamp(f" {NOW - 300} ", now=NOW, max_skew=300) == NOW - 300


def test_a_replay_within_the_window_is_refused_and_an_old_one_forgotten() -> None:
    replays = Replays(window=300)
    replays.check("sig-1", now=NOW)
    with pytest.raises(BadSignature, match="replayed"):
        replays.check("sig-1", now=NOW + 300)
    replays.check("sig-1", now=NOW + 601)  # outside the window: its timestamp refuses it
    assert len(replays) == 1


def test_forget_lets_the_same_request_in_again() -> None:
    replays = Replays(window=300)
    replays.check("sig-1", now=NOW)
    replays.forget("sig-1")
    replays.check("sig-1", now=NOW + 1)


def test_memory_is_bounded() -> None:
    replays = Replays(window=300, capacity=3)
    for i in range(10):
        replays.check(f"sig-{i}", now=NOW)
    assert len(replays) == 3
    replays.check("sig-0", now=NOW)  # pushed out by newer ones
    with pytest.raises(BadSignature):
        replays.check("sig-9", now=NOW)
