"""The connector contract and the registry the daemon finds connectors by.

The routing core imports no connector. Each connector package declares a
`ConnectorSpec` and registers it under the entry-point group
`omnirouter.connectors` with the `type:` name used in channels.yaml
(see pyproject.toml). A connector is two small things: an intake that yields
envelopes with their ack, and a sender that takes an envelope and returns a
typed result. The daemon owns lifecycle, reconnection and backoff.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aiohttp import web
from pydantic import BaseModel

from router.blobs import BlobStore
from router.envelope import Envelope

if TYPE_CHECKING:  # router.config imports this module (the connector registry)
    from router.config.people import SinkConfig

ENTRY_POINT_GROUP = "omnirouter.connectors"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of an input the connector offered: done, or an error.

    `done`: it is durably on the bus: the channel may forget it. Otherwise
    `error` says why not, and `retriable` whether the channel should offer it
    again (the bus was unavailable) or forget it (it can never travel and was
    dead-lettered with the reason; an HTTP intake answers 4xx).
    """

    error: str | None = None
    retriable: bool = False

    @property
    def done(self) -> bool:
        return self.error is None


DONE = Outcome()

# Called once per input with its outcome; `ack()` alone means done.
Ack = Callable[[Outcome], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Incoming:
    """An envelope taken in from a channel, and how to tell the channel it is safe."""

    envelope: Envelope
    ack: Ack  # called once the envelope is durably on the bus


@dataclass(frozen=True, kw_only=True, slots=True)
class Rejected:
    """Input the connector could not turn into an envelope.

    The daemon dead-letters it with the reason, then acks it with a
    non-retriable error, so the channel does not offer it again and nothing is
    lost silently. Large raw input is put in
    the blob store first and referenced by `raw_ref`.
    """

    reason: str
    ack: Ack
    native_id: str | None = None
    raw_ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SendResult:
    status: Literal["sent", "retry", "failed"]
    detail: str = ""
    native_id: str | None = None


class Intake(Protocol):
    def receive(self) -> AsyncIterator[Incoming | Rejected]: ...


class Sender(Protocol):
    async def send(self, envelope: Envelope) -> SendResult: ...


class Connector(Intake, Sender, Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """A route a channel adds on the daemon's HTTP listener (`HttpRoutes.add`), and the
    key of its block that sets the path (`("twilio", "path")`), for the problem `check`
    reports when two channels would add the same route (the daemon could not start)."""

    method: str
    path: str
    key: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectorSpec:
    """What a connector package declares about itself."""

    type: str
    description: str
    config: builtins.type[BaseModel]  # the model for the channel's `<type>:` block
    # Builds a running connector from the channel's name, its validated block
    # and the services the daemon shares with connectors.
    # None while the connector's runtime is not part of this build.
    factory: Callable[[str, Any, Services], Connector] | None = None
    # Turns one raw channel input (an .eml file, a webhook body, a CDR row) into an
    # envelope for `omnirouter normalize`; raises EnvelopeError or ConnectorError with
    # the reason when it cannot. Arguments: raw bytes, channel name, blob store, and
    # the channel's validated block (None: no config given, the type's defaults).
    normalize: Callable[[bytes, str, BlobStore, Any], Envelope] | None = None
    # What the type is: a channel customers write on, a way agents are reached
    # (an agent's `sink.type`), or both.
    customer_channel: bool = True
    agent_sink: bool = False
    # Validates an agent sink's `address` (the agent's mailbox, chat id...):
    # returns it normalized, or raises ValueError with the reason. None: the
    # type's sinks take no address (the agent's tool names the agent by id).
    sink_address: Callable[[str], str] | None = None
    # Whether the type's sinks are reached at a `url` (required, http or https).
    sink_url: bool = False
    # Whether an agent reached through this type can answer a delivery ("I take
    # it"): their assignment then times out if they do not. The default of an
    # agent's `sink.accepts`.
    sink_accepts: bool = False
    # Open conversations per agent on a channel of this type, unless the config
    # says otherwise (None: DEFAULT_CAPACITY).
    default_capacity: int | None = None
    # First-response targets per priority (`urgent`, `high`, `normal`, `low`;
    # `normal` is required and stands in for a missing one), unless
    # `sla.first_response` says otherwise. None: no first-response SLA on the type.
    default_targets: Mapping[str, timedelta] | None = None
    # The identity kind a sender's address is ("email", "phone" or a kind of the
    # type's own; None: the type name), and how such an identity is normalized
    # (returns it or raises ValueError; None: the core's rule for the kind).
    identity_kind: str | None = None
    normalize_identity: Callable[[str], str] | None = None
    # Whether the type shows a waiting customer their queue position live: outgoing
    # standing updates (an envelope with a `standing` part and no text) go only to
    # channels of such a type; other types get the position in the acknowledgement only.
    live_standing: bool = False
    # Whether the type shows a customer live signals from their conversation's agent
    # (an envelope with a `signal`, `typing` or `seen`, and no text): sent only to
    # channels of such a type; others never hear of them.
    live_signals: bool = False
    # The region (ISO 3166 code) for phone numbers written without a country code
    # on a channel of this type, read from its validated block (None: none).
    default_region: Callable[[Any], str | None] | None = None
    # Whether a callback a customer asks for on another channel (a web chat's "call
    # me back") lives on a channel of this type, its thread the customer's number.
    carries_callbacks: bool = False
    # The channel (by name) that answers a customer of a channel of this type at the
    # identity they agreed to be answered at (an envelope's `answer_at`), read from its
    # validated block (a web chat's `answer_by_email`); None: not configured.
    answer_channel: Callable[[Any], str | None] | None = None
    # How the router starts a thread with a customer at an identity of the type's own
    # kind (`identity_kind`: an email address) on a channel of this type, to answer a
    # conversation held on another channel: from the channel's validated block, the
    # address and a random seed, the thread key (the one the type's intake gives the
    # customer's answers in that thread) and the reply context of the first message.
    # None: the type cannot write first.
    start_thread: Callable[[Any, str, str], tuple[str, dict[str, Any]]] | None = None
    # The routes a channel of this type adds on the daemon's HTTP listener when it
    # starts, from its validated block and its name: exactly those its factory adds.
    # None: the type adds none.
    http_routes: Callable[[Any, str], Sequence[HttpRoute]] | None = None

    @property
    def sender_kind(self) -> str:
        return self.identity_kind or self.type


# Capacity of a customer channel type that declares none: one conversation at a time.
DEFAULT_CAPACITY = 1


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpRoutes(Protocol):
    """Where a connector adds its endpoints (webhooks, web chat) on the daemon's listener."""

    def add(self, method: str, path: str, handler: Handler) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Services:
    """What the daemon lends a connector: blob store, checkpoint store, HTTP routes,
    where each agent is reached, and the queues.

    A connector adds its HTTP routes in its factory (before the listener starts).
    `sinks` (agent id -> sink) is kept current across config reloads; a connector
    that serves agents looks them up there, so what an address may reveal (a
    Slack webhook URL is a credential) never rides the bus. `opens_at(channel, now)`
    is the channel's next open moment by its business hours (`now` while open), read
    from the current config: a chat can say when we open before anyone writes.
    `queues` (the configured queue names, in config order) is kept current the same
    way as `sinks`, for a tool that offers agents the queues to transfer to.
    """

    blobs: BlobStore
    checkpoints: Checkpoints
    http: HttpRoutes | None = None
    sinks: Mapping[str, SinkConfig] = field(default_factory=dict)
    opens_at: Callable[[str, datetime], datetime] = field(default=lambda _channel, now: now)
    queues: Sequence[str] = field(default_factory=tuple)


class Checkpoints(Protocol):
    """Durable per-connector positions (e.g. IMAP mailbox, UIDVALIDITY, last UID)."""

    async def get_checkpoint(self, name: str, key: str) -> str | None: ...

    async def set_checkpoint(self, name: str, key: str, value: str) -> None: ...

    async def prune_checkpoints(self, name: str, prefix: str, before: datetime) -> int:
        """Forget `name`'s keys starting with `prefix` not written since `before`."""
        ...


class DuplicateConnectorError(RuntimeError):
    pass


def load_registry() -> dict[str, ConnectorSpec]:
    """All installed connectors by type; two packages claiming one type is an error."""
    registry: dict[str, ConnectorSpec] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = ep.load()
        if not isinstance(spec, ConnectorSpec):
            raise TypeError(f"entry point {ep.name!r} is not a ConnectorSpec")
        if spec.type in registry:
            raise DuplicateConnectorError(f"two connectors register type {spec.type!r}")
        registry[spec.type] = spec
    return registry


async def cancelled(task: asyncio.Task[Any] | None) -> None:
    """Cancel a connector's background task (housekeeping, pruning) and wait for it."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def sink_through(
    sinks: Mapping[str, SinkConfig], agent_id: str, channel_type: str, channel: str
) -> SinkConfig | None:
    """`agent_id`'s sink when the agent is reached through `channel` (of `channel_type`)."""
    sink = sinks.get(agent_id)
    if sink is None or sink.type != channel_type or sink.channel != channel:
        return None
    return sink
