"""The simulated router: the real engine on a throwaway store, a simulated clock, no bus.

Deterministic: the same events, config and customers give the same timeline.
The clock is simulated; new customer and conversation ids and references come
from `seeded_ids` (see `run`); the signing key for conversation tokens is fixed
unless the config sets one; input ids derive from the line's content.

No connector runs, so by default every agent counts as reachable whatever their
sink's channel (configs are simulated before their channels are enabled);
`reachability=True` passes over the agents the daemon could not reach, as it
would. `omnirouter check` names them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from pydantic import ValidationError

from router.bus.base import Topics
from router.config import Config
from router.customers import (
    ImportReport,
    default_region,
    import_customers,
    parse_rows,
    read_file,
)
from router.envelope import (
    Automated,
    Command,
    Envelope,
    Sender,
    StatedIdentity,
    decode,
    describe_errors,
    envelope_id,
)
from router.errors import EnvelopeError
from router.routing import tokens
from router.routing.admission import refusal
from router.routing.engine import Decision, Engine
from router.routing.hours import changes
from router.simulate import outputs
from router.simulate.events import SimulationError, when
from router.simulate.outputs import Entry
from router.store import Store
from router.store import routing as db
from router.store.schema import conversations, incidents

DEFAULT_START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday morning
# Tokens must verify, never be secret here; a fixed key keeps them the same run to run.
SIGNING_KEY = b"omnirouter-simulate"


class Simulation:
    def __init__(self, config: Config, store: Store, *, reachability: bool = False) -> None:
        self.config = config
        self.store = store
        self.topics = Topics(prefix=config.bus.topic_prefix)
        self.engine = Engine(config, store, self.topics, reachability=reachability)
        if not self.engine.ctx.signing_key:
            self.engine.ctx.signing_key = SIGNING_KEY
        self.clock = DEFAULT_START
        self.channel_types = {c.name: c.type for c in config.channels}
        # Everything the router published, in order: (topic, envelope).
        self.published: list[tuple[str, Envelope]] = []
        # Decisions and outputs in the order they happened (what `run` prints).
        self.timeline: list[Entry] = []
        self._labels: dict[str, str] = {}
        self._incidents_seen = 0

    async def start(self, at: datetime | None) -> None:
        self.clock = at or DEFAULT_START
        await self.engine.start(self.clock)
        await self._tick()

    async def load_customers(self, path: Path) -> None:
        """Known customers and their identities, as `omnirouter import-customers` loads them:
        national phone numbers in the configured phone channel's region."""
        report = ImportReport()
        region = default_region(self.config)
        rows = parse_rows(read_file(path), default_region=region, report=report)
        if report.problems:  # a customer left out would change what is recognised
            raise SimulationError(f"{path}: " + "; ".join(report.problems))
        await import_customers(self.store, rows, self.clock, report)

    async def advance(self, to: datetime) -> list[Decision]:
        """Walk the clock to `to`, stopping at every due timer and every moment a shift or
        business hours open or close on the way, in time order, as the daemon would."""
        decisions: list[Decision] = []
        marks = iter(self._boundaries(self.clock, to))
        mark = next(marks, None)
        due = await self._next_due()  # read again only when something may have changed it
        while True:
            stops = [t for t in (due, mark) if t is not None and t <= to]
            if not stops:
                break
            self.clock = max(self.clock, min(stops))
            while mark is not None and mark <= self.clock:
                mark = next(marks, None)
            ticked = await self._tick()
            decisions += ticked
            fire = due is not None and due <= self.clock
            if fire:
                await self.engine.fire_due_timers(self.clock)
                decisions += await self.drain_outbox()
            if fire or ticked:  # only acting schedules or cancels timers
                due = await self._next_due()
        self.clock = max(self.clock, to)
        decisions += await self._tick()
        return decisions

    async def _next_due(self) -> datetime | None:
        async with self.store.transaction(readonly=True) as conn:
            return await db.next_timer_due(conn)

    def _boundaries(self, after: datetime, until: datetime) -> list[datetime]:
        if until <= after:
            return []
        schedules = self.config.business_hours
        found: set[datetime] = set()
        for agent in self.config.agents:
            if agent.schedule is not None and agent.schedule in schedules:
                found.update(changes(schedules[agent.schedule], after, until, agent.timezone))
        names = {c.business_hours for c in self.config.channels} | {self.config.sla.business_hours}
        for name in sorted(n for n in names if n is not None and n in schedules):
            found.update(changes(schedules[name], after, until))
        return sorted(found)

    async def _tick(self) -> list[Decision]:
        decisions = await self.engine.clock_tick(self.clock)
        if decisions:
            await self._record(decisions)
            decisions += await self.drain_outbox(decisions[0].input)
        return decisions

    async def drain_outbox(self, input_id: str | None = None) -> list[Decision]:
        """Report what `input_id` made the router send, and feed records the router sent to
        itself (timer events) back in, each followed by what it made the router send."""
        decisions: list[Decision] = []
        while True:
            async with self.store.transaction() as conn:
                rows = await db.claim_unsent(conn, 500, self.clock, self.clock)
                if not rows:
                    return decisions
                await db.mark_sent(conn, [r.id for r in rows], self.clock)
            for row in rows:
                env = decode(row.value)
                self.published.append((row.topic, env))
                if row.topic == self.topics.inbound:
                    decisions += await self._handle(env)
                elif row.topic == self.topics.agent(env.channel):
                    await self._output(outputs.delivery(env, input_id))
                elif row.topic == self.topics.outbound(env.channel):
                    await self._output(outputs.customer_message(env, input_id))

    async def _handle(self, env: Envelope) -> list[Decision]:
        decisions = await self.engine.handle(env, self.clock)
        await self._record(decisions)
        await self._new_incidents(env.id)
        return decisions + await self.drain_outbox(env.id)

    async def step(self, number: int, obj: dict[str, Any]) -> list[Decision]:
        decisions: list[Decision] = []
        if "at" in obj:
            at = when(obj.pop("at"), number)
            decisions += await self.advance(at)
        if not obj:
            return decisions
        env = await self.envelope(number, obj)
        refused = refusal(self.engine.ctx, env) if "v" in obj else None
        if refused is not None:  # as the daemon would: to the DLQ, nothing applied
            dead = Decision(input=env.id, action="dead_letter", reason={"detail": refused})
            await self._record([dead])
            return [*decisions, dead]
        return decisions + await self._handle(env)

    async def _record(self, decisions: Sequence[Decision]) -> None:
        for d in decisions:
            label = await self.label(d.conversation_id)
            self.timeline.append(Entry(at=self.clock, item=d, conversation=label))

    async def _output(self, out: outputs.Output) -> None:
        label = await self.label(out.conversation_id)
        self.timeline.append(Entry(at=self.clock, item=out, conversation=label))

    async def _new_incidents(self, input_id: str) -> None:
        stmt = sa.select(incidents).where(incidents.c.id > self._incidents_seen)
        async with self.store.transaction(readonly=True) as conn:
            rows = (await conn.execute(stmt.order_by(incidents.c.id))).all()
        for row in rows:
            self._incidents_seen = row.id
            await self._output(outputs.incident(row, input_id))

    async def label(self, conversation_id: str | None) -> str | None:
        """`channel/thread` of a conversation: names it the same way in every run."""
        if conversation_id is None:
            return None
        if conversation_id not in self._labels:
            async with self.store.transaction(readonly=True) as conn:
                row = await db.conversation(conn, conversation_id)
            if row is None:
                return None
            self._labels[conversation_id] = f"{row.channel}/{row.thread_key}"
        return self._labels[conversation_id]

    async def envelope(self, number: int, obj: dict[str, Any]) -> Envelope:
        if "v" in obj:
            obj.setdefault("received_at", self.clock.isoformat())
            try:
                return decode(orjson.dumps(obj))
            except EnvelopeError as exc:
                raise SimulationError(f"line {number}: {exc}") from exc
        native = hashlib.sha256(f"{number}:{orjson.dumps(obj).decode()}".encode()).hexdigest()
        if "agent" in obj:
            return await self._agent_envelope(number, obj, native)
        channel = obj.get("channel")
        if channel not in self.channel_types:
            raise SimulationError(f"line {number}: unknown channel {channel!r}")
        meta = dict(obj.get("meta", {}))
        if "message_id" in obj:
            meta["message_id"] = obj["message_id"]
        try:
            return self._customer_envelope(obj, channel, native, meta)
        except ValidationError as exc:
            raise SimulationError(f"line {number}: {describe_errors(exc)}") from exc

    def _customer_envelope(
        self, obj: dict[str, Any], channel: str, native: str, meta: dict[str, Any]
    ) -> Envelope:
        automated = obj.get("automated")
        return Envelope(
            id=envelope_id(channel, obj.get("id", native)),
            kind="call" if obj.get("kind") == "call" else "message",
            direction="in",
            channel=channel,
            channel_type=self.channel_types[channel],
            thread_key=str(obj.get("thread", obj.get("from"))),
            sender=Sender(address=str(obj.get("from")), name=obj.get("name"), role="customer"),
            received_at=self.clock,
            subject=obj.get("subject"),
            text=obj.get("text", ""),
            automated=None if automated is None else Automated.model_validate(automated),
            identities=[StatedIdentity.model_validate(i) for i in obj.get("identities", [])],
            reply_context=obj.get("reply_context", {}),
            meta=meta,
        )

    async def _agent_envelope(self, number: int, obj: dict[str, Any], native: str) -> Envelope:
        agent = self.engine.agents.get(obj["agent"])
        if agent is None:
            raise SimulationError(f"line {number}: unknown agent {obj['agent']!r}")
        meta: dict[str, Any] = {}
        if "conversation" in obj:
            conv_id = await self._conversation_id(number, str(obj["conversation"]))
            meta["token"] = tokens.issue(self.engine.signing_key, conv_id, agent.id)
        if "token" in obj:  # to simulate a forged or foreign token
            meta["token"] = obj["token"]
        kind: Literal["reply", "command"] = "reply" if "reply" in obj else "command"
        command = None
        if kind == "command":
            command = Command(name=str(obj["command"]), args=[str(a) for a in obj.get("args", [])])
        address = obj.get("from", agent.sink.address or agent.id)
        return Envelope(
            id=envelope_id(f"agent:{agent.id}", obj.get("id", native)),
            kind=kind,
            direction="in",
            channel=agent.sink.channel or agent.sink.type,
            channel_type=agent.sink.type,
            thread_key=f"agent:{agent.id}",
            sender=Sender(address=str(address), name=agent.name, role="agent"),
            received_at=self.clock,
            text=obj.get("reply", ""),
            command=command,
            meta=meta,
        )

    async def _conversation_id(self, number: int, ref: str) -> str:
        channel, sep, thread = ref.partition("/")
        async with self.store.transaction(readonly=True) as conn:
            if sep:
                row = await db.conversation_by_thread(conn, channel, thread)
            else:
                stmt = sa.select(conversations).where(conversations.c.ref == ref)
                row = (await conn.execute(stmt)).first()
        if row is None:
            raise SimulationError(f"line {number}: no conversation {ref!r}")
        return str(row.id)
