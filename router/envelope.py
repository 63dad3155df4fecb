"""The envelope: the one record format between connectors, bus and router.

Version 1, encoded with orjson. Decoding is strict: an unknown version, an
unknown or missing field, or a wrong type raises `EnvelopeError` naming the
field, and nothing else escapes `decode()` whatever bytes it is given.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from router.errors import EnvelopeError

VERSION = 1

Kind = Literal["message", "reply", "call", "command", "timer"]
Direction = Literal["in", "out"]
Role = Literal["customer", "agent", "system"]

# What an agent's `command` envelope may ask (`meta.command = {"name", "args"}`).
AGENT_COMMANDS = frozenset(
    {
        "available",
        "away",
        "offline",
        "accept",
        "resolve",
        "transfer",
        "note",
        "link",
        "unlink",
        "reopen",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# Identifiers are bounded: they become keys, topic names and primary keys.
MAX_ID = 200
MAX_NAME = 100
MAX_ADDRESS = 2000


class Sender(_Strict):
    address: str = Field(max_length=MAX_ADDRESS)
    name: str | None = None
    role: Role = "customer"


class Attachment(_Strict):
    """A file carried by reference; its bytes live in the blob store."""

    name: str
    content_type: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    ref: str


class Envelope(_Strict):
    """One customer message, agent reply, call log, agent command or timer event.

    `meta` holds channel-specific facts (email Message-ID and References, a
    call's duration and disposition, a command's name and arguments).
    """

    v: Literal[1] = 1
    id: str = Field(min_length=1, max_length=MAX_ID)
    kind: Kind
    direction: Direction
    channel: str = Field(min_length=1, max_length=MAX_NAME)
    channel_type: str = Field(min_length=1, max_length=MAX_NAME)
    thread_key: str = Field(min_length=1, max_length=MAX_ADDRESS)
    conversation_id: str | None = Field(default=None, max_length=MAX_ID)
    sender: Sender
    # Strict mode would refuse ISO strings; the JSON form of a datetime is a string.
    sent_at: AwareDatetime | None = Field(default=None, strict=False)
    received_at: AwareDatetime = Field(strict=False)
    subject: str | None = None
    text: str = ""
    html: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    def bus_key(self) -> bytes:
        """The bus key: one thread on one channel is always in order."""
        return f"{self.channel}\x1f{self.thread_key}".encode()


def envelope_id(channel: str, native_id: str) -> str:
    """A stable id from the channel's own message id: same input, same id."""
    # Length-prefixed so that no two (channel, native_id) pairs share a preimage.
    data = f"{len(channel)}:{channel}{native_id}".encode()
    digest = hashlib.sha256(data).hexdigest()
    return digest[:32]


def encode(envelope: Envelope) -> bytes:
    try:
        return orjson.dumps(envelope.model_dump(mode="python"))
    except TypeError as exc:  # e.g. a string with lone surrogates: not valid UTF-8
        raise EnvelopeError(f"cannot encode envelope {envelope.id}: {exc}") from exc


def decode(data: bytes | bytearray | memoryview | str) -> Envelope:
    """Parse and validate one encoded envelope; raise only `EnvelopeError`."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise EnvelopeError(f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("v")
    if version != VERSION:
        raise EnvelopeError(f"v: unsupported envelope version {version!r} (expected {VERSION})")
    try:
        return Envelope.model_validate(obj)
    except ValidationError as exc:
        raise EnvelopeError(_describe(exc)) from exc
    except (ValueError, TypeError, RecursionError) as exc:  # defensive: odd inputs
        raise EnvelopeError(f"invalid envelope: {exc}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def now_utc() -> datetime:
    return datetime.now(UTC)
