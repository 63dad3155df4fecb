from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.envelope import Envelope, Sender, StatedIdentity
from router.errors import EnvelopeError
from router.routing.identity import (
    Identity,
    IdentityError,
    normalize_identity,
    sender_identity,
    stated_identities,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def envelope(channel_type: str, address: str, **kw: Any) -> Envelope:
    return Envelope(
        id="e1",
        kind=kw.pop("kind", "message"),
        direction="in",
        channel=f"my-{channel_type}",
        channel_type=channel_type,
        thread_key="t1",
        sender=Sender(address=address, role=kw.pop("role", "customer")),
        received_at=T0,
        text="hello",
        meta=kw.pop("meta", {}),
        identities=kw.pop("identities", []),
    )


@pytest.mark.parametrize(
    ("kind", "value", "region", "expected"),
    [
        ("email", "Ana.Perez@Example.COM", None, "ana.perez@example.com"),
        ("email", "  ana+orders@example.com \n", None, "ana+orders@example.com"),
        ("email", "Ana Pérez <Ana@Example.com>", None, "ana@example.com"),
        ("phone", "+34 600 11 22 33", None, "+34600112233"),
        ("phone", "600 11 22 33", "ES", "+34600112233"),
        ("phone", "600112233", "es", "+34600112233"),
        ("phone", "0034 600112233", "ES", "+34600112233"),
        ("phone", "(202) 555-0143", "US", "+12025550143"),
        ("phone", "+44 20 7946 0958", "ES", "+442079460958"),
        ("telegram", "123456789", None, "123456789"),
        ("telegram", " 000123 ", None, "123"),
        ("webchat", "  visitor-7f3a ", None, "visitor-7f3a"),
        ("whatsapp", " +34 600 ", None, "+34 600"),
    ],
)
def test_normalize(kind: str, value: str, region: str | None, expected: str) -> None:
    assert normalize_identity(kind, value, default_region=region) == Identity(kind, expected)


@pytest.mark.parametrize(
    ("kind", "value", "region", "reason"),
    [
        ("email", "", None, "empty"),
        ("email", "ana", None, "not an email"),
        ("email", "ana@localhost", None, "not an email"),
        ("email", "a@@example.com", None, "not an email"),
        ("email", "ana perez@example.com", None, "not an email"),
        ("email", "ana@example..com", None, "not an email"),
        ("phone", "600112233", None, "no default region"),
        ("phone", "+34 12", None, "not a valid phone"),
        ("phone", "call me", "ES", "cannot read"),
        ("telegram", "-100123", None, "numeric user id"),
        ("telegram", "abc", None, "numeric user id"),
        ("telegram", "0", None, "positive"),
        ("webchat", "   ", None, "empty"),
        ("webchat", "a\x00b", None, "control"),
    ],
)
def test_normalize_rejects(kind: str, value: str, region: str | None, reason: str) -> None:
    with pytest.raises(IdentityError, match=reason) as info:
        normalize_identity(kind, value, default_region=region)
    assert isinstance(info.value, EnvelopeError)
    assert not info.value.retriable


@given(st.emails())
def test_email_idempotent(value: str) -> None:
    once = normalize_identity("email", value)
    assert normalize_identity("email", once.value) == once
    assert normalize_identity("email", value.upper()) == once


@given(st.from_regex(r"6[0-9]{8}", fullmatch=True), st.sampled_from(["", " ", "-"]))
def test_phone_idempotent(digits: str, sep: str) -> None:
    written = sep.join([digits[:3], digits[3:6], digits[6:]])
    once = normalize_identity("phone", written, default_region="ES")
    assert once.value == "+34" + digits
    assert normalize_identity("phone", once.value) == once
    assert normalize_identity("phone", once.value, default_region="US") == once


@given(st.sampled_from(["telegram", "webchat", "other"]), st.text(min_size=1, max_size=40))
def test_other_kinds_idempotent(kind: str, value: str) -> None:
    try:
        once = normalize_identity(kind, value)
    except IdentityError:
        return
    assert normalize_identity(kind, once.value) == once


@pytest.mark.parametrize(
    ("channel_type", "address", "expected"),
    [
        ("email", "Ana@Example.com", Identity("email", "ana@example.com")),
        ("phone", "+34600112233", Identity("phone", "+34600112233")),
        ("telegram", "42", Identity("telegram", "42")),
        ("webchat", "v-1", Identity("webchat", "v-1")),
    ],
)
def test_sender_identity(channel_type: str, address: str, expected: Identity) -> None:
    assert sender_identity(envelope(channel_type, address)) == expected


def test_sender_identity_national_phone_needs_region() -> None:
    env = envelope("phone", "600112233")
    with pytest.raises(IdentityError):
        sender_identity(env)
    assert sender_identity(env, default_region="ES") == Identity("phone", "+34600112233")


@pytest.mark.parametrize(
    ("stated", "expected"),
    [
        ([("phone", "+34600112233")], ["phone:+34600112233"]),
        (
            [("email", "Ana@Example.com"), ("phone", "+34 600 11 22 33")],
            ["email:ana@example.com", "phone:+34600112233"],
        ),
        # invalid values are ignored, never errors
        ([("email", "not an email"), ("phone", "nonsense")], []),
        # duplicates once
        ([("phone", "+34600112233"), ("phone", "+34 600 112 233")], ["phone:+34600112233"]),
        ([], []),
    ],
)
def test_stated_identities(stated: list[tuple[str, str]], expected: list[str]) -> None:
    parts = [StatedIdentity(kind=k, value=v) for k, v in stated]
    found = stated_identities(envelope("telegram", "42", identities=parts))
    assert [str(i) for i in found] == expected


def test_stated_identities_with_region() -> None:
    parts = [StatedIdentity(kind="phone", value="600 11 22 33")]
    env = envelope("webchat", "v-1", identities=parts)
    assert stated_identities(env) == []
    assert stated_identities(env, default_region="ES") == [Identity("phone", "+34600112233")]


def test_a_channel_kind_normalizer_comes_from_its_connector() -> None:
    def upper(value: str) -> str:
        if not value.isalpha():
            raise ValueError("letters only")
        return value.upper()

    kinds = {"shout": upper}
    assert normalize_identity("shout", " abc ", normalizers=kinds) == Identity("shout", "ABC")
    with pytest.raises(IdentityError, match="shout identity: letters only"):
        normalize_identity("shout", "a1", normalizers=kinds)
    env = envelope("loud", "abc")
    assert sender_identity(env, kind="shout", normalizers=kinds) == Identity("shout", "ABC")


def test_stated_identities_leave_out_the_sender_and_agents() -> None:
    own = [StatedIdentity(kind="email", value="ANA@example.com")]
    env = envelope("email", "ana@example.com", identities=own)
    assert stated_identities(env) == []
    other = [StatedIdentity(kind="email", value="x@example.com")]
    agent = envelope("webchat", "v-1", role="agent", identities=other)
    assert stated_identities(agent) == []
