"""Customer identities and their normalization.

An identity is what a channel knows a customer by: an email address, an E.164
phone number, a Telegram user id, a web chat visitor id (other connector types
pass through with `kind` = the channel type). Identities are normalized so the
same person written two ways is one identity: `Ana.Perez@Example.COM` and
`ana.perez@example.com`, `600 11 22 33` (region ES) and `+34600112233`.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import phonenumbers

from router.envelope import Envelope
from router.errors import EnvelopeError

EMAIL = "email"
PHONE = "phone"
TELEGRAM = "telegram"
WEBCHAT = "webchat"

_MAX_LENGTH = 320  # the longest valid email address; more than any id we take


class IdentityError(EnvelopeError):
    """A sender or stated identity cannot be normalized (the record is bad)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """One normalized identity: `kind` is email, phone, telegram, webchat or a channel type."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def normalize_identity(kind: str, value: str, *, default_region: str | None = None) -> Identity:
    """Normalize `value` as an identity of `kind`; raise `IdentityError` if it is not one.

    - email: stripped and case-folded (plus-addressing kept); `Name <addr>` is
      accepted and reduced to the address.
    - phone: E.164 (`+34600112233`); a national number needs `default_region`
      (ISO 3166 code such as `ES`); an invalid number is an error.
    - telegram: the user id as a decimal string without leading zeros.
    - webchat and any other kind: the value stripped, never empty.
    """
    if not isinstance(value, str):
        raise IdentityError(f"{kind} identity: expected a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise IdentityError(f"{kind} identity: empty")
    if len(text) > _MAX_LENGTH:
        raise IdentityError(f"{kind} identity: longer than {_MAX_LENGTH} characters")
    if kind == EMAIL:
        return Identity(EMAIL, _email(text))
    if kind == PHONE:
        return Identity(PHONE, _phone(text, default_region))
    if kind == TELEGRAM:
        return Identity(TELEGRAM, _telegram(text))
    if any(not c.isprintable() for c in text):
        raise IdentityError(f"{kind} identity: contains control characters")
    return Identity(kind, text)


def _email(text: str) -> str:
    if "<" in text:
        _, addr = parseaddr(text)
        if not addr:
            raise IdentityError(f"email identity: cannot read an address in {text!r}")
        text = addr.strip()
    address = text.casefold()
    local, at, domain = address.rpartition("@")
    if (
        not at
        or not local
        or "@" in local
        or any(c.isspace() or c in '<>(),;:"[]' for c in address)
        or "." not in domain.strip(".")
        or domain.startswith(".")
        or domain.endswith(".")
        or ".." in domain
    ):
        raise IdentityError(f"email identity: {text!r} is not an email address")
    return address


def _phone(text: str, default_region: str | None) -> str:
    region = default_region.upper() if default_region else None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if region or text.startswith("+") else " (no country code and no default region)"
        raise IdentityError(f"phone identity: cannot read {text!r}: {exc}{hint}") from exc
    if not phonenumbers.is_valid_number(number):
        raise IdentityError(f"phone identity: {text!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _telegram(text: str) -> str:
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise IdentityError(f"telegram identity: {text!r} is not a numeric user id")
    user_id = int(text)
    if user_id <= 0:
        raise IdentityError(f"telegram identity: {text!r} is not a positive user id")
    return str(user_id)


def sender_identity(envelope: Envelope, *, default_region: str | None = None) -> Identity:
    """The identity of the envelope's sender, by the envelope's channel type.

    email: the sender address; phone: the caller's number (`sender.address`);
    telegram: the user id (`sender.address`); webchat: the visitor id
    (`sender.address`); any other type: `sender.address` as given.
    """
    return normalize_identity(
        envelope.channel_type, envelope.sender.address, default_region=default_region
    )


def stated_identities(envelope: Envelope, *, default_region: str | None = None) -> list[Identity]:
    """Identities the customer stated themselves, which may be linked automatically.

    Read from the envelope's `meta` (only on customer messages):

    - `meta["contact"]` = `{"phone_number": str, "user_id": int | str}`: a
      Telegram contact share. It counts only when `user_id` is the sender's
      own Telegram user id, i.e. the customer shared their OWN contact; a
      shared contact of someone else states nothing about the sender. Telegram
      sends the number in international form, often without the leading `+`.
    - `meta["form"]` = `{"email": str, "phone": str}` (either key optional): a
      chat pre-form filled by the customer.

    Invalid or missing values are ignored, never errors. The sender's own
    identity and duplicates are left out.
    """
    if envelope.sender.role != "customer" or envelope.kind not in ("message", "call"):
        return []
    meta = envelope.meta
    found: list[Identity] = []
    contact = meta.get("contact")
    if envelope.channel_type == TELEGRAM and isinstance(contact, dict):
        found.extend(_contact_share(envelope, contact, default_region))
    form = meta.get("form")
    if isinstance(form, dict):
        for key, kind in (("email", EMAIL), ("phone", PHONE)):
            stated = _try(kind, form.get(key), default_region)
            if stated is not None:
                found.append(stated)
    try:
        own: Identity | None = sender_identity(envelope, default_region=default_region)
    except IdentityError:
        own = None
    unique: list[Identity] = []
    for identity in found:
        if identity != own and identity not in unique:
            unique.append(identity)
    return unique


def _contact_share(
    envelope: Envelope, contact: dict[str, Any], default_region: str | None
) -> list[Identity]:
    shared_user = contact.get("user_id")
    if isinstance(shared_user, bool) or not isinstance(shared_user, int | str):
        return []
    owner = _try(TELEGRAM, str(shared_user), None)
    sender = _try(TELEGRAM, envelope.sender.address, None)
    if owner is None or owner != sender:
        return []
    number = contact.get("phone_number")
    if not isinstance(number, str):
        return []
    number = number.strip()
    if number and not number.startswith("+"):
        number = "+" + number  # Telegram's numbers are international, often without "+"
    stated = _try(PHONE, number, default_region)
    return [] if stated is None else [stated]


def _try(kind: str, value: object, default_region: str | None) -> Identity | None:
    if not isinstance(value, str):
        return None
    try:
        return normalize_identity(kind, value, default_region=default_region)
    except IdentityError:
        return None
