"""The router's inbound path in batches: one store transaction per run of records.

The engine on the routing scenarios' config and a SQLite store, the consume loop
wired as the daemon wires it, on the embedded bus.
"""

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from prometheus_client import Counter
from structlog.testing import capture_logs

from router import inbound
from router.bus import EmbeddedBus
from router.config import load_config
from router.envelope import Envelope, decode, encode
from router.errors import StoreError
from router.metrics import Metrics
from router.outbox import OutboxPublisher
from router.routing import messages
from router.routing.engine import Decision, Engine
from router.store import Store, open_store
from tests.harness.common import eventually
from tests.router.consuming import TOPICS, drain, make_loop, run_until, running
from tests.router.test_daemon import message

CONFIG = Path(__file__).parent / "routing" / "scenario.yaml"
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
LOCK_TIMEOUT = 0.2  # seconds: a held write lock shows up as "database is locked" soon


def chat(native: str, thread: str) -> Envelope:
    """A web-chat message, always from the same visitor (one customer)."""
    return message("chat", native, thread).model_copy(update={"channel_type": "webchat"})


# Three conversations, follow-ups on two of them, and m1 delivered twice.
TRAFFIC = [
    chat("m1", "t1"),
    chat("m2", "t2"),
    chat("m3", "t1"),
    chat("m4", "t3"),
    chat("m1", "t1"),
    chat("m5", "t2"),
]


async def new_engine(path: Path) -> Engine:
    store = await open_store(f"sqlite:///{path}", lock_timeout=LOCK_TIMEOUT)
    # scenario.yaml's channels are all disabled: no connector would reach its agents,
    # and these tests are about batches, so every agent counts as reachable (as in simulate).
    engine = Engine(load_config(CONFIG, env={}), store, TOPICS, reachability=False)
    await engine.start(T0)
    return engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    engine = await new_engine(tmp_path / "store.sqlite3")
    yield engine
    await engine.store.close()


def total(counter: Counter) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


async def received(store: Store) -> list[str]:
    """Ids of the inbound messages stored (outputs are stored too)."""
    async with store.transaction(readonly=True) as conn:
        rows = await conn.scalars(sa.text("SELECT id FROM messages WHERE direction = 'in'"))
        return sorted(rows)


def ids(envelopes: list[Envelope]) -> list[str]:
    return sorted({e.id for e in envelopes})


async def count(store: Store, table: str) -> int:
    async with store.transaction(readonly=True) as conn:
        return int(await conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)


async def route(bus: EmbeddedBus, engine: Engine, metrics: Metrics, want: int) -> None:
    """Run the router's consume loop until `want` records were consumed or dead-lettered."""
    processor = inbound.InboundProcessor(
        bus=bus,
        topics=TOPICS,
        engine=engine,
        outbox=OutboxPublisher(engine.store, bus, TOPICS),
        metrics=metrics,
    )
    done = asyncio.Event()

    async def after_batch() -> None:
        await processor.after_batch()
        if total(metrics.messages_in) + total(metrics.dead_letters) >= want:
            done.set()

    loop = make_loop(
        bus,
        processor.handle,
        after_batch=after_batch,
        handle_batch=processor.handle_batch,
        metrics=metrics,
    )
    await run_until(loop, done)


async def produce(bus: EmbeddedBus, envelopes: list[Envelope]) -> None:
    for env in envelopes:
        await bus.produce(TOPICS.inbound, env.bus_key(), encode(env))


def fail_on(
    monkeypatch: pytest.MonkeyPatch, env_id: str, error: Callable[[], BaseException]
) -> list[str]:
    """Make handling the customer message `env_id` raise `error()`; returns the attempts."""
    attempts: list[str] = []
    real = messages.customer_message

    async def customer_message(ctx: Any, unit: Any, env: Envelope) -> None:
        if env.id == env_id:
            attempts.append(env.id)
            raise error()
        await real(ctx, unit, env)

    monkeypatch.setattr(messages, "customer_message", customer_message)
    return attempts


def same_shape(decided: list[list[Decision]]) -> list[list[dict[str, Any]]]:
    """Decisions with conversation ids (random) replaced by their order of appearance."""
    ids: dict[str | None, int] = {}
    return [
        [
            {**d.as_json(), "conversation_id": ids.setdefault(d.conversation_id, len(ids))}
            for d in ds
        ]
        for ds in decided
    ]


# --- the engine --------------------------------------------------------------------------


async def test_a_batch_is_one_transaction_deciding_as_one_by_one(
    engine: Engine, tmp_path: Path
) -> None:
    one_by_one = await new_engine(tmp_path / "one-by-one.sqlite3")
    try:
        expected = [await one_by_one.handle(env, T0) for env in TRAFFIC]
    finally:
        await one_by_one.store.close()
    begins = 0

    def on_execute(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        nonlocal begins
        begins += statement.startswith("BEGIN")

    sa.event.listen(engine.store.writer, "before_cursor_execute", on_execute)
    decided = await engine.handle_batch(TRAFFIC, lambda: T0)
    sa.event.remove(engine.store.writer, "before_cursor_execute", on_execute)

    assert begins == 1
    assert same_shape(decided) == same_shape(expected)
    assert {d.action for ds in decided for d in ds} >= {"assign", "queue", "deliver"}


async def test_a_duplicate_inside_one_batch_is_recognised(engine: Engine) -> None:
    first, again = chat("m1", "t1"), chat("m1", "t1")
    decided = await engine.handle_batch([first, again], lambda: T0)
    assert [d.action for d in decided[1]] == ["duplicate"]
    assert "duplicate" not in [d.action for d in decided[0]]
    assert await count(engine.store, "processed") == 1


async def test_a_batch_that_raises_leaves_nothing_behind(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_on(monkeypatch, TRAFFIC[1].id, lambda: KeyError("boom"))
    with pytest.raises(KeyError):
        await engine.handle_batch(TRAFFIC[:3], lambda: T0)
    for table in ("processed", "messages", "conversations", "outbox"):
        assert await count(engine.store, table) == 0, table


async def test_a_batch_ends_early_when_another_writer_waits_its_turn(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = messages.customer_message
    writers: list[concurrent.futures.Future[None]] = []
    loop = asyncio.get_running_loop()

    async def write() -> None:  # the clock loop firing timers, say
        async with engine.store.transaction() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def customer_message(ctx: Any, unit: Any, env: Envelope) -> None:
        # In the store's thread: the writer starts on the event loop and asks for its
        # turn while the batch holds it.
        if not writers:
            writers.append(asyncio.run_coroutine_threadsafe(write(), loop))
            deadline = time.monotonic() + 5
            while engine.store.writers_waiting != 1 and time.monotonic() < deadline:
                time.sleep(0.005)  # this thread has nothing else to do meanwhile
            assert engine.store.writers_waiting == 1
        await real(ctx, unit, env)

    monkeypatch.setattr(messages, "customer_message", customer_message)
    batch = [chat("m1", "t1"), chat("m2", "t2"), chat("m3", "t3")]
    decided = await engine.handle_batch(batch, lambda: T0)
    assert len(decided) == 1  # the rest waits for the next call, after the writer
    await asyncio.wait_for(asyncio.wrap_future(writers[0]), 2)
    assert await count(engine.store, "processed") == 1
    rest = await engine.handle_batch(batch[1:], lambda: T0)
    assert len(rest) == 2 and "duplicate" not in [d.action for ds in rest for d in ds]
    assert await count(engine.store, "processed") == 3


async def test_a_record_another_router_applied_meanwhile_rolls_the_batch_back(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await engine.handle(chat("m1", "t1"), T0)
    before = {t: await count(engine.store, t) for t in ("processed", "messages", "outbox")}

    async def none_seen(*_args: Any, **_kw: Any) -> set[str]:
        return set()  # as on PostgreSQL, when the other router commits after this check

    monkeypatch.setattr(engine.store, "processed_among", none_seen)
    with pytest.raises(StoreError, match="applied by another router") as raised:
        await engine.handle_batch([chat("m2", "t2"), chat("m1", "t1")], lambda: T0)
    assert raised.value.retriable  # handled one by one next, m1 is then a duplicate
    assert {t: await count(engine.store, t) for t in before} == before


async def test_each_record_of_a_batch_has_its_own_time(engine: Engine) -> None:
    times = iter([T0, T0.replace(second=1)])
    await engine.handle_batch([chat("m1", "t1"), chat("m2", "t2")], lambda: next(times))
    async with engine.store.transaction(readonly=True) as conn:
        opened = await conn.scalars(sa.text("SELECT opened_at FROM conversations"))
        assert len(set(opened)) == 2


# --- the router's consume loop -----------------------------------------------------------


async def test_invalid_envelope_in_a_batch_is_dead_lettered_and_the_rest_applied(
    bus: EmbeddedBus, engine: Engine
) -> None:
    good = [chat("m1", "t1"), chat("m2", "t2"), chat("m3", "t1")]
    await produce(bus, good[:1])
    await bus.produce(TOPICS.inbound, b"k", b'{"v": 1, "kind": "message"}')
    await produce(bus, good[1:])
    metrics = Metrics()
    with capture_logs() as logs:
        await route(bus, engine, metrics, want=4)
    assert await received(engine.store) == ids(good)
    assert total(metrics.messages_in) == 3
    [dead] = await drain(bus, TOPICS.dlq, "dlq-reader", 1)
    body = orjson.loads(dead.value)
    assert body["reason"].startswith("invalid envelope: ")  # as one by one
    assert "thread_key" in body["reason"]
    assert not [e for e in logs if e["event"].startswith("batch transaction failed")]
    assert await drain(bus, TOPICS.inbound, "g", 1) == []


async def test_record_failing_in_a_batch_is_dead_lettered_and_the_others_applied_once(
    bus: EmbeddedBus, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = chat("m2", "t2")
    others = [chat("m1", "t1"), chat("m3", "t1"), chat("m4", "t3")]
    await produce(bus, [others[0], poison, *others[1:]])
    attempts = fail_on(monkeypatch, poison.id, lambda: StoreError("CHECK failed", retriable=False))
    metrics = Metrics()
    with capture_logs() as logs:
        await route(bus, engine, metrics, want=4)
    assert attempts == [poison.id, poison.id]  # in the batch, then alone: no retry
    [warning] = [e for e in logs if e["event"].startswith("batch transaction failed")]
    assert warning["records"] == 4
    assert warning["error"] == "StoreError: CHECK failed"
    [dead] = await drain(bus, TOPICS.dlq, "dlq-reader", 1)
    assert orjson.loads(dead.value)["reason"] == "StoreError: CHECK failed"
    assert await received(engine.store) == ids(others)
    assert total(metrics.messages_in) == 3
    assert total(metrics.duplicates) == 0
    assert metrics.decisions.labels(action="ack")._value.get() == 2  # t1, t3
    assert await count(engine.store, "processed") == 3
    assert await drain(bus, TOPICS.inbound, "g", 1) == []


async def test_locked_store_fails_the_batch_and_each_record_is_retried_until_it_passes(
    bus: EmbeddedBus, engine: Engine, tmp_path: Path
) -> None:
    await produce(bus, TRAFFIC)
    other = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")  # another writer
    metrics = Metrics()
    try:
        with capture_logs() as logs:

            def seen(event: str) -> bool:
                return any(e["event"].startswith(event) for e in logs)

            async with other.transaction():  # BEGIN IMMEDIATE: holds the write lock
                task = asyncio.create_task(route(bus, engine, metrics, want=len(TRAFFIC)))
                await eventually(lambda: seen("batch transaction failed") and seen("retrying"))
            await asyncio.wait_for(task, 10)
    finally:
        await other.close()
    [warning] = [e for e in logs if e["event"].startswith("batch transaction failed")]
    assert "database is locked" in warning["error"]
    assert await received(engine.store) == ids(TRAFFIC)
    assert total(metrics.messages_in) == len(TRAFFIC)
    assert total(metrics.duplicates) == 1  # the redelivered m1, nothing else
    assert total(metrics.dead_letters) == 0
    assert await drain(bus, TOPICS.inbound, "g", 1) == []


class Crash(BaseException):
    """The process dies: nothing catches it."""


@pytest.mark.parametrize("where", ["before the offsets are committed", "inside a transaction"])
async def test_crash_then_redelivery_applies_everything_exactly_once(
    bus: EmbeddedBus, engine: Engine, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setattr(inbound, "CHUNK", 2)
    await produce(bus, TRAFFIC)
    metrics = Metrics()
    with monkeypatch.context() as crashing:
        if where == "inside a transaction":  # m5 comes after m2: a later run dies
            fail_on(crashing, TRAFFIC[5].id, Crash)
        else:  # every run committed; the outbox is not published, no offset committed

            async def flush(_outbox: OutboxPublisher) -> int:
                raise Crash

            crashing.setattr(OutboxPublisher, "flush", flush)
        with pytest.raises(Crash):
            await route(bus, engine, metrics, want=len(TRAFFIC))
    committed_before = await count(engine.store, "processed")
    if where == "inside a transaction":
        assert 0 < committed_before < 5  # earlier runs committed, the last one not
    else:
        assert committed_before == 5

    again = Metrics()
    await route(bus, engine, again, want=len(TRAFFIC))
    assert total(again.messages_in) == len(TRAFFIC)  # every record came again
    assert total(again.duplicates) == committed_before + 1  # + the redelivered m1
    assert await received(engine.store) == ids(TRAFFIC)
    assert await count(engine.store, "processed") == 5
    acks = [m.decisions.labels(action="ack")._value.get() for m in (metrics, again)]
    assert sum(acks) == 3  # one per conversation, over both runs
    async with engine.store.transaction(readonly=True) as conn:
        rows = (await conn.execute(sa.text("SELECT value, sent_at FROM outbox"))).all()
    assert len({decode(r.value).id for r in rows}) == len(rows)  # each output written once
    assert all(r.sent_at is not None for r in rows)
    # The acks, and the chat told who has it for each assignment (a live channel).
    assigned = int(sum(m.decisions.labels(action="assign")._value.get() for m in (metrics, again)))
    published = await drain(bus, TOPICS.outbound("chat"), "reader", 3 + assigned)
    assert len({decode(r.value).id for r in published}) == len(published)
    purposes = sorted(str(decode(r.value).meta.get("purpose")) for r in published)
    assert purposes == ["ack"] * 3 + ["assigned"] * assigned
    assert await drain(bus, TOPICS.inbound, "g", 1) == []


# --- admission: what the router refuses before any transaction ---------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"channel": "no-such-channel"}, "channel 'no-such-channel' is not configured"),
        ({"channel": "../../etc/passwd"}, "channel '../../etc/passwd' is not configured"),
        ({"channel_type": "fax"}, "channel_type 'fax' does not match channel 'chat'"),
        ({"direction": "out"}, "direction 'out': the router applies inbound records only"),
        ({"kind": "timer"}, "a timer event must come from the router itself"),
    ],
)
async def test_a_record_the_router_must_not_apply_is_dead_lettered_with_the_reason(
    bus: EmbeddedBus, engine: Engine, change: dict[str, str], reason: str
) -> None:
    good = [chat("m1", "t1"), chat("m3", "t3")]
    bad = chat("m2", "t2").model_copy(update=change)
    await produce(bus, [good[0], bad, good[1]])
    metrics = Metrics()
    with capture_logs() as logs:
        await route(bus, engine, metrics, want=3)
    [dead] = await drain(bus, TOPICS.dlq, "dlq-reader", 1)
    body = orjson.loads(dead.value)
    assert reason in body["reason"]
    assert decode(body["value"]).id == bad.id  # the original, intact
    # Nothing of it was applied, and it did not roll back its neighbours' batch.
    assert await received(engine.store) == ids(good)
    assert await count(engine.store, "conversations") == 2
    assert not [e for e in logs if e["event"].startswith("batch transaction failed")]
    assert total(metrics.dead_letters) == 1
    # Topic names are built from channels: no output names the refused one.
    async with engine.store.transaction(readonly=True) as conn:
        topics = set(await conn.scalars(sa.text("SELECT DISTINCT topic FROM outbox")))
    assert topics and not any("passwd" in t or "no-such" in t for t in topics)


async def test_a_sender_that_is_no_identity_is_refused_before_the_batch(
    bus: EmbeddedBus, engine: Engine
) -> None:
    good = [chat("m1", "t1"), chat("m3", "t3")]
    mail = Envelope(
        **{
            **chat("m2", "t2").model_dump(),
            "channel": "mail",
            "channel_type": "email",
            "sender": {"address": "not an address", "role": "customer"},
        }
    )
    await produce(bus, [good[0], mail, good[1]])
    metrics = Metrics()
    with capture_logs() as logs:
        await route(bus, engine, metrics, want=3)
    [dead] = await drain(bus, TOPICS.dlq, "dlq-reader", 1)
    assert orjson.loads(dead.value)["reason"].startswith("invalid envelope: sender: ")
    assert await received(engine.store) == ids(good)
    assert not [e for e in logs if e["event"].startswith("batch transaction failed")]


async def test_an_oversized_id_is_not_an_envelope(bus: EmbeddedBus, engine: Engine) -> None:
    raw = orjson.loads(encode(chat("m1", "t1")))
    raw["id"] = "x" * 100_000
    await bus.produce(TOPICS.inbound, b"k", orjson.dumps(raw))
    metrics = Metrics()
    await route(bus, engine, metrics, want=1)
    [dead] = await drain(bus, TOPICS.dlq, "dlq-reader", 1)
    assert "id: String should have at most 200 characters" in orjson.loads(dead.value)["reason"]
    assert await count(engine.store, "processed") == 0


@pytest.mark.parametrize(
    ("fetched", "runs"),
    [(30, [25, 5]), (99, [25, 25, 25, 24]), (100, [50, 50]), (200, [100, 100])],
)
async def test_a_backlog_is_applied_in_larger_transactions(
    bus: EmbeddedBus, engine: Engine, fetched: int, runs: list[int]
) -> None:
    # A well-filled fetch (a backlog) commits less often; a small one keeps its
    # transactions small, so its first records' outputs leave early.
    await produce(bus, [chat(f"m{n}", f"t{n % 40}") for n in range(fetched)])
    records = await drain(bus, TOPICS.inbound, "g", fetched)
    sizes: list[int] = []
    apply = engine.handle_batch

    async def counted(envelopes: Any, *args: Any, **kwargs: Any) -> Any:
        decided = await apply(envelopes, *args, **kwargs)
        sizes.append(len(decided))
        return decided

    engine.handle_batch = counted  # type: ignore[method-assign]
    processor = inbound.InboundProcessor(
        bus=bus,
        topics=TOPICS,
        engine=engine,
        outbox=OutboxPublisher(engine.store, bus, TOPICS),
        metrics=Metrics(),
    )
    parts = [(len(run), applied) async for run, applied in processor.handle_batch(records)]
    await processor.after_batch()
    assert sizes == runs
    assert parts == [(n, True) for n in runs]
    assert await count(engine.store, "processed") == fetched


async def test_outputs_keep_their_order_while_a_flush_runs_beside_the_next_fetch(
    bus: EmbeddedBus, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # m1's batch fails, so m1 is applied alone: only the outbox scan publishes its
    # outputs, after its fetch. That scan is held while the next fetch (m2, the same
    # conversation) is applied beside it: m2's outputs must not go out before m1's.
    processor = inbound.InboundProcessor(
        bus=bus,
        topics=TOPICS,
        engine=engine,
        outbox=OutboxPublisher(engine.store, bus, TOPICS),
        metrics=(metrics := Metrics()),
    )
    apply, failed = engine.handle_batch, False

    async def fails_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal failed
        if not failed:
            failed = True
            raise StoreError("store: locked", retriable=True)
        return await apply(*args, **kwargs)

    monkeypatch.setattr(engine, "handle_batch", fails_once)
    flush, flushing, release = processor._outbox.flush, asyncio.Event(), asyncio.Event()

    async def held_flush() -> Any:
        flushing.set()
        await release.wait()
        return await flush()

    monkeypatch.setattr(processor._outbox, "flush", held_flush)
    done = asyncio.Event()

    async def after_batch() -> None:
        await processor.after_batch()
        if total(metrics.messages_in) >= 2:
            done.set()

    loop = make_loop(
        bus, processor.handle, after_batch=after_batch, handle_batch=processor.handle_batch
    )
    async with running(loop, release):
        await produce(bus, [chat("m1", "t1")])
        await asyncio.wait_for(flushing.wait(), 10)
        await produce(bus, [chat("m2", "t1")])
        await eventually(lambda: total(metrics.messages_in) >= 2)  # applied meanwhile
        release.set()
        await asyncio.wait_for(done.wait(), 10)
    async with engine.store.transaction(readonly=True) as conn:
        rows = (
            await conn.execute(sa.text('SELECT topic, "key", value FROM outbox ORDER BY id'))
        ).all()
    written: dict[tuple[str, bytes], list[str]] = {}
    for row in rows:
        written.setdefault((row.topic, bytes(row.key)), []).append(decode(row.value).id)
    assert max(len(ids) for ids in written.values()) >= 2  # a key with outputs of both
    for topic in {t for t, _ in written}:
        got = await drain(
            bus, topic, "reader", sum(len(v) for (t, _), v in written.items() if t == topic)
        )
        published: dict[bytes, list[str]] = {}
        for record in got:
            published.setdefault(bytes(record.key or b""), []).append(decode(record.value).id)
        for (t, key), ids in written.items():
            if t == topic:
                assert published.get(key) == ids, (topic, key)
