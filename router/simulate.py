"""`omnirouter simulate`: run a file of events through the real routing code.

Each line of the input is one JSON object: an envelope (full, or the short
customer form below), or an agent's command or reply. An optional `"at"`
(ISO 8601) moves the simulated clock forward first; timers that fall due on
the way fire in order, as they would in the daemon. The store is a throwaway
SQLite file and nothing reaches a bus: outputs are reported as decisions, one
JSON line each.

Short forms:
  {"at": "...", "channel": "support-email", "from": "ana@example.com",
   "name": "Ana", "thread": "t1", "subject": "...", "text": "..."}
  {"agent": "ana", "command": "resolve", "conversation": "support-email/t1"}
  {"agent": "ana", "command": "transfer", "args": ["billing", "refund"], "conversation": "..."}
  {"agent": "ana", "reply": "Hello!", "conversation": "support-email/t1"}
  {"agent": "ana", "command": "available"}
`conversation` is `channel/thread` or the conversation's reference.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

import orjson
import sqlalchemy as sa

from router.bus.base import Topics
from router.config import Config
from router.envelope import Envelope, Sender, decode, envelope_id
from router.errors import EnvelopeError, OmniError
from router.routing import tokens
from router.routing.admission import refusal
from router.routing.engine import Decision, Engine
from router.store import Store, open_store
from router.store import routing as db
from router.store.schema import conversations

DEFAULT_START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday morning


class SimulationError(OmniError):
    """A line of the events file is not something simulate understands."""


def read_events(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise SimulationError(f"line {number}: not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise SimulationError(f"line {number}: expected a JSON object")
        yield number, obj


class Simulation:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.topics = Topics(prefix=config.bus.topic_prefix)
        self.engine = Engine(config, store, self.topics)
        self.clock = DEFAULT_START
        self.channel_types = {c.name: c.type for c in config.channels}
        # Everything the router published, in order: (topic, envelope).
        self.published: list[tuple[str, Envelope]] = []

    async def start(self, at: datetime | None) -> None:
        self.clock = at or DEFAULT_START
        await self.engine.start(self.clock)
        await self.engine.clock_tick(self.clock)

    async def advance(self, to: datetime) -> list[Decision]:
        """Fire the timers due up to `to`, one due time at a time, then set the clock."""
        decisions: list[Decision] = []
        while True:
            async with self.store.transaction(readonly=True) as conn:
                due = await db.next_timer_due(conn)
            if due is None or due > to:
                break
            self.clock = max(self.clock, due)
            decisions += await self.engine.clock_tick(self.clock)
            await self.engine.fire_due_timers(self.clock)
            decisions += await self.drain_outbox()
        self.clock = max(self.clock, to)
        decisions += await self.engine.clock_tick(self.clock)
        return decisions

    async def drain_outbox(self) -> list[Decision]:
        """Feed records the router sent to itself (timer events) back in; drop the rest."""
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
                    decisions += await self.engine.handle(env, self.clock)

    async def step(self, number: int, obj: dict[str, Any]) -> list[Decision]:
        decisions: list[Decision] = []
        if "at" in obj:
            at = _when(obj.pop("at"), number)
            decisions += await self.advance(at)
        if not obj:
            return decisions
        env = await self.envelope(number, obj)
        refused = refusal(self.engine.ctx, env) if "v" in obj else None
        if refused is not None:  # as the daemon would: to the DLQ, nothing applied
            decisions.append(
                Decision(input=env.id, action="dead_letter", reason={"detail": refused})
            )
            return decisions
        decisions += await self.engine.handle(env, self.clock)
        decisions += await self.drain_outbox()
        return decisions

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
        if kind == "command":
            meta["command"] = {"name": obj["command"], "args": list(obj.get("args", []))}
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


def _when(value: Any, number: int) -> datetime:
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise SimulationError(f"line {number}: at: {exc}") from exc
    if at.tzinfo is None:
        raise SimulationError(f"line {number}: at: give a time zone (e.g. Z or +01:00)")
    return at.astimezone(UTC)


async def run(config: Config, events: TextIO, out: TextIO) -> int:
    """Simulate `events`; print one JSON line per decision. Returns the exit code."""
    parsed = list(read_events(events))
    first_at = next((_when(o["at"], n) for n, o in parsed if "at" in o), None)
    with tempfile.TemporaryDirectory(prefix="omnirouter-simulate-") as tmp:
        store = await open_store(f"sqlite:///{Path(tmp) / 'store.sqlite3'}")
        try:
            sim = Simulation(config, store)
            await sim.start(first_at)
            for number, obj in parsed:
                for decision in await sim.step(number, obj):
                    out.write(orjson.dumps(decision.as_json()).decode() + "\n")
        finally:
            await store.close()
    return 0
