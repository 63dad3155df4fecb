"""Publishing the outbox: outside any store transaction, a small step at a time, and one
row that cannot be published never holding up the others."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from router.bus import EmbeddedBus
from router.errors import BusError
from router.outbox import STEP, OutboxPublisher
from router.store import Store, open_store
from router.store import routing as db
from router.store.conn import Conn
from router.store.schema import outbox
from tests.harness.common import eventually
from tests.router.consuming import TOPICS, drain

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
LIMIT = 20_000  # the bus's max_record_bytes in these tests
OUT_A, OUT_B = "t.outbound.a", "t.outbound.b"


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[EmbeddedBus]:
    b = EmbeddedBus(tmp_path / "bus.sqlite3", partitions=2, max_record_bytes=LIMIT)
    await b.start()
    await b.ensure_topics([TOPICS.dlq, OUT_A, OUT_B])
    yield b
    await b.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    # A short lock timeout: a write lock held while publishing would show at once.
    s = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}", lock_timeout=0.5)
    yield s
    await s.close()


async def write(store: Store, rows: list[tuple[str, bytes, bytes]]) -> None:
    async with store.transaction() as conn:
        for topic, key, value in rows:
            await db.add_outbox(conn, topic, key, value, T0)


async def values(bus: EmbeddedBus, topic: str, want: int) -> list[bytes]:
    return [r.value for r in await drain(bus, topic, f"reader-{topic}", want)]


async def outbox_state(store: Store) -> dict[bytes, tuple[bool, str | None]]:
    async with store.transaction(readonly=True) as conn:
        rows = await conn.execute(sa.text("SELECT value, sent_at, dead_reason FROM outbox"))
        return {bytes(v): (sent is not None, why) for v, sent, why in rows}


def publisher(store: Store, bus: EmbeddedBus, **kw: object) -> OutboxPublisher:
    return OutboxPublisher(store, bus, TOPICS, **kw)  # type: ignore[arg-type]


async def test_an_oversize_row_is_dead_lettered_and_the_others_published(
    store: Store, bus: EmbeddedBus
) -> None:
    big = b"x" * (LIMIT + 1)
    await write(store, [(OUT_A, b"k", b"1"), (OUT_A, b"k", big), (OUT_A, b"k", b"3")])
    dead: list[str] = []
    result = await publisher(store, bus, on_dead=dead.append).flush()
    assert (result.published, result.dead, result.waiting) == (2, 1, 0)
    assert await values(bus, OUT_A, 2) == [b"1", b"3"]  # the rest of its key went on
    [letter] = await drain(bus, TOPICS.dlq, "dlq", 1)
    body = orjson.loads(letter.value)
    assert "over the bus's max_record_bytes" in body["reason"]
    assert body["source"]["topic"] == OUT_A
    assert body["size"] == len(big)
    assert body["value_ref"] == f"store:outbox/{body['source']['outbox_id']}"
    state = await outbox_state(store)
    assert state[big][0] and "max_record_bytes" in (state[big][1] or "")
    assert dead == ["outbox"]
    # Done is done: nothing is published again.
    assert (await publisher(store, bus).flush()).published == 0


async def test_a_row_for_a_topic_the_daemon_did_not_create_is_dead_lettered(
    store: Store, bus: EmbeddedBus
) -> None:
    await write(store, [(OUT_A, b"k", b"1"), ("t.outbound.../../etc/passwd", b"k", b"2")])
    result = await publisher(store, bus, known_topics=lambda: {OUT_A, TOPICS.dlq}).flush()
    assert (result.published, result.dead) == (1, 1)
    [letter] = await drain(bus, TOPICS.dlq, "dlq", 1)
    body = orjson.loads(letter.value)
    assert "is not one this daemon created" in body["reason"]
    assert body["value"] == "2"  # small originals are kept inline


class FlakyBus:
    """The embedded bus, except that producing to one topic fails while `down` is set."""

    def __init__(self, bus: EmbeddedBus, topic: str, store: Store) -> None:
        self.bus, self.topic, self.store = bus, topic, store
        self.down = True
        self.writes_while_producing = 0

    async def produce(self, topic: str, key: bytes, value: bytes) -> None:
        # No store transaction may wait on the bus: a write here must go through.
        async with self.store.transaction() as conn:
            await conn.execute(sa.text("UPDATE outbox SET created_at = created_at WHERE 0"))
        self.writes_while_producing += 1
        if self.down and topic == self.topic:
            raise BusError("broker unavailable", retriable=True)
        await self.bus.produce(topic, key, value)


async def test_a_topic_that_is_down_holds_up_only_its_own_rows_in_order(
    store: Store, bus: EmbeddedBus
) -> None:
    await write(
        store,
        [(OUT_A, b"k", b"a1"), (OUT_B, b"k", b"b1"), (OUT_A, b"k", b"a2"), (OUT_B, b"k", b"b2")],
    )
    flaky = FlakyBus(bus, OUT_A, store)
    waited: list[str] = []
    outbox = OutboxPublisher(store, flaky, TOPICS, on_wait=waited.append)  # type: ignore[arg-type]
    result = await outbox.flush()  # does not raise: the rows wait in the store
    assert (result.published, result.waiting) == (2, 2)
    assert waited == [OUT_A, OUT_A]  # for the metrics
    assert "broker unavailable" in result.errors[0]
    assert await values(bus, OUT_B, 2) == [b"b1", b"b2"]
    assert flaky.writes_while_producing >= 3
    flaky.down = False
    assert (await outbox.flush()).published == 2
    assert waited == [OUT_A, OUT_A]
    assert await values(bus, OUT_A, 2) == [b"a1", b"a2"]  # in order, once each
    assert all(sent for sent, _ in (await outbox_state(store)).values())


class Crash(BaseException):
    """Not an error anyone handles: the process stops here."""


async def test_rows_are_marked_sent_a_small_step_at_a_time(store: Store, bus: EmbeddedBus) -> None:
    """A crash part-way publishes again at most one step, not the whole batch."""
    total = STEP * 3
    await write(store, [(OUT_A, b"k%d" % (i % 5), b"%d" % i) for i in range(total)])

    class CrashingBus:
        produced = 0

        async def produce(self, topic: str, key: bytes, value: bytes) -> None:
            if self.produced == STEP + 3:
                raise Crash  # the process dies here
            self.produced += 1
            await bus.produce(topic, key, value)

    with pytest.raises(Crash):
        await OutboxPublisher(store, CrashingBus(), TOPICS).flush()  # type: ignore[arg-type]
    state = await outbox_state(store)
    assert sum(sent for sent, _ in state.values()) == STEP


async def test_rows_a_dead_publisher_leased_go_out_as_soon_as_the_next_one_starts(
    store: Store, bus: EmbeddedBus
) -> None:
    await write(store, [(OUT_A, b"k", b"1"), (OUT_A, b"k", b"2")])

    class DeadBus:
        async def produce(self, topic: str, key: bytes, value: bytes) -> None:
            raise Crash  # leased, then the process died before publishing

    with pytest.raises(Crash):
        await OutboxPublisher(store, DeadBus(), TOPICS).flush()  # type: ignore[arg-type]
    restarted = publisher(store, bus)
    assert (await restarted.flush()).published == 0  # their leases still live...
    await restarted.start()  # ...until a starting publisher takes them back
    assert (await restarted.flush()).published == 2
    assert await values(bus, OUT_A, 2) == [b"1", b"2"]


class HeldBus:
    """Holds the produce of one value until released (a scan in flight)."""

    def __init__(self, bus: EmbeddedBus, held: bytes) -> None:
        self.bus, self.held = bus, held
        self.holding, self.release = asyncio.Event(), asyncio.Event()

    async def produce(self, topic: str, key: bytes, value: bytes) -> None:
        if value == self.held:
            self.holding.set()
            await self.release.wait()
        await self.bus.produce(topic, key, value)


def firing(topic: str, key: bytes, value: bytes) -> Callable[[Conn], Coroutine[Any, Any, int]]:
    """The clock's write: one timer record."""

    async def fire(conn: Conn) -> int:
        await db.add_outbox(conn, topic, key, value, T0)
        return 1

    return fire


async def test_the_clocks_records_do_not_wait_for_a_scan_of_other_conversations(
    store: Store, bus: EmbeddedBus
) -> None:
    await write(store, [(OUT_A, b"k", b"old")])
    held = HeldBus(bus, b"old")
    publishing = publisher(store, held)  # type: ignore[arg-type]
    scan = asyncio.create_task(publishing.flush())
    await asyncio.wait_for(held.holding.wait(), 5)
    # Another conversation's timer goes out while the scan is held...
    await asyncio.wait_for(publishing.write_and_publish(firing(OUT_A, b"j", b"timer"), OUT_A), 5)
    assert await values(bus, OUT_A, 1) == [b"timer"]
    # ...one of the scan's conversation waits for the scan's older record.
    same = asyncio.create_task(publishing.write_and_publish(firing(OUT_A, b"k", b"new"), OUT_A))

    async def leased() -> bool:
        async with store.transaction(readonly=True) as conn:
            claimed = sa.select(outbox.c.claimed_until).where(outbox.c.value == b"new")
            return await conn.scalar(claimed) is not None

    await eventually(leased, 5)  # written and leased: had it not waited, it would be out
    held.release.set()
    await asyncio.wait_for(asyncio.gather(scan, same), 5)
    assert await values(bus, OUT_A, 3) == [b"timer", b"old", b"new"]
    assert all(sent for sent, _ in (await outbox_state(store)).values())
