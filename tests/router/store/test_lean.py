"""Built statements run straight through the driver's cursor (SQLite's, psycopg's) read and
write exactly what SQLAlchemy's own execution does (`router.store.lean`). Each test runs on
both backends (the `store` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from router.errors import StoreError
from router.store import Store, lean
from router.store import routing as db
from router.store.conn import Conn, execute_together, send
from router.store.schema import checkpoints, customers

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


async def story(conn: Conn) -> dict[str, Any]:
    """A customer, a conversation changed twice, an agent's capacity, timers, outbox rows:
    everything each step returned, as plain values."""
    with db.seeded_ids("lean"):  # the same ids and references on every run
        done: dict[str, Any] = plain(await steps(conn))
    return done


def plain(value: Any) -> Any:
    """`value` with the times the store took from the clock (`updated_at`) as "now"."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime) and value > T0 + timedelta(days=30):
        return "now"
    return value


async def steps(conn: Conn) -> dict[str, Any]:
    await db.ensure_agents(conn, {"ana": "available"}, T0)
    cid = (await db.create_customer(conn, "Eve", T0)).id
    owner = await db.add_identity(conn, "email", "eve@example.com", cid, "message", T0)
    again = await db.add_identity(conn, "email", "eve@example.com", "someone-else", "x", T0)
    conv = await db.create_conversation(
        conn,
        {
            "channel": "mail",
            "channel_type": "email",
            "thread_key": "t1",
            "customer_id": cid,
            "status": "open",
            "priority": 1,
            "opened_at": T0,
            "updated_at": T0,
            "skills": {"billing": 2},
            "tags": ["vip"],
        },
    )
    changed = await db.update_conversation(conn, conv.id, queue="billing", sla_due_at=T0)
    await db.set_customer_language(conn, cid, "es", T0)
    taken = await db.take_capacity(conn, "ana", "email", 1, T0)
    full = await db.take_capacity(conn, "ana", "email", 1, T0)
    await db.start_assignment(conn, conv.id, "ana", {"why": "skills"}, T0)
    await db.schedule_timer(conn, "k1", conv.id, "sla", T0 + timedelta(hours=1), {"n": 1}, T0)
    await db.schedule_timer(conn, "k1", conv.id, "sla", T0 + timedelta(hours=9), {"n": 2}, T0)
    first = await db.add_outbox(conn, "out", b"k", b"v1", T0)
    second = await db.add_outbox(conn, "out", b"k", b"v2", T0)
    third = await db.send_outbox(conn, "out", b"k", b"v3", T0)  # its id comes later
    other = await db.create_conversation(
        conn,
        {
            "channel": "chat",
            "channel_type": "webchat",
            "thread_key": "t2",
            "customer_id": cid,
            "status": "open",
            "priority": 1,
            "opened_at": T0,
            "updated_at": T0,
        },
    )
    await conn.execute(
        checkpoints.insert().values(connector="router", key="alias", value=conv.id, updated_at=T0)
    )
    arrived = await db.arrival_reads(
        conn, ("email", "eve@example.com"), ("router", "alias"), "mail", "t1"
    )
    unknown = await db.arrival_reads(conn, ("email", "x@example.com"), ("router", "x"), "mail", "x")
    shown = await db.delivery_reads(
        conn, cid, other.id, since=T0, transcript_limit=5, promises_limit=5
    )
    return {
        "owner": owner == cid,
        "again": again == cid,
        "found": await db.identity_owner(conn, "email", "eve@example.com") == cid,
        "missing": await db.identity_owner(conn, "email", "nobody@example.com"),
        "conv": tuple(conv),
        "changed": tuple(changed),
        "by_thread": (await db.conversation_by_thread(conn, "mail", "t1")) == changed,
        "customer": tuple(await db.customer(conn, cid)),
        "arrival": [arrived.owner == cid, arrived.alias_of == conv.id, tuple(arrived.by_thread)],
        # as read one by one (SQLite reads the three in one statement)
        "arrival_as_alone": arrived.by_thread._asdict()
        == (await db.conversation_by_thread(conn, "mail", "t1"))._asdict(),
        "unknown": [unknown.owner, unknown.alias_of, unknown.by_thread],
        "delivery": {
            "customer": tuple(shown.customer),
            "identities": [tuple(r) for r in shown.identities],
            "recent": [r.id for r in shown.recent],  # the first conversation
            "transcript": shown.transcript,
            "suggestions": shown.suggestions,
            "promises": shown.promises,
        },
        "recent": len(await db.recent_conversations(conn, cid, T0, "other")),
        "transcript": await db.transcript(conn, conv.id, 5),
        "taken": (taken, full),
        "last_agent": await db.last_agent_of(conn, cid, T0 - timedelta(days=1)),
        "outbox": [second - first, third() - second],
    }


async def test_lean_and_sqlalchemy_give_the_same_results(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    real, together = lean.run, lean.run_together

    def counted(*args: Any) -> Any:
        ran.append("lean")
        return real(*args)

    def counted_together(runs: Any, sync: Any) -> Any:
        ran.append(f"together {len(runs)}")
        return together(runs, sync)

    monkeypatch.setattr(lean, "run", counted)
    monkeypatch.setattr(lean, "run_together", counted_together)
    fast = await store.work(story)
    assert len(ran) > 15  # the built statements did go the lean way
    assert "together 6" in ran  # and reads together
    # the arrival's three: one exchange on PostgreSQL, one statement on SQLite
    assert ("together 3" in ran) == (store.backend == "postgresql")
    assert fast["arrival_as_alone"] is True
    assert fast["arrival"][:2] == [True, True] and fast["unknown"] == [None, None, None]
    assert fast["delivery"]["recent"] == [fast["conv"][0]]
    fast_rows = await rows(store)

    await store.work(clear)
    monkeypatch.setattr(lean, "plan", lambda *_: None)
    slow = await store.work(story)
    assert fast == slow
    assert fast_rows == await rows(store)
    assert fast["taken"] == [True, False] and fast["outbox"] == [1, 1]


async def test_python_side_defaults_are_filled_in(store: Store) -> None:
    await store.work(story)

    async def relabel(conn: Conn) -> None:
        [cid] = (await conn.execute(sa.select(customers.c.id))).scalars().all()
        await send(conn, db._update_customer(conn), {"b_id": cid, "language": "fr"})

    await store.work(relabel)
    async with store.transaction(readonly=True) as conn:
        [customer] = (await conn.execute(sa.select(customers))).all()
    # `updated_at` has an onupdate default, and the UPDATE gave none: the lean UPDATE sets
    # it as SQLAlchemy would.
    assert customer.updated_at > T0 + timedelta(days=30)
    assert (customer.language, customer.tags) == ("fr", [])


async def test_a_driver_error_is_a_store_error_without_its_values(store: Store) -> None:
    async def twice(conn: Conn) -> None:
        row = {"id": "c1", "display_name": "Eve", "tier": "standard", "tags": []}
        stamps = {"created_at": T0, "updated_at": T0}
        await conn.execute(db._create_customer(conn), row | stamps)
        await conn.execute(db._create_customer(conn), row | stamps)

    with pytest.raises(StoreError) as caught:
        await store.work(twice)
    assert caught.value.retriable is False
    # As SQLAlchemy's execution raises it (the driver names it: IntegrityError, UniqueViolation).
    assert isinstance(caught.value.__cause__, sa.exc.IntegrityError)
    assert "Eve" not in str(caught.value) and "Eve" not in str(caught.value.__cause__)
    # The connection (and the cursor the lean path keeps on it) serves the next unit.
    assert await store.work(lambda c: db.identity_owner(c, "email", "x@example.com")) is None
    assert (await rows(store))["customers"] == []


async def test_an_error_among_statements_run_together_is_a_store_error(store: Store) -> None:
    async def together(conn: Conn) -> None:
        row = {"id": "c1", "display_name": "Eve", "tier": "standard", "tags": []}
        stamps = {"created_at": T0, "updated_at": T0}
        lookup = (db._customer(conn), {"b_id": "c1"})
        await execute_together(conn, [(db._create_customer(conn), row | stamps), lookup])
        await execute_together(conn, [lookup, (db._create_customer(conn), row | stamps)])

    with pytest.raises(StoreError) as caught:
        await store.work(together)
    assert isinstance(caught.value.__cause__, sa.exc.IntegrityError)
    assert "Eve" not in str(caught.value) and "Eve" not in str(caught.value.__cause__)
    # The connection, out of pipeline mode, serves the next unit; nothing was kept.
    found = await store.work(lambda c: execute_together(c, [(db._customer(c), {"b_id": "c1"})] * 2))
    assert [r.all() for r in found] == [[], []]
    assert (await rows(store))["customers"] == []


async def test_what_was_sent_ahead_is_there_for_the_next_statement(store: Store) -> None:
    async def unit(conn: Conn) -> Any:
        row = {"id": "c1", "display_name": "Eve", "tier": "standard", "tags": []}
        await send(conn, db._create_customer(conn), row | {"created_at": T0, "updated_at": T0})
        await send(conn, db._update_customer(conn), {"b_id": "c1", "language": "es"})
        [read] = await execute_together(conn, [(db._customer(conn), {"b_id": "c1"})])
        first = read.one().language
        await send(conn, db._update_customer(conn), {"b_id": "c1", "language": "fr"})
        return first, (await conn.execute(db._customer(conn), {"b_id": "c1"})).one().language

    assert await store.work(unit) == ("es", "fr")
    # Sent last, then committed: the unit's end takes it to the server first.
    await store.work(lambda c: send(c, db._update_customer(c), {"b_id": "c1", "language": "de"}))
    assert [r["language"] for r in (await rows(store))["customers"]] == ["de"]


@pytest.mark.parametrize("last", [False, True], ids=["then a read", "then the commit"])
async def test_a_failed_statement_sent_ahead_fails_its_unit(store: Store, last: bool) -> None:
    """PostgreSQL does not wait for a statement sent ahead: its error comes with the next
    statement that waits, or at the end of the unit, before anything is committed."""
    reached: list[str] = []

    async def unit(conn: Conn) -> None:
        row = {"id": "c1", "display_name": "Eve", "tier": "standard", "tags": []}
        stamps = {"created_at": T0, "updated_at": T0}
        await send(conn, db._create_customer(conn), row | stamps)
        await send(conn, db._create_customer(conn), row | stamps)  # the same key again
        reached.append("sent")
        if not last:
            await conn.execute(db._customer(conn), {"b_id": "c1"})
            reached.append("read")

    with pytest.raises(StoreError) as caught:
        await store.work(unit)
    assert isinstance(caught.value.__cause__, sa.exc.IntegrityError)
    assert "Eve" not in str(caught.value) and "Eve" not in str(caught.value.__cause__)
    # SQLite runs a statement at once, so it fails there; PostgreSQL goes on to the read.
    assert reached == ([] if store.backend == "sqlite" else ["sent"])
    assert (await rows(store))["customers"] == []
    # The connection, out of pipeline mode, serves the next unit.
    await store.work(lambda c: db.create_customer(c, "Ann", T0))
    assert [r["display_name"] for r in (await rows(store))["customers"]] == ["Ann"]


async def test_a_held_conversation_changed_reads_as_the_store_keeps_it(store: Store) -> None:
    """`change_held_conversation` makes the changed row itself (its UPDATE sent ahead): the
    same row, value for value, as reading it back, JSON and times included."""
    values = {
        "channel": "mail",
        "channel_type": "email",
        "thread_key": "t1",
        "status": "open",
        "priority": 1,
        "opened_at": T0,
        "updated_at": T0,
    }

    async def unit(conn: Conn) -> tuple[Any, Any]:
        cid = (await db.create_customer(conn, "Eve", T0)).id
        await db.create_conversation(conn, {**values, "customer_id": cid})
        held = await db.conversation_by_thread(conn, "mail", "t1")
        changed = await db.change_held_conversation(
            conn,
            held,
            thread_meta={"subject": "Hi", "reply": {"to": ["a@b"], "n": 2, "z": None}},
            tags=("vip", "late"),
            sla_due_at=T0.astimezone(timezone(timedelta(hours=-5))),
        )
        return changed, await db.conversation(conn, held.id)

    changed, stored = await store.work(unit)
    assert tuple(changed) == tuple(stored)
    assert changed.tags == ["vip", "late"] and changed.sla_due_at.tzinfo == UTC
    assert changed.updated_at > T0 + timedelta(days=30)  # set as the column's onupdate does


async def test_a_unit_failing_after_sending_ahead_raises_its_own_error(store: Store) -> None:
    class Boom(Exception):
        pass

    async def unit(conn: Conn) -> None:
        await send(conn, db._update_customer(conn), {"b_id": "c0", "language": "es"})
        await db.create_customer(conn, "Eve", T0)
        raise Boom("after sending ahead")

    with pytest.raises(Boom) as caught:
        await store.work(unit)
    # Its own traceback, down to the raise (closing the pipeline did not replace it).
    assert caught.traceback[-1].name == "unit"
    assert (await rows(store))["customers"] == []
    await store.work(lambda c: db.create_customer(c, "Ann", T0))
    assert [r["display_name"] for r in (await rows(store))["customers"]] == ["Ann"]


async def test_a_units_outputs_keep_their_order_sent_ahead_or_not(store: Store) -> None:
    """The rows a unit keeps for publishing from memory: in the order written, with their
    ids, amended in place, whether their ids came at once or with a later round trip."""
    handover = db.Handover(lease_until=T0 + timedelta(minutes=1))

    async def unit(conn: Conn) -> list[int]:
        with db.keeping_outputs(handover):
            first = await db.send_outbox(conn, "out", b"a", b"1", T0)
            second = await db.add_outbox(conn, "out", b"b", b"2", T0)
            third = await db.send_outbox(conn, "out", b"a", b"3", T0)
            await db.amend_outbox(conn, third(), b"3!")
            fourth = await db.send_outbox(conn, "out", b"b", b"4", T0)
        return [first(), second, third(), fourth()]

    ids = await store.work(unit)
    assert ids == sorted(ids)
    assert [(o.id, o.key, o.value) for o in handover.written] == list(
        zip(ids, [b"a", b"b", b"a", b"b"], [b"1", b"2", b"3!", b"4"], strict=True)
    )
    async with store.transaction(readonly=True) as conn:
        stored = (await conn.execute(sa.text("SELECT id, value FROM outbox ORDER BY id"))).all()
    assert [(r.id, bytes(r.value)) for r in stored] == [(o.id, o.value) for o in handover.written]


async def test_statement_counters_still_see_lean_statements(store: Store) -> None:
    seen: list[str] = []

    def count(_c: object, _cur: object, statement: str, *_: object) -> None:
        seen.append(statement.split()[0])

    sa.event.listen(store.writer, "before_cursor_execute", count)
    try:
        await store.work(lambda conn: db.identity_owner(conn, "email", "x@example.com"))
    finally:
        sa.event.remove(store.writer, "before_cursor_execute", count)
    assert "SELECT" in seen


TABLES = ("customers", "identities", "conversations", "agent_load", "timers", "outbox")


async def rows(store: Store) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    async with store.transaction(readonly=True) as conn:
        for name in TABLES:
            table = sa.table(name)
            result = await conn.execute(sa.select(sa.text("*")).select_from(table))
            # As stored (text on SQLite), but `updated_at`: the clock's, at each run.
            out[name] = [
                {k: "now" if k == "updated_at" else v for k, v in r._mapping.items()}
                for r in result
            ]
    return out


async def clear(conn: Conn) -> None:
    names = ("assignments", "timers", "outbox", "agent_load", "checkpoints", *TABLES[:3][::-1])
    if conn.dialect.name == "postgresql":  # the outbox's ids start again, as SQLite's do
        await conn.execute(sa.text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
        return
    for name in names:
        await conn.execute(sa.text(f"DELETE FROM {name}"))


async def test_a_batch_dedupe_finds_and_notes_ids(store: Store) -> None:
    async def first(conn: Conn) -> set[str]:
        await store.mark_processed_all("router", ["a", "b"], conn=conn)
        return await store.processed_among("router", ["a", "c", "b"], conn=conn)

    assert await store.work(first) == {"a", "b"}
    # Another router noted "b" meanwhile: the unit fails, retriable, and leaves nothing.
    with pytest.raises(StoreError, match="1 of 2 records were applied") as caught:
        await store.work(lambda conn: store.mark_processed_all("router", ["c", "b"], conn=conn))
    assert caught.value.retriable is True
    assert await store.work(lambda c: store.processed_among("router", ["c"], conn=c)) == set()


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_batch_statements_are_the_same_for_any_batch_size(store: Store) -> None:
    seen: list[str] = []

    def note(_c: object, _cur: object, statement: str, *_: object) -> None:
        seen.append(statement)

    async def batches(conn: Conn) -> None:
        rows = [await db.add_outbox(conn, "out", b"k", b"v", T0) for _ in range(3)]
        seen.clear()
        for ids, sent in ((["a", "b"], rows[:1]), (["c", "d", "e", "f", "g"], rows[1:])):
            await store.processed_among("router", ids, conn=conn)
            await store.mark_processed_all("router", ids, conn=conn)
            await db.mark_sent(conn, sent, T0)

    sa.event.listen(store.writer, "before_cursor_execute", note)
    try:
        await store.work(batches)
    finally:
        sa.event.remove(store.writer, "before_cursor_execute", note)
    # One statement each, made once, whatever the number of ids: psycopg prepares it.
    assert len(seen) == 6 and seen[:3] == seen[3:]
