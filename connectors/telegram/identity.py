"""Telegram identities: a user id, and the phone number of a contact the user shares.

Pure functions the connector's intake uses; the router only reads what they
give (`ConnectorSpec.normalize_identity`, `Envelope.identities`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

from router.connector.signing import hmac_hex, same
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


# --- `/start` deep links ------------------------------------------------------------------
#
# A link `https://t.me/<bot>?start=<payload>` (sent by email: "continue on Telegram")
# names one identity of a known customer. Telegram allows 64 characters of
# A-Z a-z 0-9 _ - in a payload, so it is compact: kind letter, the value in
# lowercase base32, the issue time (Unix seconds, base 36) and the first 10 bytes of
# the kit's HMAC-SHA256 over `<time>.<kind>:<value>`, separated by `_`.

DEEP_LINK_MAX_AGE = 30 * 24 * 3600  # seconds a "continue on Telegram" link stays good
MAX_PAYLOAD = 64
_KINDS = {"e": "email", "p": "phone"}
_LETTERS = {v: k for k, v in _KINDS.items()}
_SIG_BYTES = 10  # 80 bits: a forger gets one try per message


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _unb32(text: str) -> bytes:
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


def _sig(key: bytes, when: int, kind: str, value: str) -> str:
    digest = hmac_hex(key, when, f"{kind}:{value}".encode())
    return _b32(bytes.fromhex(digest)[:_SIG_BYTES])


def start_payload(key: bytes, identity: StatedIdentity, now: float) -> str:
    """The deep-link payload that links `identity` (email or phone); ValueError when the
    identity does not fit in Telegram's 64 characters."""
    letter = _LETTERS.get(identity.kind)
    if letter is None:
        raise ValueError(f"deep links carry email or phone identities, not {identity.kind!r}")
    when = int(now)
    payload = "_".join(
        [
            letter + _b32(identity.value.encode()),
            _base36(when),
            _sig(key, when, identity.kind, identity.value),
        ]
    )
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"the identity is too long for a deep link ({len(payload)} > 64)")
    return payload


def linked_by_start(key: bytes, payload: str, now: float) -> StatedIdentity | None:
    """The identity a `/start` payload names, when we signed it within the max age;
    None for anything else (a forged, altered, expired or foreign payload)."""
    parts = payload.strip().split("_")
    if len(payload) > MAX_PAYLOAD or len(parts) != 3 or not parts[0]:
        return None
    coded, when_text, sig = parts
    kind = _KINDS.get(coded[0])
    try:
        value = _unb32(coded[1:]).decode()
        when = int(when_text, 36)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if kind is None or not value or not 0 <= now - when <= DEEP_LINK_MAX_AGE:
        return None
    if not same(_sig(key, when, kind, value), sig):
        return None
    return StatedIdentity(kind=kind, value=value)


def deep_link_key(bot_token: str) -> bytes:
    """The key that signs a bot's deep links, derived from its token: whoever writes the
    links (our email templates) has the channel's config; nobody else can sign."""
    return hmac.new(bot_token.encode(), b"omnirouter telegram deep link", "sha256").digest()


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out
