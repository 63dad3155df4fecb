"""The envelope: the one record format between connectors, bus and router.

Version 1, encoded with orjson. Decoding is strict: an unknown version, an
unknown or missing field, or a wrong type raises `EnvelopeError` naming the
field, and nothing else escapes `decode()` whatever bytes it is given.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

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
        # A callback's outcome (a call owed to the customer).
        "called",
        "no-answer",
        "wrong-number",
        # A promise to the customer and its keeping (router.routing.promises).
        "promise",
        "kept",
        # Live signals for the customer (router.routing.signals): never kept.
        "typing",
        "seen",
    }
)
# An outgoing live signal's `signal`: the agent is writing, or has read the customer.
Signal = Literal["typing", "seen", "assigned"]
# What a customer may ask of the router itself (not of an agent), on any channel.
Request = Literal["transcript"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# Identifiers are bounded: they become keys, topic names and primary keys.
MAX_ID = 200
MAX_NAME = 100
MAX_ADDRESS = 2000


class Sender(_Strict):
    """Who sent it: a customer, an agent or the router itself."""

    address: str = Field(
        max_length=MAX_ADDRESS,
        description="The sender on the channel: a customer's address (email address, phone"
        " number, chat user id), an agent's id or sink address, `omnirouter` for the router.",
    )
    name: str | None = Field(default=None, description="Display name, when the channel has one.")
    role: Role = Field(default="customer", description="`customer`, `agent` or `system`.")


class Attachment(_Strict):
    """A file carried by reference; its bytes live in the blob store."""

    name: str = Field(description="File name.")
    content_type: str = Field(description="MIME type.")
    size: int = Field(ge=0, description="Size in bytes.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the bytes, hex.")
    ref: str = Field(description="Where the blob store keeps it (`blob://...`).")


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

    address: str | None = Field(
        default=None, max_length=MAX_ADDRESS, description="The recipient's address."
    )
    action: str | None = Field(
        default=None, max_length=MAX_NAME, description="What happened (e.g. `failed`)."
    )
    status: str | None = Field(
        default=None, max_length=MAX_NAME, description="Status code (e.g. `5.1.1`)."
    )
    diagnostic: str | None = Field(
        default=None, max_length=MAX_ADDRESS, description="The remote server's words."
    )


class Bounce(_Strict):
    """A report that a message did not reach its recipient."""

    envelope_id: str | None = Field(
        default=None,
        max_length=MAX_ID,
        description="The id of our envelope that bounced, when the channel recognised the"
        " message as ours (null: a report about a message we did not send).",
    )
    original_id: str | None = Field(
        default=None,
        max_length=MAX_ADDRESS,
        description="The bounced message's id on the channel (e.g. its Message-ID).",
    )
    recipients: list[BounceRecipient] = Field(
        default_factory=list,
        max_length=MAX_RECIPIENTS,
        description=f"The recipients the report names (at most {MAX_RECIPIENTS}).",
    )


class Automated(_Strict):
    """What the channel knows about a machine having sent the message.

    The router records such messages but never answers them (no loops). On an
    outgoing envelope, `auto` marks an automatic message of ours (an
    acknowledgement, a notice), which the channel marks as such.
    """

    auto: bool = Field(
        default=False,
        description="A machine sent it (list, bulk, notification): recorded, no"
        " conversation, no acknowledgement. Outgoing: an automatic message of ours.",
    )
    auto_reply: bool = Field(
        default=False,
        description="An automatic answer such as out-of-office: kept in the transcript,"
        " but it neither resets the SLA nor gets an acknowledgement.",
    )
    bounce: Bounce | None = Field(
        default=None,
        description="A delivery report: an incident for the message it names.",
    )
    reasons: list[Annotated[str, Field(max_length=MAX_REASON)]] = Field(
        default_factory=list,
        max_length=MAX_REASONS,
        description="Why the channel thinks so (e.g. `precedence: bulk`), for the decision log.",
    )


class StatedIdentity(_Strict):
    """An identity the customer stated themselves (their own shared contact, a form).

    The connector writes only what it has verified is the sender's own (a shared
    contact counts only when it is the sender's); the router normalizes it and
    may link it to the sender's customer.
    """

    kind: str = Field(
        min_length=1,
        max_length=MAX_NAME,
        description="`email`, `phone`, or a channel type's own identity kind.",
    )
    value: str = Field(
        min_length=1,
        max_length=MAX_IDENTITY,
        description="As the customer wrote it; the router normalizes it (an invalid one is"
        " ignored).",
    )


class Command(_Strict):
    """What an agent (or the system) asks: a name and its arguments."""

    name: str = Field(
        max_length=MAX_NAME,
        description="`available`, `away`, `offline`, `accept`, `resolve`, `transfer`,"
        " `note`, `link`, `unlink`, `reopen`, and a callback's outcome `called`,"
        " `no-answer`, `wrong-number`, a promise `promise <due> <text>` and its keeping"
        " `kept [id]`, and the live signals `typing`, `seen` from agents;"
        " `delivery_failed` from the system."
        " Anything else is rejected by name.",
    )
    args: list[Annotated[str, Field(max_length=MAX_ARG)]] = Field(
        default_factory=list,
        max_length=MAX_ARGS,
        description="Arguments, e.g. `[billing, needs a refund]` for a transfer.",
    )


class DeliveryAgent(_Strict):
    """The agent a delivery is for."""

    id: str = Field(min_length=1, max_length=MAX_ID, description="The agent's id.")
    name: str | None = Field(
        default=None, max_length=MAX_ADDRESS, description="The agent's display name."
    )
    timezone: str | None = Field(
        default=None,
        max_length=MAX_NAME,
        description="The agent's IANA time zone (theirs, else their schedule's; null:"
        " not known), for showing times such as `sla_due` in it.",
    )
    language: str | None = Field(
        default=None,
        max_length=MAX_NAME,
        description="The language the agent reads (the first of their `languages`; null:"
        " English), for writing the delivery's words and times in it.",
    )


class DeliverySink(_Strict):
    """Where the delivery goes."""

    type: str = Field(min_length=1, max_length=MAX_NAME, description="The sink's type.")
    address: str | None = Field(
        default=None,
        max_length=MAX_ADDRESS,
        description="The sink's address (null for a sink reached at a URL: the connector"
        " looks the URL up by agent id, so a secret URL never rides the bus).",
    )


class Delivery(_Strict):
    """A conversation handed to an agent, with everything they need to answer.

    The record as a whole stays under the bus's record budget: the oldest
    transcript entries are dropped first.
    """

    event: str = Field(
        min_length=1,
        max_length=MAX_NAME,
        description="What happened: `assigned`, `message`, `transfer_note`, `escalation`,"
        " `delivery_failed`, `rejected`, `promise_due` (a reminder), `promise_broken`"
        " (to supervisors), ...",
    )
    agent: DeliveryAgent = Field(description="The agent it is for.")
    sink: DeliverySink = Field(description="Where it goes.")
    token: str | None = Field(
        default=None,
        max_length=MAX_ADDRESS,
        description="The signed conversation token the agent's reply or command must carry"
        " (null on a notice about the agent's own input, e.g. a rejected reply).",
    )
    in_reply_to: str | None = Field(
        default=None,
        max_length=MAX_ID,
        description="The agent's input (envelope id) a notice answers.",
    )
    reason: dict[str, Any] = Field(
        default_factory=dict, description="Why this agent got it: the routing decision's reason."
    )
    note: str | None = Field(default=None, description="A note (e.g. from a transfer).")
    sla_due: AwareDatetime | None = Field(
        default=None,
        strict=False,
        description="When the first response is due (null: no SLA on the conversation).",
    )
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="`customer` (name, tier, tags, language, every identity, link"
        " suggestions), `conversation` (ref, channel, priority, queue, tags, complaint,"
        " subject, SLA due, an open callback with its `tel:` link, `unreachable`: since when"
        " and why messages to the customer on the conversation's channel fail, until they"
        " write again), `transcript` (the"
        " latest messages, oldest first, long texts cut), `transcript_window` (how many"
        " are shown of how many), `promises` (what agents promised on this conversation:"
        " id, text, due, made_by, owner, state `open`/`kept`/`broken`) and"
        " `other_conversations` (the customer's recent ones on every channel).",
    )


CallDirection = Literal["inbound", "outbound"]
Disposition = Literal["answered", "missed", "busy", "failed", "voicemail", "abandoned", "requested"]
# Dispositions after which the customer is owed a call back.
UNRETURNED = frozenset({"missed", "voicemail", "abandoned"})
# Not a call: the customer asked, on any channel, to be called back (a web chat's
# "call me back"); the number is the envelope's stated `phone` identity.
REQUESTED: Final = "requested"


class Call(_Strict):
    """What the channel knows about one call: the facts the router routes by.

    Every record about one call (the call itself, its recording, a voicemail
    transcript in `text`) carries the phone system's id of the call in `id`.
    """

    id: str = Field(
        min_length=1, max_length=MAX_ID, description="The phone system's own id of the call."
    )
    direction: CallDirection = Field(
        description="`inbound` (the customer called) or `outbound` (we called them)."
    )
    disposition: Disposition | None = Field(
        default=None,
        description="`answered`, `missed`, `busy`, `failed`, `voicemail` or `abandoned`"
        " (the caller hung up while waiting); `requested`: no call yet, the customer asked"
        " to be called back (inbound, on any channel; the number is the envelope's stated"
        " `phone` identity); null on a record that only adds to a call already logged (its"
        " recording, its transcript).",
    )
    started_at: AwareDatetime | None = Field(
        default=None, strict=False, description="When the call started."
    )
    answered_at: AwareDatetime | None = Field(
        default=None, strict=False, description="When it was answered (null: it was not)."
    )
    ended_at: AwareDatetime | None = Field(default=None, strict=False, description="When it ended.")
    duration: int = Field(default=0, ge=0, description="Seconds from start to end.")
    talk: int = Field(default=0, ge=0, description="Seconds from answer to end.")
    wait: int = Field(
        default=0, ge=0, description="Seconds the caller waited before an answer or hanging up."
    )
    agent: str | None = Field(
        default=None,
        max_length=MAX_ID,
        description="The agent who answered or placed the call (their configured id).",
    )
    recording: str | None = Field(
        default=None, max_length=MAX_ADDRESS, description="Where the recording is (a URL)."
    )


class Standing(_Strict):
    """Where a waiting conversation stands, as of the envelope's `received_at`: channel-neutral
    facts a channel may show (a web chat does, live) or leave aside (an email's text says it)."""

    position: int = Field(
        ge=1,
        description="1 for the next conversation its agents take, in its queue and on its"
        " channel type (an agent's capacity is per channel type).",
    )
    queue: str | None = Field(
        default=None, max_length=MAX_NAME, description="The queue it waits in (null: none)."
    )
    due: AwareDatetime | None = Field(
        default=None,
        strict=False,
        description="When the first response is promised (null: no target on the channel).",
    )
    wait: int | None = Field(
        default=None,
        ge=0,
        description="Seconds from `received_at` to `due` (0 once due; null when `due` is).",
    )


def _bounded_context(value: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if size > MAX_REPLY_CONTEXT:
        raise ValueError(f"{size} bytes of JSON; at most {MAX_REPLY_CONTEXT}")
    return value


# A connector's own facts for answering in the same thread: opaque to the router.
ReplyContext = Annotated[dict[str, Any], AfterValidator(_bounded_context)]

# Typed parts earlier envelopes carried in `meta`: lifted on decode (records already
# on a topic, connectors not yet writing the typed part).
_LEGACY_META = ("command", "delivery")


def _legacy_automated(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The automated flags an earlier intake wrote in `meta`, so a robot's message on a
    topic at upgrade time is still never answered. An old bounce names no envelope of
    ours (that took the channel's own id format): it is recorded, not matched."""
    if not (meta.get("auto") is True or meta.get("is_bounce") is True):
        return None
    reasons = meta.get("auto_reasons")
    return {
        "auto": True,
        "auto_reply": meta.get("is_auto_reply") is True,
        "bounce": {} if meta.get("is_bounce") is True else None,
        "reasons": [r[:MAX_REASON] for r in reasons if isinstance(r, str)][:MAX_REASONS]
        if isinstance(reasons, list)
        else [],
    }


class Envelope(_Strict):
    """One customer message, agent reply, call log, agent command or timer event.

    What the router reads is typed; `meta` holds channel-native extras only.
    """

    v: Literal[1] = Field(default=1, description="Format version; always 1.")
    id: str = Field(
        min_length=1,
        max_length=MAX_ID,
        description="Stable id derived from the channel's own message id: same input, same"
        " id, so a repeat is a duplicate the router drops.",
    )
    kind: Kind = Field(
        description="`message` (a customer's), `reply` (an agent's, or ours to a customer),"
        " `call` (a phone log), `command` (an agent's), `timer` (the router's own)."
    )
    direction: Direction = Field(description="`in` to the router, `out` from it.")
    channel: str = Field(
        min_length=1, max_length=MAX_NAME, description="The channel's name in channels.yaml."
    )
    channel_type: str = Field(
        min_length=1, max_length=MAX_NAME, description="The channel's type (its connector)."
    )
    thread_key: str = Field(
        min_length=1,
        max_length=MAX_ADDRESS,
        description="The channel's own thread: a conversation is (channel, thread_key).",
    )
    conversation_id: str | None = Field(
        default=None, max_length=MAX_ID, description="The router's conversation, once known."
    )
    sender: Sender = Field(description="Who sent it.")
    # Strict mode would refuse ISO strings; the JSON form of a datetime is a string.
    sent_at: AwareDatetime | None = Field(
        default=None, strict=False, description="When the sender sent it, if the channel says."
    )
    received_at: AwareDatetime = Field(strict=False, description="When we took it in.")
    subject: str | None = Field(default=None, description="Subject, on channels that have one.")
    text: str = Field(
        default="", description="Plain text; for email, the new text without quoted history."
    )
    html: str | None = Field(default=None, description="Sanitized HTML, if any.")
    attachments: list[Attachment] = Field(
        default_factory=list, description="Files, by reference to the blob store."
    )
    automated: Automated | None = Field(
        default=None, description="Set when a machine sent it (null: a person did)."
    )
    identities: list[StatedIdentity] = Field(
        default_factory=list,
        max_length=MAX_IDENTITIES,
        description="Identities the customer stated, verified as theirs by the connector.",
    )
    reply_context: ReplyContext = Field(
        default_factory=dict,
        description="The connector's own facts for answering in the same thread (email:"
        " `to`, `message_id`, `references`), a JSON object of at most"
        f" {MAX_REPLY_CONTEXT} bytes. The router keeps the latest a customer's message"
        " carried and hands it back unchanged on every reply to the conversation.",
    )
    delivery: Delivery | None = Field(
        default=None, description="On `omni.agent.<sink>`: the conversation handed to an agent."
    )
    command: Command | None = Field(default=None, description="On a `command`: what is asked.")
    call: Call | None = Field(
        default=None, description="On a `call`: its direction, disposition, times and agent."
    )
    standing: Standing | None = Field(
        default=None,
        description="On an outgoing acknowledgement or standing update (`meta.purpose:"
        " standing`, no text) of a conversation waiting for an agent: its queue position"
        " and expected wait.",
    )
    signal: Signal | None = Field(
        default=None,
        description="On an outgoing live signal (no text, never in the transcript; only to"
        " channel types that declare `live_signals`): `typing`, the conversation's agent is"
        " writing; `seen`, they have read the customer's messages taken in up to"
        " `received_at`; `assigned`, the agent named in `sender` now has the conversation.",
    )
    answer_at: StatedIdentity | None = Field(
        default=None,
        description="On a customer's message: an identity (an `email`) the customer gave and"
        " agreed to be answered at, besides the conversation's own channel. The router sends"
        " agents' replies (and a transcript they ask for) there too, on the channel the"
        " conversation's channel names for it (a web chat's `answer_by_email`).",
    )
    request: Request | None = Field(
        default=None,
        description="On a customer's `message`: a service asked of the router, not a message"
        " for an agent (not routed, not kept in the transcript): `transcript`, send this"
        " conversation's transcript to `answer_at`.",
    )
    meta: dict[str, Any] = Field(
        default_factory=dict,
        description="Channel-native extras (an email's Cc, a call's duration), stored, never"
        " read by the router (apart from its own timer payloads, output labels and an"
        " agent's conversation `token`).",
    )

    @model_validator(mode="before")
    @classmethod
    def _lift_legacy(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
            return data
        meta = data["meta"]
        moved = [k for k in _LEGACY_META if k not in data and isinstance(meta.get(k), dict)]
        automated = None if "automated" in data else _legacy_automated(meta)
        if not moved and automated is None:
            return data
        meta = dict(meta)
        lifted = {k: meta.pop(k) for k in moved}
        if automated is not None:
            lifted["automated"] = automated
        return {**data, **lifted, "meta": meta}

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
