from __future__ import annotations

import pytest

from connectors.telegram.identity import shared_contact, user_id
from router.envelope import StatedIdentity
from router.routing.identity import IdentityError, normalize_identity


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        # the customer shares their own contact (Telegram omits the "+")
        ({"phone_number": "34600112233", "user_id": 42}, ["+34600112233"]),
        ({"phone_number": "+34600112233", "user_id": "42"}, ["+34600112233"]),
        # someone else's contact: states nothing about the sender
        ({"phone_number": "34600112233", "user_id": 43}, []),
        ({"phone_number": "34600112233"}, []),
        ({"phone_number": "34600112233", "user_id": True}, []),
        ({"phone_number": 34600112233, "user_id": 42}, []),
        ({"phone_number": "  ", "user_id": 42}, []),
    ],
)
def test_shared_contact_counts_only_when_it_is_the_senders(
    contact: dict[str, object], expected: list[str]
) -> None:
    found = shared_contact("42", contact)
    assert found == [StatedIdentity(kind="phone", value=v) for v in expected]


@pytest.mark.parametrize(("value", "expected"), [("123456789", "123456789"), (" 000123 ", "123")])
def test_user_id(value: str, expected: str) -> None:
    assert user_id(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [("-100123", "numeric user id"), ("abc", "numeric user id"), ("0", "positive")],
)
def test_user_id_rejects(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        user_id(value)


def test_the_router_normalizes_telegram_ids_as_the_connector_declares() -> None:
    assert normalize_identity("telegram", " 0042 ").value == "42"
    with pytest.raises(IdentityError, match="numeric user id"):
        normalize_identity("telegram", "abc")
