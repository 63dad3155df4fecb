"""The store contract, run against SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from router.envelope import Envelope, Sender, envelope_id
from router.errors import StoreError
from router.store import Store, head, open_store
from router.store.schema import (
    agents,
    assignments,
    conversations,
    customers,
    identities,
    messages,
    metadata,
    timers,
)

EXPECTED_TABLES = {
    "customers",
    "outbox",
    "link_suggestions",
    "identities",
    "agents",
    "agent_load",
    "conversations",
    "messages",
    "assignments",
    "timers",
    "incidents",
    "praise",
    "processed",
    "promises",
    "checkpoints",
}


def make_envelope(native: str = "<m1@example.com>", **changes: object) -> Envelope:
    fields: dict[str, object] = {
        "id": envelope_id("support-email", native),
        "kind": "message",
        "direction": "in",
        "channel": "support-email",
        "channel_type": "email",
        "thread_key": "<root@example.com>",
        "sender": Sender(address="ana@example.com", name="Ana Pérez"),
        "sent_at": datetime(2025, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5))),
        "received_at": datetime(2025, 3, 1, 14, 31, 2, 123456, tzinfo=UTC),
        "subject": "Order 1234",
        "text": "Where is my order?",
        "meta": {"message_id": native, "references": []},
    }
    fields.update(changes)
    return Envelope.model_validate(fields)


async def seed_conversation(store: Store, conversation_id: str = "c1") -> None:
    now = datetime.now(UTC)
    async with store.transaction() as conn:
        await conn.execute(sa.insert(customers).values(id="cust1", display_name="Ana"))
        await conn.execute(sa.insert(agents).values(id="bob", status="available"))
        await conn.execute(sa.insert(agents).values(id="eve", status="available"))
        await conn.execute(
            sa.insert(conversations).values(
                id=conversation_id,
                channel="support-email",
                channel_type="email",
                thread_key="<root@example.com>",
                customer_id="cust1",
                opened_at=now,
            )
        )


# --- schema ------------------------------------------------------------------------------


async def test_migrations_create_every_table(store: Store) -> None:
    async with store.transaction(readonly=True) as conn:
        names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    assert EXPECTED_TABLES <= names
    assert names - EXPECTED_TABLES == {"alembic_version"}
    assert await store.schema_version() == head()


async def test_migrated_schema_matches_the_metadata(store: Store) -> None:
    def diff(conn: sa.Connection) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))

    async with store.transaction(readonly=True) as conn:
        assert await conn.run_sync(diff) == []


async def test_migrating_twice_is_a_no_op(store_url: str) -> None:
    first = await open_store(store_url)
    try:
        assert await first.record_message(make_envelope())
        await first.migrate()
        async with first.transaction(readonly=True) as conn:
            tables = await conn.run_sync(lambda c: sorted(sa.inspect(c).get_table_names()))
    finally:
        await first.close()
    second = await open_store(store_url)
    try:
        assert await second.schema_version() == head()
        async with second.transaction(readonly=True) as conn:
            assert await conn.run_sync(lambda c: sorted(sa.inspect(c).get_table_names())) == tables
            assert await conn.scalar(sa.select(sa.func.count()).select_from(messages)) == 1
    finally:
        await second.close()


async def test_open_without_migrate_leaves_the_database_alone(store_url: str) -> None:
    store = await open_store(store_url, migrate=False)
    try:
        assert await store.schema_version() is None
        await store.migrate()
        assert await store.schema_version() == head()
    finally:
        await store.close()


async def test_concurrent_migrations_serialize(store_url: str) -> None:
    stores = await asyncio.gather(*(open_store(store_url, migrate=False) for _ in range(3)))
    try:
        await asyncio.gather(*(s.migrate() for s in stores))
        assert {await s.schema_version() for s in stores} == {head()}
    finally:
        for s in stores:
            await s.close()


# --- messages ----------------------------------------------------------------------------


async def test_record_message_is_idempotent(store: Store) -> None:
    env = make_envelope()
    assert await store.record_message(env) is True
    assert await store.record_message(env) is False
    assert await store.record_message(make_envelope("<m2@example.com>")) is True
    async with store.transaction(readonly=True) as conn:
        rows = (await conn.execute(sa.select(messages).order_by(messages.c.id))).mappings().all()
    assert len(rows) == 2
    row = next(r for r in rows if r["id"] == env.id)
    assert row["conversation_id"] is None
    assert row["sender_address"] == "ana@example.com"
    assert row["received_at"] == env.received_at
    assert row["received_at"].tzinfo is not None
    assert row["sent_at"] == env.sent_at
    assert Envelope.model_validate(row["envelope"]) == env


async def test_record_message_inside_a_caller_transaction_rolls_back_with_it(
    store: Store,
) -> None:
    env = make_envelope()
    with pytest.raises(RuntimeError):
        async with store.transaction() as conn:
            assert await store.record_message(env, conn=conn) is True
            raise RuntimeError("the effect failed")
    assert await store.record_message(env) is True


async def test_record_message_of_one_id_from_two_connections_stores_it_once(
    store_url: str,
) -> None:
    a, b = await open_store(store_url), await open_store(store_url, migrate=False)
    try:
        env = make_envelope()
        # Both race, many times over.
        results = await asyncio.gather(*(s.record_message(env) for s in (a, b) * 5))
        assert sorted(results) == [False] * 9 + [True]

        # One holds its insert uncommitted; the other waits for it, then sees it.
        env2 = make_envelope("<m2@example.com>")
        async with a.transaction() as conn:
            assert await a.record_message(env2, conn=conn) is True
            waiting = asyncio.create_task(b.record_message(env2))
            await asyncio.sleep(0.3)
            assert not waiting.done()
        assert await waiting is False

        async with a.transaction(readonly=True) as conn:
            count = await conn.scalar(sa.select(sa.func.count()).select_from(messages))
        assert count == 2
    finally:
        await a.close()
        await b.close()


async def test_a_lock_wait_that_runs_out_is_retriable(store_url: str) -> None:
    a = await open_store(store_url)
    b = await open_store(store_url, migrate=False, lock_timeout=0.2)
    try:
        env = make_envelope()
        async with a.transaction() as conn:
            await a.record_message(env, conn=conn)
            with pytest.raises(StoreError) as caught:
                await b.record_message(env)
        assert caught.value.retriable is True
    finally:
        await a.close()
        await b.close()


async def test_mark_processed_once_per_consumer(store: Store) -> None:
    assert await store.mark_processed("router", "e1") is True
    assert await store.mark_processed("router", "e1") is False
    assert await store.mark_processed("sink:email", "e1") is True


async def test_a_batch_is_deduped_in_one_query_and_noted_in_one_statement(store: Store) -> None:
    ids = [f"e{n}" for n in range(30)]
    await store.mark_processed("router", "e3")
    async with store.transaction() as conn:
        assert await store.processed_among("router", ids, conn=conn) == {"e3"}
        fresh = [i for i in ids if i != "e3"]
        await store.mark_processed_all("router", fresh, conn=conn)
        assert await store.processed_among("router", ids, conn=conn) == set(ids)
        assert await store.processed_among("sink:email", ids, conn=conn) == set()
    # Noted by another meanwhile (a second router): the whole unit must roll back.
    with pytest.raises(StoreError, match="2 of 3 records were applied") as caught:
        async with store.transaction() as conn:
            await store.mark_processed_all("router", ["e1", "e2", "new"], conn=conn)
    assert caught.value.retriable is True
    async with store.transaction() as conn:
        assert await store.processed_among("router", ["new"], conn=conn) == set()


# --- constraints ---------------------------------------------------------------------------


async def test_a_second_active_assignment_is_refused(store: Store) -> None:
    await seed_conversation(store)
    async with store.transaction() as conn:
        await conn.execute(
            sa.insert(assignments).values(
                conversation_id="c1", agent_id="bob", reason={"rule": "x"}
            )
        )
    with pytest.raises(StoreError) as caught:
        async with store.transaction() as conn:
            await conn.execute(
                sa.insert(assignments).values(
                    conversation_id="c1", agent_id="eve", reason={"rule": "y"}
                )
            )
    assert caught.value.retriable is False
    assert "IntegrityError" in str(caught.value) or "UniqueViolation" in str(caught.value)

    # Once the first ends, a new one (a transfer) is allowed.
    async with store.transaction() as conn:
        await conn.execute(
            sa.update(assignments)
            .where(assignments.c.agent_id == "bob")
            .values(ended_at=datetime.now(UTC), end_reason="transferred")
        )
        await conn.execute(
            sa.insert(assignments).values(conversation_id="c1", agent_id="eve", reason={})
        )
        active = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(assignments)
            .where(assignments.c.ended_at.is_(None))
        )
    assert active == 1


async def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    with pytest.raises(StoreError):
        async with store.transaction() as conn:
            await conn.execute(sa.insert(customers).values(id="cust1"))
            await conn.execute(sa.insert(customers).values(id="cust1"))
    async with store.transaction(readonly=True) as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(customers)) == 0


@pytest.mark.parametrize(
    ("table", "row", "why"),
    [
        (identities, {"kind": "email", "value": "a@x", "customer_id": "nobody"}, "foreign key"),
        (agents, {"id": "x", "status": "sleeping"}, "check"),
        (
            conversations,
            {
                "id": "c2",
                "channel": "support-email",
                "channel_type": "email",
                "thread_key": "<root@example.com>",
                "customer_id": "cust1",
            },
            "unique (channel, thread_key)",
        ),
        (timers, {"key": "sla:c1", "kind": "first_response", "due_at": datetime.now(UTC)}, "key"),
    ],
)
async def test_constraints_hold(
    store: Store, table: sa.Table, row: dict[str, object], why: str
) -> None:
    await seed_conversation(store)
    async with store.transaction() as conn:
        await conn.execute(
            sa.insert(timers).values(key="sla:c1", kind="first_response", due_at=datetime.now(UTC))
        )
    with pytest.raises(StoreError) as caught:
        async with store.transaction() as conn:
            await conn.execute(sa.insert(table).values(row))
    assert caught.value.retriable is False, why


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        async with store.transaction() as conn:
            await conn.execute(
                sa.insert(timers).values(key="k", kind="ack", due_at=datetime(2025, 1, 1))
            )


# --- checkpoints -------------------------------------------------------------------------


async def test_checkpoints_round_trip(store: Store) -> None:
    assert await store.get_checkpoint("support-email", "INBOX") is None
    await store.set_checkpoint("support-email", "INBOX", "1700000000:41")
    assert await store.get_checkpoint("support-email", "INBOX") == "1700000000:41"
    await store.set_checkpoint("support-email", "INBOX", "1700000000:42")
    await store.set_checkpoint("support-email", "Archive", "5:1")
    await store.set_checkpoint("sales-email", "INBOX", "9:9")
    assert await store.get_checkpoint("support-email", "INBOX") == "1700000000:42"
    assert await store.get_checkpoint("support-email", "Archive") == "5:1"
    assert await store.get_checkpoint("sales-email", "INBOX") == "9:9"


async def test_prune_checkpoints_forgets_only_old_keys_with_the_prefix(store: Store) -> None:
    for key in ("seen:a", "seen:b", "seen%x", "auto:e@x", "INBOX"):
        await store.set_checkpoint("support-email", key, "1")
    await store.set_checkpoint("sales-email", "seen:a", "1")
    cut = datetime.now(UTC) + timedelta(seconds=1)  # everything above is older
    await asyncio.sleep(1.1)
    await store.set_checkpoint("support-email", "seen:c", "new")
    assert await store.prune_checkpoints("support-email", "seen:", cut, limit=1) == 1
    assert await store.prune_checkpoints("support-email", "seen:", cut) == 1
    assert await store.prune_checkpoints("support-email", "seen:", cut) == 0
    kept = {
        key
        for key in ("seen:a", "seen:b", "seen:c", "seen%x", "auto:e@x", "INBOX")
        if await store.get_checkpoint("support-email", key) is not None
    }
    assert kept == {"seen:c", "seen%x", "auto:e@x", "INBOX"}
    assert await store.get_checkpoint("sales-email", "seen:a") == "1"


# --- lifecycle ---------------------------------------------------------------------------


async def test_ping_and_close(store_url: str) -> None:
    store = await open_store(store_url)
    assert await store.ping() is True
    await store.close()
    assert await store.ping() is False
    await store.close()  # twice is fine
    with pytest.raises(StoreError) as caught:
        await store.record_message(make_envelope())
    assert caught.value.retriable is False


async def test_backend(store: Store, store_url: str) -> None:
    assert store.backend == store_url.split(":", 1)[0]


async def test_published_outbox_rows_are_pruned_after_they_age(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from router.store import routing as db

    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    async with store.transaction() as conn:
        for i in range(5):
            await db.add_outbox(conn, "t", b"k", b"%d" % i, t0)
        rows = await db.claim_unsent(conn, 10, t0, t0)
        await db.mark_sent(conn, [r.id for r in rows[:3]], t0)
    async with store.transaction() as conn:
        assert await db.prune_outbox(conn, t0 - timedelta(seconds=1), 100) == 0
        assert await db.prune_outbox(conn, t0 + timedelta(seconds=1), 2) == 2
        assert await db.prune_outbox(conn, t0 + timedelta(seconds=1), 100) == 1
        later = t0 + timedelta(seconds=1)  # the first claim's lease (until t0) is over
        assert [bytes(r.value) for r in await db.claim_unsent(conn, 10, later, later)] == [
            b"3",
            b"4",
        ]


async def test_outbox_rows_are_leased_released_and_dead_ones_kept(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from router.store import routing as db

    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    lease = t0 + timedelta(seconds=60)
    async with store.transaction() as conn:
        for i in range(4):
            await db.add_outbox(conn, "t", b"k", b"%d" % i, t0)
        first = await db.claim_unsent(conn, 2, t0, lease)
        # Leased rows are not offered again while the lease lives...
        second = await db.claim_unsent(conn, 10, t0, lease)
        assert [bytes(r.value) for r in first] == [b"0", b"1"]
        assert [bytes(r.value) for r in second] == [b"2", b"3"]
        assert await db.claim_unsent(conn, 10, t0, lease) == []
        # ...but are once it expired (their publisher died), or once given back.
        assert len(await db.claim_unsent(conn, 10, lease + timedelta(seconds=1), lease)) == 4
        await db.release_claims(conn, [first[0].id])
        assert [bytes(r.value) for r in await db.claim_unsent(conn, 10, t0, lease)] == [b"0"]
        await db.mark_dead(conn, first[0].id, "too large", t0)
        await db.mark_sent(conn, [r.id for r in first[1:] + second], t0)
        assert await db.unsent_count(conn) == 0
        # Published rows age out; the dead-lettered one is kept for review.
        assert await db.prune_outbox(conn, t0 + timedelta(days=1), 100) == 3
