"""Stateful property test: random traffic, agent commands and clock moves; invariants hold."""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from router.config import load_config
from router.routing.assign import agent_views, need_of
from router.routing.choose import unqualified_because
from router.simulate import Simulation
from router.store import open_store
from router.store.schema import agent_load, assignments, conversations

CONFIG = Path(__file__).with_name("scenario.yaml")
T0 = datetime.fromisoformat("2026-03-02T10:00:00+00:00")
TEXTS = [
    "refund please",
    "it crashes with an error",
    "this is unacceptable",
    "hello",
    "urgent: invoice wrong",
    "hola, tengo una queja",
]
CUSTOMERS = [
    ("mail", "c1@shop.test"),
    ("mail", "c2@shop.test"),
    ("tg", "101"),
    ("tg", "102"),
    ("chat", "v-1"),
]


class RouterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        # Memory-backed when the machine has it: the store fsyncs every commit.
        shm = Path("/dev/shm")
        self.tmp = tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None)
        self.config = load_config(CONFIG, env={})
        self.capacity = {
            a.id: {**self.config.routing.default_capacity, **a.capacity} for a in self.config.agents
        }
        self.status = {a.id: a.status for a in self.config.agents}
        self.events: list[dict[str, Any]] = []
        self.now = T0
        self.n = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize()
    def start(self) -> None:
        self.store = self.run(open_store(f"sqlite:///{Path(self.tmp.name) / 's.db'}"))
        self.sim = Simulation(self.config, self.store)
        self.run(self.sim.start(T0))

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.run(self.store.close())
        self.loop.close()
        self.tmp.cleanup()

    def step(self, event: dict[str, Any]) -> list[Any]:
        self.n += 1
        decisions = self.run(self.sim.step(self.n, dict(event)))
        self.check_assignments(decisions)
        return decisions

    def check_assignments(self, decisions: list[Any]) -> None:
        """No assignment to an agent who lacks a skill or language, or is away."""
        for d in decisions:
            if d.action != "assign":
                continue
            assert self.status[d.agent] == "available", (d.agent, self.status[d.agent])
            conv = self.run(self._conversation(d.conversation_id))
            need = need_of(self.sim.engine.ctx, conv)
            agent = next(v for v in self.run(self._views()) if v.id == d.agent)
            assert unqualified_because(agent, need) is None

    async def _conversation(self, conversation_id: str) -> Any:
        async with self.store.transaction(readonly=True) as conn:
            stmt = sa.select(conversations).where(conversations.c.id == conversation_id)
            return (await conn.execute(stmt)).one()

    async def _views(self) -> Any:
        async with self.store.transaction(readonly=True) as conn:
            return await agent_views(self.sim.engine.ctx, conn, self.sim.clock)

    @rule(who=st.sampled_from(CUSTOMERS), thread=st.integers(0, 2), text=st.sampled_from(TEXTS))
    def customer_writes(self, who: tuple[str, str], thread: int, text: str) -> None:
        channel, sender = who
        event = {
            "channel": channel,
            "from": sender,
            "thread": f"{sender}#{thread}",
            "text": text,
            "id": f"m{self.n}",
        }
        if channel == "mail":
            event["message_id"] = f"<{sender}#{thread}>"
        published_before = len(self.sim.published)
        decisions = self.step(event)
        self.events.append(event)
        actions = [d.action for d in decisions]
        # Every customer message is assigned, delivered to its owner, or waiting...
        assert {"assign", "deliver", "queue", "queued", "close", "transcript_only"} & set(
            actions
        ), actions
        # ...and a conversation that (re)starts is acknowledged on its own channel.
        if "classify" in actions:
            acks = [
                e
                for t, e in self.sim.published[published_before:]
                if e.meta.get("purpose") == "ack"
            ]
            assert len(acks) == 1 and acks[0].channel == channel

    @rule(data=st.data())
    def same_record_again(self, data: st.DataObject) -> None:
        if not self.events:
            return
        event = data.draw(st.sampled_from(self.events))
        before = len(self.sim.published)
        decisions = self.run(self.sim.step(0, dict(event)))
        assert [d.action for d in decisions] == ["duplicate"]
        assert len(self.sim.published) == before

    @rule(
        agent=st.sampled_from(["ana", "ben"]),
        status=st.sampled_from(["available", "away", "offline"]),
    )
    def presence(self, agent: str, status: str) -> None:
        self.status[agent] = status  # before: becoming available may assign at once
        self.step({"agent": agent, "command": status})

    @rule(agent=st.sampled_from(["ana", "ben"]), data=st.data())
    def resolve_or_reply(self, agent: str, data: st.DataObject) -> None:
        owned = self.run(self._owned(agent))
        if not owned:
            return
        conv = data.draw(st.sampled_from(owned))
        if data.draw(st.booleans()):
            self.step({"agent": agent, "command": "resolve", "conversation": conv.ref})
        else:
            self.step({"agent": agent, "reply": "answer", "conversation": conv.ref})

    async def _owned(self, agent: str) -> list[Any]:
        async with self.store.transaction(readonly=True) as conn:
            stmt = (
                sa.select(conversations)
                .where(conversations.c.owner_agent_id == agent)
                .order_by(conversations.c.channel, conversations.c.thread_key)
            )
            return list((await conn.execute(stmt)).all())

    @rule(minutes=st.integers(1, 90))
    def time_passes(self, minutes: int) -> None:
        self.now = max(self.now, self.sim.clock) + timedelta(minutes=minutes)
        self.step({"at": self.now.isoformat()})

    @invariant()
    def capacity_ownership_and_channels_hold(self) -> None:
        if not hasattr(self, "store"):
            return
        rows, loads, active = self.run(self._state())
        owned: Counter[tuple[str, str]] = Counter()
        for conv in rows:
            if conv.owner_agent_id is not None:
                assert conv.status == "open"
                owned[(conv.owner_agent_id, conv.channel_type)] += 1
                # One conversation, one owner: the active assignment is the owner's.
                assert active.get(conv.id) == [conv.owner_agent_id]
        assert all(len(a) == 1 for a in active.values())
        for (agent, channel_type), count in owned.items():
            assert count <= self.capacity[agent][channel_type]
            assert loads.get((agent, channel_type), 0) == count
        by_id = {c.id: c for c in rows}
        for topic, env in self.sim.published:
            if ".outbound." in topic:  # to a customer: always their conversation's channel/thread
                conv = by_id[env.conversation_id]
                assert (env.channel, env.thread_key) == (conv.channel, conv.thread_key)
                assert topic.endswith(f"outbound.{conv.channel}")

    async def _state(self) -> Any:
        async with self.store.transaction(readonly=True) as conn:
            rows = list((await conn.execute(sa.select(conversations))).all())
            loads = {
                (r.agent_id, r.channel_type): r.open_count
                for r in (await conn.execute(sa.select(agent_load))).all()
            }
            active: dict[str, list[str]] = {}
            stmt = sa.select(assignments).where(assignments.c.ended_at.is_(None))
            for a in (await conn.execute(stmt)).all():
                active.setdefault(a.conversation_id, []).append(a.agent_id)
        return rows, loads, active


RouterMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRouterInvariants = RouterMachine.TestCase
