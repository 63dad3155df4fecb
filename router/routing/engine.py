"""The routing engine: one record in, its effects in the store and its outputs in the outbox.

For every record (in order per conversation key): dedupe by envelope id,
then, in ONE store transaction, apply the record and write every record it
produces (acknowledgements and replies to customers, deliveries to agents,
timer events) to the outbox table. The daemon publishes the outbox after the
commit, so a crash at any point neither loses an output nor repeats an effect:
a redelivered record is recognised as processed, and unsent outputs are
published on the next pass. Output ids are derived from the input id, so
their consumers can dedupe a republished output too. `handle_batch` applies
several records, each exactly so, in one transaction (all or none of them).

The decisions themselves are pure functions (`classify`, `choose_agent`,
business-hours math); the modules beside this one gather their inputs from
the store and apply their results:

- `messages`: customers, conversations, classification, acknowledgement;
- `assign`: choosing, assigning, queueing and draining;
- `agents`: agents' replies and commands;
- `timers`: SLA warnings and breaches, widening, follow-ups;
- `delivery`: what goes to agents (with context) and to customers;
- `failures`: delivery failures and bounces, recorded and told to the owner.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import structlog

from router.bus.base import Topics
from router.config import AgentConfig, Config
from router.connector import ConnectorSpec
from router.envelope import Envelope, Sender, encode, envelope_id
from router.routing import agents, failures, messages, praise, standing, timers
from router.routing.assign import drain
from router.routing.context import Decision, Routing, Unit
from router.routing.hours import on_shift
from router.routing.queueing import queue_rank
from router.store import Store
from router.store import routing as db
from router.store.conn import Conn

log = structlog.get_logger(__name__)

__all__ = ["CONSUMER", "Decision", "Engine"]

CONSUMER = "router"
# The channel (and channel type) of timer events that belong to no conversation.
ROUTER_CHANNEL = "router"


class Engine:
    def __init__(
        self,
        config: Config,
        store: Store,
        topics: Topics,
        *,
        registry: Mapping[str, ConnectorSpec] | None = None,
        reachability: bool = True,
    ) -> None:
        self.ctx = Routing(config, store, topics, registry=registry, reachability=reachability)
        self.store = store
        self.topics = topics
        self._on_shift: set[str] | None = None
        self._rerank = False  # the aging step changed: stored queue ranks are stale
        # Told the kinds of the incidents each committed transaction recorded (metrics).
        self.on_incidents: Callable[[Sequence[str]], None] | None = None

    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def agents(self) -> dict[str, AgentConfig]:
        return self.ctx.agents

    @property
    def signing_key(self) -> bytes:
        return self.ctx.signing_key

    async def configure(self, config: Config, now: datetime) -> None:
        """Take a reloaded config. Agents it adds get their rows first (in a store
        transaction), so they can be given work as soon as it routes; if that fails,
        it raises and the running config stays. Other state in the store is untouched,
        except that a new `routing.aging_step` ranks the waiting conversations again
        (next tick)."""
        await self._ensure_agents(config, now)
        if config.routing.aging_step != self.config.routing.aging_step:
            self._rerank = True
        self.ctx.configure(config)

    async def start(self, now: datetime) -> None:
        """Create agent rows and the signing key (once, kept in the store)."""
        await self._ensure_agents(self.config, now)
        if not self.ctx.signing_key:
            stored = await self.store.get_checkpoint(CONSUMER, "signing_key")
            if stored is None:
                await self.store.set_checkpoint(CONSUMER, "signing_key", secrets.token_hex(32))
                stored = await self.store.get_checkpoint(CONSUMER, "signing_key")
            assert stored is not None
            self.ctx.signing_key = stored.encode()

    async def _ensure_agents(self, config: Config, now: datetime) -> None:
        async def ensure(conn: Conn) -> None:
            await db.ensure_agents(conn, {a.id: a.status for a in config.agents}, now)
            await praise.schedule_digest(self.ctx, conn, now)

        await self.ctx.work(ensure)

    async def handle(self, envelope: Envelope, now: datetime) -> list[Decision]:
        """Apply one record; idempotent by envelope id."""
        unit = await self.ctx.work(
            lambda conn: self._applied(Unit(conn, now, envelope.id), envelope)
        )
        self._committed([unit])
        return unit.decisions

    async def _applied(self, unit: Unit, envelope: Envelope) -> Unit:
        await self._apply(unit, envelope)
        return unit

    async def handle_batch(
        self,
        envelopes: Sequence[Envelope],
        clock: Callable[[], datetime],
        *,
        handover: db.Handover | None = None,
    ) -> list[list[Decision]]:
        """Apply records in order in ONE transaction: a first part of them (at least one),
        or none if it raises. It ends early when another writer of this process waits for
        its turn (SQLite: the transaction holds the write lock), so a batch never makes the
        clock's due timers wait; the caller applies the rest in the next call.

        Each record is applied as `handle` would, at its own time (`clock()`, read
        when its turn comes), as when handled one by one: queue positions and timer
        keys are built from it. With one time for the batch, conversations queued
        in it would tie, and wait in channel and thread order instead of arrival.

        With a `handover`, the outputs it writes are leased and kept there for the
        caller to publish from memory (see `router.outbox`).
        """

        async def batch(conn: Conn) -> list[Unit]:
            if handover is None:
                return await applied(conn)
            with db.keeping_outputs(handover):
                return await applied(conn)

        async def applied(conn: Conn) -> list[Unit]:
            units: list[Unit] = []
            # Dedupe: one query for the batch; its marks are written in one at the end.
            seen = await self.store.processed_among(CONSUMER, [e.id for e in envelopes], conn=conn)
            fresh: list[str] = []
            for e in envelopes:
                if units and self.store.writers_waiting:
                    break  # another writer (the clock's due timers) goes next; the rest after
                units.append(Unit(conn, clock(), e.id))
                new = e.id not in seen  # a record seen earlier in this batch is a duplicate too
                if new:
                    seen.add(e.id)
                    fresh.append(e.id)
                await self._apply(units[-1], e, new=new)
            await self.store.mark_processed_all(CONSUMER, fresh, conn=conn)
            return units

        units = await self.ctx.work(batch)
        self._committed(units)
        return [unit.decisions for unit in units]

    def _committed(self, units: Sequence[Unit]) -> None:
        kinds = [kind for unit in units for kind in unit.incidents]
        if kinds and self.on_incidents is not None:
            self.on_incidents(kinds)

    async def _apply(
        self, unit: Unit, envelope: Envelope, *, new: bool | None = None
    ) -> list[Decision]:
        """Apply one record in `unit`'s transaction. `new`: whether the caller found it not
        yet processed (and notes it so itself); None: noted here, which tells."""
        ctx = self.ctx
        if new is None:
            new = await self.store.mark_processed(CONSUMER, envelope.id, conn=unit.conn)
        if not new:
            unit.decide(
                "duplicate",
                conversation_id=await self._subject(unit, envelope),
                reason={"detail": "already processed"},
            )
            return unit.decisions
        if envelope.kind in ("message", "call") and envelope.sender.role == "customer":
            await messages.customer_message(ctx, unit, envelope)
        elif envelope.kind == "reply" and envelope.sender.role == "agent":
            await agents.agent_reply(ctx, unit, envelope)
        elif envelope.kind == "command" and envelope.sender.role == "system":
            await failures.system_event(ctx, unit, envelope)
        elif envelope.kind == "command":
            await agents.command(ctx, unit, envelope)
        elif envelope.kind == "timer":
            await timers.timer(ctx, unit, envelope)
        else:
            await self.store.add_message(envelope, conn=unit.conn)
            unit.decide(
                "ignore",
                reason={"detail": f"{envelope.kind} from {envelope.sender.role} not routed"},
            )
        await standing.notify(ctx, unit)
        return unit.decisions

    async def _subject(self, unit: Unit, envelope: Envelope) -> str | None:
        """The conversation a duplicate belongs to: its own, the stored message's, or
        (an agent's input) the one its token names."""
        if envelope.conversation_id:
            return envelope.conversation_id
        stored = await db.message_conversation(unit.conn, envelope.id)
        if stored is not None or envelope.sender.role != "agent":
            return stored
        agent_id = self.ctx.agent_of(envelope)
        return await agents.named_conversation(self.ctx, unit, envelope, agent_id)

    async def fire_due_timers(
        self, now: datetime, limit: int = 200, *, conn: Conn | None = None
    ) -> int:
        """Turn due timers into `timer` records on the inbound topic (via the outbox), in
        the caller's transaction when given `conn`."""
        if conn is None:
            return await self.ctx.work(lambda own: self.fire_due_timers(now, limit, conn=own))
        rows = await db.claim_due_timers(conn, now, limit)
        for row in rows:
            conv = None
            if row.conversation_id:
                conv = await db.conversation(conn, row.conversation_id)
            env = Envelope(
                id=envelope_id("timer", row.key),
                kind="timer",
                direction="in",
                # Keyed like the conversation's messages: in order with them.
                channel=conv.channel if conv is not None else ROUTER_CHANNEL,
                channel_type=conv.channel_type if conv is not None else ROUTER_CHANNEL,
                thread_key=conv.thread_key if conv is not None else row.key,
                conversation_id=row.conversation_id,
                sender=Sender(address="omnirouter", role="system"),
                received_at=now,
                sent_at=row.due_at,
                meta={"timer": row.kind, "key": row.key, "payload": row.payload},
            )
            await db.send_outbox(conn, self.topics.inbound, env.bus_key(), encode(env), now)
        return len(rows)

    async def next_timer_due(self) -> datetime | None:
        """When the next pending timer is due (None: none is pending)."""
        async with self.store.transaction(readonly=True) as conn:
            return await db.next_timer_due(conn)

    async def clock_tick(self, now: datetime) -> list[Decision]:
        """Drain queues for agents whose shift just started (capacity appeared)."""
        if self._rerank:
            await self._rank_waiting_again()
        config = self.config
        on = {a.id for a in config.agents if on_shift(a, config.business_hours, now)}
        started = sorted(on - self._on_shift) if self._on_shift is not None else []
        self._on_shift = on
        if not started:
            return []

        async def shift_start(conn: Conn) -> Unit:
            unit = Unit(conn, now, f"shift:{now.isoformat()}")
            unit.decide("shift_start", reason={"agents": started})
            await drain(self.ctx, unit, started)
            await standing.notify(self.ctx, unit)
            return unit

        unit = await self.ctx.work(shift_start)
        self._committed([unit])
        return unit.decisions

    async def _rank_waiting_again(self) -> None:
        step = self.config.routing.aging_step

        async def rank(conn: Conn) -> dict[str, float]:
            ranks = {
                row.id: queue_rank(row.priority, row.waiting_since, step)
                for row in await db.waiting_positions(conn)
            }
            await db.set_queue_ranks(conn, ranks)
            return ranks

        ranks = await self.ctx.work(rank)
        self._rerank = False
        log.info("queue ranks recomputed for a new aging step", waiting=len(ranks))

    async def waiting_count(self) -> int:
        async with self.store.transaction(readonly=True) as conn:
            return await db.waiting_count(conn)
