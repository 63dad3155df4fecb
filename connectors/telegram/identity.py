"""Telegram identities: a user id, and the phone number of a contact the user shares.

Pure functions the connector's intake uses; the router only reads what they
give (`ConnectorSpec.normalize_identity`, `Envelope.identities`).
"""

from __future__ import annotations

from collections.abc import Mapping

from router.envelope import StatedIdentity

MAX_USER_ID_DIGITS = 20


def user_id(value: str) -> str:
    """A Telegram user id as a decimal string without leading zeros; ValueError if not one."""
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > MAX_USER_ID_DIGITS:
        raise ValueError(f"{value!r} is not a numeric user id")
    number = int(text)
    if number <= 0:
        raise ValueError(f"{value!r} is not a positive user id")
    return str(number)


def shared_contact(sender_id: str, contact: Mapping[str, object]) -> list[StatedIdentity]:
    """The phone number of a shared contact (`message.contact`), when it is the sender's own.

    A contact counts only when its `user_id` is the sender's: a contact of someone
    else states nothing about the sender. Telegram writes the number in
    international form, often without the leading `+`. The router normalizes
    the number and drops it if it is not one.
    """
    shared = contact.get("user_id")
    if isinstance(shared, bool) or not isinstance(shared, int | str):
        return []
    try:
        if user_id(str(shared)) != user_id(sender_id):
            return []
    except ValueError:
        return []
    number = contact.get("phone_number")
    if not isinstance(number, str) or not number.strip():
        return []
    number = number.strip()
    if not number.startswith("+"):
        number = "+" + number
    if len(number) > 64:
        return []
    return [StatedIdentity(kind="phone", value=number)]
