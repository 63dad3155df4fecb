"""The routing engine's queries that guard consistency, on both engines."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from router.envelope import Sender
from router.store import Store
from router.store import routing as db
from router.store.schema import agent_load
from tests.router.store.test_contract import make_envelope

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def open_count(store: Store, agent_id: str, channel_type: str) -> int | None:
    async with store.transaction(readonly=True) as conn:
        value = await conn.scalar(
            sa.select(agent_load.c.open_count).where(
                agent_load.c.agent_id == agent_id, agent_load.c.channel_type == channel_type
            )
        )
    return None if value is None else int(value)


async def test_capacity_is_taken_only_within_it_and_only_from_available_agents(
    store: Store,
) -> None:
    async with store.transaction() as conn:
        await db.ensure_agents(conn, {"ana": "available", "ben": "away"}, NOW)
    taken = []
    for _ in range(3):
        async with store.transaction() as conn:
            taken.append(await db.take_capacity(conn, "ana", "webchat", 2, NOW))
    assert taken == [True, True, False]
    assert await open_count(store, "ana", "webchat") == 2
    async with store.transaction() as conn:
        assert not await db.take_capacity(conn, "ben", "webchat", 2, NOW)
        assert not await db.take_capacity(conn, "ana", "phone", 0, NOW)
        rows = await db.agent_rows(conn, ["ana", "ben"])
    assert await open_count(store, "ben", "webchat") is None
    assert rows["ana"].last_assigned_at == NOW and rows["ben"].last_assigned_at is None
    async with store.transaction() as conn:
        await db.release_capacity(conn, "ana", "webchat")
        assert await db.take_capacity(conn, "ana", "webchat", 2, NOW)
        await db.set_agent_status(conn, "ana", "offline", NOW)
        await db.release_capacity(conn, "ana", "webchat")
        assert not await db.take_capacity(conn, "ana", "webchat", 2, NOW)
    assert await open_count(store, "ana", "webchat") == 1


async def test_concurrent_takes_never_pass_capacity(store: Store) -> None:
    async with store.transaction() as conn:
        await db.ensure_agents(conn, {"ana": "available"}, NOW)

    async def take() -> bool:
        async with store.transaction() as conn:
            return await db.take_capacity(conn, "ana", "email", 3, NOW)

    results = await asyncio.gather(*(take() for _ in range(8)))
    assert sorted(results) == [False] * 5 + [True] * 3
    assert await open_count(store, "ana", "email") == 3


async def test_an_identity_keeps_its_first_owner(store: Store) -> None:
    async with store.transaction() as conn:
        first = (await db.create_customer(conn, "Ana", NOW)).id
        second = (await db.create_customer(conn, "Someone", NOW)).id
        assert await db.add_identity(conn, "email", "ana@example.com", first, "auto", NOW) == first
        assert await db.add_identity(conn, "email", "ana@example.com", second, "auto", NOW) == first
        assert await db.identity_owner(conn, "email", "ana@example.com") == first


async def mail_conversations(conn: AsyncConnection, n: int) -> list[Any]:
    """`n` new conversations of one new customer, on threads t0, t1, ..."""
    customer = (await db.create_customer(conn, None, NOW)).id
    values = {"channel": "mail", "channel_type": "email", "customer_id": customer}
    return [
        await db.create_conversation(
            conn, {**values, "thread_key": f"t{i}", "opened_at": NOW, "updated_at": NOW}
        )
        for i in range(n)
    ]


async def test_new_conversations_get_distinct_references(store: Store) -> None:
    async with store.transaction() as conn:
        rows = await mail_conversations(conn, 20)
    assert len({r.ref for r in rows}) == 20 and all(len(r.ref) == 7 for r in rows)
    assert [r.thread_key for r in rows] == [f"t{i}" for i in range(20)]
    assert rows[0].status == "open" and rows[0].opened_at == NOW


def test_a_reference_uses_every_symbol_in_every_place() -> None:
    """A reference is drawn at once and read as digits: each place must still take every
    symbol of the alphabet (a wrong base or shift would leave some out, or repeat one)."""
    refs = [db.new_ref() for _ in range(4000)]
    alphabet = set("23456789ABCDEFGHJKLMNPQRSTUVWXYZ")
    assert all(len(ref) == db.REF_LENGTH and set(ref) <= alphabet for ref in refs)
    for place in range(db.REF_LENGTH):
        assert {ref[place] for ref in refs} == alphabet
    assert len(set(refs)) == len(refs)


async def test_last_texts_gives_each_conversations_newest_message(store: Store) -> None:
    async with store.transaction() as conn:
        convs = await mail_conversations(conn, 3)
    for i, (conv, minute) in enumerate([(0, 1), (0, 5), (0, 3), (1, 2)]):
        env = make_envelope(f"<m{i}@x>").model_copy(
            update={
                "conversation_id": convs[conv].id,
                "received_at": NOW + timedelta(minutes=minute),
                "text": f"at minute {minute}",
            }
        )
        assert await store.record_message(env)
    async with store.transaction(readonly=True) as conn:
        texts = await db.last_texts(conn, [c.id for c in convs])
        assert await db.last_texts(conn, []) == {}
    assert texts == {convs[0].id: "at minute 5", convs[1].id: "at minute 2"}


async def test_a_queue_position_counts_who_waits_ahead_in_its_line_only(store: Store) -> None:
    """Same queue and channel type, in queue order (rank, then wait start, ...): ties on the
    rank are broken by times, compared as the store keeps them."""
    async with store.transaction() as conn:
        rows = await mail_conversations(conn, 5)
        waits = [  # (rank, waiting since, queue): t3 is another queue, t4 does not wait
            (10.0, NOW + timedelta(seconds=2), "general"),
            (10.0, NOW + timedelta(seconds=1), "general"),
            (5.0, NOW + timedelta(seconds=3), "general"),
            (1.0, NOW, "billing"),
        ]
        for row, (rank, since, queue) in zip(rows, waits, strict=False):
            await db.update_conversation(
                conn, row.id, queue_rank=rank, waiting_since=since, queue=queue
            )
        line = await db.waiting_in(conn, "general", "email", 10)
        assert [r.thread_key for r in line] == ["t2", "t1", "t0"]
        assert [await db.queue_position(conn, r) for r in line] == [1, 2, 3]
        assert [r.thread_key for r in await db.waiting_in(conn, "general", "email", 2)] == [
            "t2",
            "t1",
        ]
        assert await db.waiting_in(conn, "general", "webchat", 10) == []
        [billing] = await db.waiting_in(conn, "billing", "email", 10)
        assert await db.queue_position(conn, billing) == 1


async def test_a_promise_is_closed_once_and_an_agents_reply_is_found_by_time(
    store: Store,
) -> None:
    async with store.transaction() as conn:
        [conv] = await mail_conversations(conn, 1)
        first = await db.add_promise(
            conn, conv.id, "ana", "call back", NOW + timedelta(hours=2), NOW
        )
        second = await db.add_promise(conn, conv.id, "ana", "refund", NOW + timedelta(hours=3), NOW)
        assert first.state == "open" and first.due_at == NOW + timedelta(hours=2)
    async with store.transaction() as conn:
        assert await db.close_promise(conn, first.id, "kept", "ana", NOW)
        assert not await db.close_promise(conn, first.id, "broken", None, NOW)  # once
        open_ones = await db.promises_of(conn, conv.id, open_only=True)
        every = await db.promises_of(conn, conv.id)
        latest = await db.promises_of(conn, conv.id, limit=1)
    assert [p.id for p in open_ones] == [second.id]
    assert [(p.id, p.state) for p in every] == [(first.id, "kept"), (second.id, "open")]
    assert [p.id for p in latest] == [second.id]
    reply = make_envelope("<r1@x>").model_copy(
        update={
            "conversation_id": conv.id,
            "kind": "reply",
            "direction": "out",
            "sender": Sender(address="ana", name="Ana", role="agent"),
            "received_at": NOW + timedelta(minutes=30),
        }
    )
    assert await store.record_message(reply)
    async with store.transaction(readonly=True) as conn:
        assert await db.agent_wrote_since(conn, conv.id, NOW + timedelta(minutes=30))
        assert not await db.agent_wrote_since(conn, conv.id, NOW + timedelta(minutes=31))
