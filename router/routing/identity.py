"""Customer identities and their normalization.

An identity is what a channel knows a customer by: an email address, an E.164
phone number, or a kind a channel type declares (`ConnectorSpec.identity_kind`:
a chat user id, a web chat visitor id; the type name when it declares none).
Identities are normalized so the same person written two ways is one identity:
`Ana.Perez@Example.COM` and `ana.perez@example.com`, `600 11 22 33` (region ES)
and `+34600112233`. `email` and `phone` are the core's own kinds, because any
channel may carry them (a form, a shared contact); a connector may declare how
its own kind is normalized (`ConnectorSpec.normalize_identity`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from functools import cache

import phonenumbers

from router.connector import load_registry
from router.envelope import Envelope
from router.errors import EnvelopeError

EMAIL = "email"
PHONE = "phone"

_MAX_LENGTH = 320  # the longest valid email address; more than any id we take

Normalizers = Mapping[str, Callable[[str], str]]


class IdentityError(EnvelopeError):
    """A sender or stated identity cannot be normalized (the record is bad)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """One normalized identity: `kind` is email, phone or a channel type's own kind."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@cache
def installed_normalizers() -> dict[str, Callable[[str], str]]:
    """Identity kind -> its normalizer, as the installed connectors declare them."""
    return {
        spec.sender_kind: spec.normalize_identity
        for spec in load_registry().values()
        if spec.normalize_identity is not None
    }


def normalize_identity(
    kind: str,
    value: str,
    *,
    default_region: str | None = None,
    normalizers: Normalizers | None = None,
) -> Identity:
    """Normalize `value` as an identity of `kind`; raise `IdentityError` if it is not one.

    - email: stripped and case-folded (plus-addressing kept); `Name <addr>` is
      accepted and reduced to the address.
    - phone: E.164 (`+34600112233`); a national number needs `default_region`
      (ISO 3166 code such as `ES`); an invalid number is an error.
    - a kind whose connector declares a normalizer (`normalizers`, default: the
      installed connectors'): what it returns.
    - any other kind: the value stripped, never empty, printable.
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
    own = (installed_normalizers() if normalizers is None else normalizers).get(kind)
    if own is not None:
        try:
            return Identity(kind, own(text))
        except ValueError as exc:
            raise IdentityError(f"{kind} identity: {exc}") from exc
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


def sender_identity(
    envelope: Envelope,
    *,
    kind: str | None = None,
    default_region: str | None = None,
    normalizers: Normalizers | None = None,
) -> Identity:
    """The identity of the envelope's sender: `sender.address` as an identity of `kind`,
    the kind the channel type declares (default: the channel type's name)."""
    return normalize_identity(
        kind or envelope.channel_type,
        envelope.sender.address,
        default_region=default_region,
        normalizers=normalizers,
    )


def stated_identities(
    envelope: Envelope,
    *,
    kind: str | None = None,
    default_region: str | None = None,
    normalizers: Normalizers | None = None,
) -> list[Identity]:
    """Identities the customer stated themselves, which may be linked automatically.

    Read from `envelope.identities` (only on customer messages and calls), which
    the connector writes only once it knows they are the sender's own (a shared
    contact of someone else states nothing about the sender). Invalid values
    are ignored, never errors. The sender's own identity (of `kind`, as in
    `sender_identity`) and duplicates are left out.
    """
    if envelope.sender.role != "customer" or envelope.kind not in ("message", "call"):
        return []
    found = [
        stated
        for part in envelope.identities
        if (stated := _try(part.kind, part.value, default_region, normalizers)) is not None
    ]
    try:
        own: Identity | None = sender_identity(
            envelope, kind=kind, default_region=default_region, normalizers=normalizers
        )
    except IdentityError:
        own = None
    unique: list[Identity] = []
    for identity in found:
        if identity != own and identity not in unique:
            unique.append(identity)
    return unique


def _try(
    kind: str, value: str, default_region: str | None, normalizers: Normalizers | None
) -> Identity | None:
    try:
        return normalize_identity(
            kind, value, default_region=default_region, normalizers=normalizers
        )
    except IdentityError:
        return None
