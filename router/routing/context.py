"""What every routing step shares: config lookups, the store, one record's unit of work."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from router.bus.base import Topics
from router.config import AgentConfig, Config
from router.config.reach import sink_accepts, unreachable_agents
from router.config.routing import TargetsConfig
from router.connector import DEFAULT_CAPACITY, ConnectorSpec, load_registry
from router.envelope import Envelope
from router.routing.board import AgentBoard
from router.routing.identity import (
    Identity,
    Normalizers,
    normalize_identity,
    sender_identity,
    stated_identities,
)
from router.store import Store
from router.store import routing as db
from router.store.conn import Conn

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """One thing the router decided, as `simulate` prints it and the log records it."""

    input: str
    action: str
    conversation_id: str | None = None
    agent: str | None = None
    queue: str | None = None
    priority: str | None = None
    reason: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "conversation_id": self.conversation_id,
            "action": self.action,
            "agent": self.agent,
            "queue": self.queue,
            "priority": self.priority,
            "reason": dict(self.reason),
        }


@dataclass(slots=True)
class Created:
    """A customer a unit created, and what it wrote of them. Nobody else sees them before
    the unit commits, so this is all the store holds of them: a delivery reads none of it
    again (`known`). Every write of theirs in the unit goes through the unit's methods."""

    row: Any  # as written (`db.Customer`)
    # By (kind, value), the identity's key: the first link of one is the one kept.
    identities: dict[tuple[str, str], db.IdentityRow] = field(default_factory=dict)
    conversations: list[str] = field(default_factory=list)
    suggested: bool = False  # a link suggestion names them: read those

    def known(self, conversation_id: str) -> db.Known:
        """What a delivery of `conversation_id` would read of them."""
        others = [c for c in self.conversations if c != conversation_id]
        return db.Known(
            customer=self.row,
            # Two or more are read: their order is the database's collation's.
            identities=list(self.identities.values()) if len(self.identities) < 2 else None,
            suggestions=None if self.suggested else [],
            recent=None if others else [],
        )


class Unit:
    """One record's unit of work: the connection, the clock, and what it decided."""

    def __init__(self, conn: Conn, now: datetime, input_id: str) -> None:
        self.conn = conn
        self.now = now
        self.input_id = input_id
        self.decisions: list[Decision] = []
        self.outputs = 0  # outputs written so far; part of each output's stable id
        # Lines (queue, channel type) whose order changed: their waiting customers are
        # told where they now stand at the end of the unit (router.routing.standing).
        self.moved: set[tuple[str | None, str]] = set()
        self.incidents: list[str] = []  # kinds recorded, counted once the unit commits
        # Customers and conversations this unit created. Nobody else sees them before it
        # commits, so the store holds only what this unit wrote of them (`unassigned`).
        self.opened: set[str] = set()
        # The customers it created, with what it wrote of them (see `Created`).
        self.created: dict[str, Created] = {}
        self.assigned = False  # an assignment started in this unit (`start_assignment`)

    async def incident(
        self,
        kind: str,
        conversation_id: str | None,
        customer_id: str | None,
        cause: str,
        details: Mapping[str, Any],
    ) -> None:
        """Record an incident in the register, in this unit's transaction."""
        await db.record_incident(
            self.conn, kind, conversation_id, customer_id, cause, details, self.now
        )
        self.incidents.append(kind)

    async def create_customer(self, name: str | None) -> str:
        row = await db.create_customer(self.conn, name, self.now)
        self.created[row.id] = Created(row)
        return row.id

    async def customer(self, customer_id: str) -> Any:
        """The customer's row: as this unit wrote it, or read."""
        created = self.created.get(customer_id)
        return created.row if created is not None else await db.customer(self.conn, customer_id)

    async def set_customer_language(self, customer_id: str, language: str) -> None:
        await db.set_customer_language(self.conn, customer_id, language, self.now)
        created = self.created.get(customer_id)
        if created is not None:
            created.row = created.row._replace(language=language, updated_at=self.now)

    async def add_identity(self, kind: str, value: str, customer_id: str, source: str) -> str:
        """Link an identity to a customer unless it is linked already; its owner."""
        owner = await db.add_identity(self.conn, kind, value, customer_id, source, self.now)
        created = self.created.get(customer_id)
        if created is not None and owner == customer_id:  # linked to them, now or before
            created.identities.setdefault((kind, value), db.IdentityRow(kind, value, source))
        return owner

    async def suggest_link(
        self, kind: str, value: str, current: str, proposed: str, source: str
    ) -> bool:
        """Suggest to agents that an identity of `current` is `proposed`'s; False: already."""
        for customer_id in (current, proposed):
            if customer_id in self.created:
                self.created[customer_id].suggested = True
        return await db.suggest_link(self.conn, kind, value, current, proposed, source, self.now)

    def opened_conversation(self, conversation_id: str, customer_id: str) -> None:
        self.opened.add(conversation_id)
        created = self.created.get(customer_id)
        if created is not None:
            created.conversations.append(conversation_id)

    def decide(self, action: str, **kw: Any) -> None:
        self.decisions.append(Decision(input=self.input_id, action=action, **kw))

    def unassigned(self, opened_id: str) -> bool:
        """True when `opened_id` (a customer or a conversation) was created by this unit,
        which has assigned nothing yet: the store can hold no assignment of it, so a query
        for one need not run."""
        return opened_id in self.opened and not self.assigned

    async def start_assignment(
        self, conversation_id: str, agent_id: str, reason: Mapping[str, Any]
    ) -> None:
        """Give the conversation to the agent, in this unit's transaction."""
        await db.start_assignment(self.conn, conversation_id, agent_id, reason, self.now)
        self.assigned = True


class Routing:
    """The engine's shared state: config lookups built once per (re)load, store, topics, key."""

    def __init__(
        self,
        config: Config,
        store: Store,
        topics: Topics,
        *,
        registry: Mapping[str, ConnectorSpec] | None = None,
        reachability: bool = True,
    ) -> None:
        """`registry`: the connectors (default: the installed ones); what each sink type
        can do comes from there. `reachability`: agents no running connector reaches are
        never assigned (the daemon); `simulate` runs no connectors and passes False."""
        self.store = store
        self.registry = registry if registry is not None else load_registry()
        self.reachability = reachability
        self.topics = topics
        self.signing_key = b""
        # The agents' live state, kept in step with what this process writes; None:
        # read it again from the store (see `router.routing.board`).
        self.board: AgentBoard | None = None
        self.configure(config)

    async def work(self, unit: Callable[[Conn], Coroutine[Any, Any, T]]) -> T:
        """The store's unit of work, run in its writer thread (`Store.work`); if it fails,
        the board may hold changes that never committed, so it is read again from the
        store."""
        try:
            return await self.store.work(unit)
        except BaseException:
            self.board = None
            raise

    def configure(self, config: Config) -> None:
        """Take a (re)loaded config; state in the store is untouched."""
        self.config = config
        self.board = None  # skills, capacities and shifts may have changed
        self.agents: dict[str, AgentConfig] = {a.id: a for a in config.agents}
        # Agent id -> why deliveries cannot reach them: they are passed over, and named.
        self.unreachable = unreachable_agents(config, self.registry) if self.reachability else {}
        # Agents who can answer a delivery: their assignments time out if they do not.
        self.accepting = {a.id for a in config.agents if sink_accepts(a.sink, self.registry)}
        self.by_address: dict[str, str] = {}
        # Agents whose sink has no address (their tool names them by id): (channel, agent
        # id); on those channels an agent is known by id only.
        self.by_id: set[tuple[str, str]] = set()
        self.id_channels: set[str] = set()
        for a in config.agents:
            spec = self.registry.get(a.sink.type)
            if spec is not None and spec.sink_address is None:
                if a.sink.channel is not None:
                    self.by_id.add((a.sink.channel, a.id))
                    self.id_channels.add(a.sink.channel)
            elif a.sink.address:
                self.by_address[a.sink.address.casefold()] = a.id
        self.queues = {q.name: q for q in config.queues}
        self.channels = {c.name: c for c in config.channels}
        # Where deliveries to agents go (sink channel, or type when none): its type.
        self.sink_types = {(a.sink.channel or a.sink.type): a.sink.type for a in config.agents}
        self.languages = sorted(
            {lang for a in config.agents for lang in a.languages}
            | {lang for t in config.templates.values() for lang in t}
            | {config.routing.default_language}
        )
        self.spoken = {lang for a in config.agents for lang in a.languages}
        customer_types = {t: s for t, s in self.registry.items() if s.customer_channel}
        # Open conversations per agent and channel type: the types' own, then the config's.
        self.default_capacity = {
            t: DEFAULT_CAPACITY if s.default_capacity is None else s.default_capacity
            for t, s in customer_types.items()
        } | dict(config.routing.default_capacity)
        # First-response targets per channel type: the types' own, then the config's.
        self.targets = {
            t: TargetsConfig.model_validate(dict(s.default_targets))
            for t, s in customer_types.items()
            if s.default_targets is not None
        } | dict(config.sla.first_response)
        # Identity kinds with a normalizer of their connector's.
        self.normalizers: Normalizers = {
            s.sender_kind: s.normalize_identity
            for s in self.registry.values()
            if s.normalize_identity is not None
        }
        key = config.routing.signing_key
        if key is not None:
            self.signing_key = key.get_secret_value().encode()

    def default_region(self, channel: str) -> str | None:
        """The region for national phone numbers on `channel`, as its type reads it."""
        ch = self.channels.get(channel)
        spec = self.registry.get(ch.type) if ch is not None else None
        if ch is None or spec is None or spec.default_region is None or ch.settings is None:
            return None
        return spec.default_region(ch.settings)

    def sender_kind(self, channel_type: str) -> str:
        """The identity kind a sender's address is on a channel of this type."""
        spec = self.registry.get(channel_type)
        return spec.sender_kind if spec is not None else channel_type

    def sender_identity(self, env: Envelope) -> Identity:
        """The sender's identity; raises `IdentityError` when the address is not one."""
        return sender_identity(
            env,
            kind=self.sender_kind(env.channel_type),
            default_region=self.default_region(env.channel),
            normalizers=self.normalizers,
        )

    def stated_identities(self, env: Envelope) -> list[Identity]:
        return stated_identities(
            env,
            kind=self.sender_kind(env.channel_type),
            default_region=self.default_region(env.channel),
            normalizers=self.normalizers,
        )

    def normalize(self, kind: str, value: str, channel: str) -> Identity:
        """An identity of `kind` written on `channel` (the region for phone numbers)."""
        return normalize_identity(
            kind, value, default_region=self.default_region(channel), normalizers=self.normalizers
        )

    def hours_for(self, channel: str) -> Any:
        ch = self.channels.get(channel)
        name = (ch.business_hours if ch is not None else None) or self.config.sla.business_hours
        return self.config.business_hours.get(name) if name else None

    def tz_for(self, channel: str) -> str | None:
        hours = self.hours_for(channel)
        return hours.timezone if hours is not None else None

    def agent_of(self, env: Envelope) -> str | None:
        """The agent who sent `env`: by their sink's address (mailbox, chat user id) or,
        on a channel that names agents by id (a sink without address), by id when that
        channel is their sink."""
        if env.channel in self.id_channels or self._names_by_id(env.channel_type):
            sender = env.sender.address
            return sender if (env.channel, sender) in self.by_id else None
        return self.by_address.get(env.sender.address.casefold())

    def _names_by_id(self, channel_type: str) -> bool:
        spec = self.registry.get(channel_type)
        return spec is not None and spec.agent_sink and spec.sink_address is None
