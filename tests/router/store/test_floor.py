"""The floor for the metrics (`router.store.floor`), on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from router.store import Store
from router.store import routing as db
from router.store.floor import read_floor

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_queues_agents_load_and_unsent_outputs(store: Store) -> None:
    async with store.transaction() as conn:
        await db.ensure_agents(conn, {"ana": "available", "ben": "away", "gone": "available"}, NOW)
        assert await db.take_capacity(conn, "ana", "email", 5, NOW)
        assert await db.take_capacity(conn, "ana", "email", 5, NOW)
        customer = (await db.create_customer(conn, "Ana", NOW)).id

        async def waiting(thread: str, queue: str | None, minutes: int, due: int | None) -> None:
            await db.create_conversation(
                conn,
                {
                    "channel": "mail",
                    "channel_type": "email",
                    "thread_key": thread,
                    "customer_id": customer,
                    "queue": queue,
                    "waiting_since": NOW - timedelta(minutes=minutes),
                    "sla_due_at": None if due is None else NOW + timedelta(minutes=due),
                },
            )

        await waiting("t1", "general", 30, -5)  # past its due time
        await waiting("t2", "general", 10, 20)
        await waiting("t3", None, 1, None)  # no queue, no SLA
        assigned = {"channel": "mail", "channel_type": "email", "thread_key": "t4"}
        await db.create_conversation(conn, {**assigned, "customer_id": customer})  # not waiting
        await db.add_outbox(conn, "omni.outbound.mail", b"k", b"v", NOW)
        await db.add_outbox(conn, "omni.outbound.mail", b"k", b"w", NOW)
    floor = await read_floor(store, NOW, {"ana", "ben"})  # `gone` left the config
    assert floor.queues == {"general": (2, 1800.0, 1), "": (1, 60.0, 0)}
    assert floor.agents == {"available": 1, "away": 1}
    assert floor.load == {"email": 2}
    assert floor.outbox == {"omni.outbound.mail": 2}
