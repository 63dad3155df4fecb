"""The envelope: the one record format between connectors, bus and router.

Version 1, encoded with orjson. Decoding is strict: an unknown version, an
unknown or missing field, or a wrong type raises `EnvelopeError` naming the
field, and nothing else escapes `decode()` whatever bytes it is given.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from router.errors import EnvelopeError

VERSION = 1

Kind = Literal["message", "reply", "call", "command", "timer"]
Direction = Literal["in", "out"]
Role = Literal["customer", "agent", "system"]

# What an agent's `command` envelope may ask (its `command.name`).
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


MAX_REASONS = 20
MAX_REASON = 200
MAX_RECIPIENTS = 100
MAX_IDENTITIES = 10
MAX_IDENTITY = 320  # the longest email address; more than any id
MAX_ARGS = 50
MAX_ARG = 65_536  # a note is one argument
MAX_REPLY_CONTEXT = 4096  # bytes of JSON: a few message ids, never content


class BounceRecipient(_Strict):
    """One recipient a delivery report names."""

    address: str | None = Field(default=None, max_length=MAX_ADDRESS)
    action: str | None = Field(default=None, max_length=MAX_NAME)
    status: str | None = Field(default=None, max_length=MAX_NAME)
    diagnostic: str | None = Field(default=None, max_length=MAX_ADDRESS)


class Bounce(_Strict):
    """A report that a message did not reach its recipient."""

    # The id of our envelope that bounced, when the channel recognised it as ours
    # (None: a report about a message we did not send).
    envelope_id: str | None = Field(default=None, max_length=MAX_ID)
    # The bounced message's id on the channel (e.g. a Message-ID), for the record.
    original_id: str | None = Field(default=None, max_length=MAX_ADDRESS)
    recipients: list[BounceRecipient] = Field(default_factory=list, max_length=MAX_RECIPIENTS)


class Automated(_Strict):
    """What the channel knows about a machine having sent the message.

    The router records such messages but never answers them (no loops). On an
    outgoing envelope, `auto` marks an automatic message of ours (an
    acknowledgement, a notice), which the channel marks as such.
    """

    # A machine sent it (list, bulk, notification): recorded, no conversation.
    auto: bool = False
    # An automatic answer such as out-of-office: kept in the transcript, but it
    # neither resets the SLA nor gets an acknowledgement.
    auto_reply: bool = False
    # A delivery report: an incident for the message it names.
    bounce: Bounce | None = None
    # Why the channel thinks so (e.g. "precedence: bulk"), for the decision log.
    reasons: list[Annotated[str, Field(max_length=MAX_REASON)]] = Field(
        default_factory=list, max_length=MAX_REASONS
    )


class StatedIdentity(_Strict):
    """An identity the customer stated themselves (their own shared contact, a form).

    The connector writes only what it has verified is the sender's own (a shared
    contact counts only when it is the sender's); the router normalizes it and
    may link it to the sender's customer. `kind`: `email`, `phone`, or a channel's
    own identity kind.
    """

    kind: str = Field(min_length=1, max_length=MAX_NAME)
    value: str = Field(min_length=1, max_length=MAX_IDENTITY)


class Command(_Strict):
    """What an agent (or the system) asks: `name` and its arguments."""

    name: str = Field(max_length=MAX_NAME)  # an unknown or empty one is rejected by name
    args: list[Annotated[str, Field(max_length=MAX_ARG)]] = Field(
        default_factory=list, max_length=MAX_ARGS
    )


class DeliveryAgent(_Strict):
    id: str = Field(min_length=1, max_length=MAX_ID)
    name: str | None = Field(default=None, max_length=MAX_ADDRESS)


class DeliverySink(_Strict):
    """Where the delivery goes: the agent's sink type and address (none for a URL sink:
    the connector looks the URL up by agent id, so a secret URL never rides the bus)."""

    type: str = Field(min_length=1, max_length=MAX_NAME)
    address: str | None = Field(default=None, max_length=MAX_ADDRESS)


class Delivery(_Strict):
    """A conversation handed to an agent, with everything they need to answer.

    `context` holds `customer` (name, tier, tags, language, every identity, link
    suggestions), `conversation` (ref, channel, priority, queue, tags, complaint,
    subject), `transcript` (the latest messages, oldest first), `transcript_window`
    (how many are shown of how many) and `other_conversations` (the customer's
    recent ones on every channel). The record as a whole stays under the bus's
    record budget: the oldest transcript entries are dropped first.
    """

    # What happened: assigned, message, transfer, sla_warning, delivery_failed...
    event: str = Field(min_length=1, max_length=MAX_NAME)
    agent: DeliveryAgent
    sink: DeliverySink
    # The signed conversation token the agent's reply or command must carry
    # (None on a notice about the agent's own input, e.g. a rejected reply).
    token: str | None = Field(default=None, max_length=MAX_ADDRESS)
    # The agent's input (envelope id) a notice answers.
    in_reply_to: str | None = Field(default=None, max_length=MAX_ID)
    # Why this agent got it (the routing decision's reason).
    reason: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None
    # When the first response is due (None: no SLA on the conversation).
    sla_due: AwareDatetime | None = Field(default=None, strict=False)
    context: dict[str, Any] = Field(default_factory=dict)


def _bounded_context(value: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if size > MAX_REPLY_CONTEXT:
        raise ValueError(f"{size} bytes of JSON; at most {MAX_REPLY_CONTEXT}")
    return value


# A connector's own facts for answering in the same thread (email's Message-ID and
# References, a chat's message id): opaque to the router, which stores the latest a
# customer's message carried and hands it back unchanged on every outgoing reply.
ReplyContext = Annotated[dict[str, Any], AfterValidator(_bounded_context)]

# Typed parts earlier envelopes carried in `meta`: lifted on decode (records already
# on a topic, connectors not yet writing the typed part).
_LEGACY_META = ("command", "delivery")


class Envelope(_Strict):
    """One customer message, agent reply, call log, agent command or timer event.

    What the router reads is typed (`automated`, `identities`, `reply_context`,
    `delivery`, `command`); `meta` holds channel-native extras only (a call's
    duration, an email's Cc), which the router stores but never reads, apart from
    its own timer payloads and outgoing-message labels.
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
    automated: Automated | None = None
    identities: list[StatedIdentity] = Field(default_factory=list, max_length=MAX_IDENTITIES)
    reply_context: ReplyContext = Field(default_factory=dict)
    delivery: Delivery | None = None
    command: Command | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _lift_legacy(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
            return data
        meta = data["meta"]
        moved = [k for k in _LEGACY_META if k not in data and isinstance(meta.get(k), dict)]
        if not moved:
            return data
        meta = dict(meta)
        return {**data, **{k: meta.pop(k) for k in moved}, "meta": meta}

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
        raise EnvelopeError(describe_errors(exc)) from exc
    except (ValueError, TypeError, RecursionError) as exc:  # defensive: odd inputs
        raise EnvelopeError(f"invalid envelope: {exc}") from exc


def describe_errors(exc: ValidationError) -> str:
    """A validation error as `field.path: what is wrong; ...`."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def now_utc() -> datetime:
    return datetime.now(UTC)
