"""The bus contract (router.bus.base), the same tests on both backends."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable

import pytest

from router.bus import Bus, Consumer, Record, partition_for
from router.errors import BusError
from router.retry import Backoff, retry
from tests.router.bus.conftest import PARTITIONS, MakeBus

Names = Callable[[str], str]


async def drain(consumer: Consumer, n: int, *, deadline: float = 60.0) -> list[Record]:
    """Fetch until `n` records arrived (or fail after `deadline` seconds)."""
    got: list[Record] = []
    end = time.monotonic() + deadline
    while len(got) < n:
        assert time.monotonic() < end, f"only {len(got)} of {n} records arrived"
        got.extend(await consumer.fetch(timeout=0.5))
    return got


async def nothing_more(consumer: Consumer, wait: float = 1.5) -> None:
    extra = await consumer.fetch(timeout=wait)
    assert extra == [], f"unexpected records: {extra[:5]}"


async def produce_all(bus: Bus, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    for key, value in items:
        await bus.produce(topic, key, value)


def values(records: list[Record]) -> list[bytes]:
    return [r.value for r in records]


async def test_per_key_order_over_partitions(bus: Bus, names: Names) -> None:
    topic = names("order")
    await bus.ensure_topics([topic])
    keys = [f"channel|thread-{i}".encode() for i in range(40)]
    rounds = 8
    for n in range(rounds):  # keys interleaved; each round in flight concurrently
        await asyncio.gather(*(bus.produce(topic, k, b"%d" % n) for k in keys))
    consumer = await bus.consumer(names("g"), [topic])
    try:
        got = await drain(consumer, len(keys) * rounds)
    finally:
        await consumer.close()
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for rec in got:
        assert rec.partition == partition_for(rec.key, PARTITIONS)  # same partitioner
        per_key[rec.key].append(int(rec.value))
    assert {k: v for k, v in per_key.items()} == {k: list(range(rounds)) for k in keys}
    assert {r.partition for r in got} == set(range(PARTITIONS))
    by_partition: dict[int, list[int]] = defaultdict(list)
    for rec in got:
        by_partition[rec.partition].append(rec.offset)
    for offsets in by_partition.values():
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


async def test_uncommitted_records_are_delivered_again(bus: Bus, names: Names) -> None:
    topic, group = names("redeliver"), names("g")
    await bus.ensure_topics([topic])
    await produce_all(bus, topic, [(b"k%d" % (i % 7), b"v%d" % i) for i in range(30)])
    first = await bus.consumer(group, [topic])
    got = await drain(first, 30)
    done = got[:10]  # a prefix of the fetch: per partition, a prefix too
    await first.commit(done)
    await first.close()  # dies with 20 fetched but not committed

    second = await bus.consumer(group, [topic])
    try:
        again = await drain(second, 20)
        assert sorted(values(again)) == sorted(values(got[10:]))
        await second.commit(again)
        await nothing_more(second)
    finally:
        await second.close()


async def test_committed_records_are_not_delivered_again(bus: Bus, names: Names) -> None:
    topic, group = names("commit"), names("g")
    await bus.ensure_topics([topic])
    await produce_all(bus, topic, [(b"k%d" % i, b"old%d" % i) for i in range(12)])
    first = await bus.consumer(group, [topic])
    await first.commit(await drain(first, 12))
    await first.close()

    await produce_all(bus, topic, [(b"k%d" % i, b"new%d" % i) for i in range(5)])
    second = await bus.consumer(group, [topic])
    try:
        got = await drain(second, 5)
        assert sorted(values(got)) == sorted(b"new%d" % i for i in range(5))
        await nothing_more(second)
    finally:
        await second.close()


async def test_record_produced_while_fetching_arrives(bus: Bus, names: Names) -> None:
    topic = names("live")
    await bus.ensure_topics([topic])
    consumer = await bus.consumer(names("g"), [topic])
    try:
        assert await consumer.fetch(timeout=0.3) == []

        async def later() -> None:
            await asyncio.sleep(0.3)
            await bus.produce(topic, b"key", b"hello")

        task = asyncio.create_task(later())
        got = await drain(consumer, 1)
        await task
        assert [(r.key, r.value) for r in got] == [(b"key", b"hello")]
    finally:
        await consumer.close()


async def test_ensure_topics_is_idempotent(bus: Bus, names: Names) -> None:
    a, b = names("a"), names("b")
    await bus.ensure_topics([a])
    await bus.ensure_topics([a, b, a])
    await bus.ensure_topics([b])
    await produce_all(bus, b, [(b"key-%d" % i, b"x") for i in range(60)])
    consumer = await bus.consumer(names("g"), [a, b])
    try:
        got = await drain(consumer, 60)
        assert {r.topic for r in got} == {b}
        assert {r.partition for r in got} == set(range(PARTITIONS))
    finally:
        await consumer.close()


async def test_ping_when_up(bus: Bus) -> None:
    assert await bus.ping() is True


async def test_two_consumers_in_a_group_split_partitions(bus: Bus, names: Names) -> None:
    topic, group = names("split"), names("g")
    await bus.ensure_topics([topic])
    c1 = await bus.consumer(group, [topic])
    c2 = await bus.consumer(group, [topic])
    everything = {(topic, p) for p in range(PARTITIONS)}
    try:
        end = time.monotonic() + 60
        while True:  # let the group settle before producing
            await asyncio.gather(c1.fetch(timeout=0.2), c2.fetch(timeout=0.2))
            a1, a2 = c1.assignment, c2.assignment  # type: ignore[attr-defined]
            if a1 and a2 and not a1 & a2 and a1 | a2 == everything:
                break
            assert time.monotonic() < end, f"group did not settle: {a1} {a2}"

        total = 200
        await asyncio.gather(*(bus.produce(topic, b"k%d" % i, b"%d" % i) for i in range(total)))
        seen: dict[Consumer, list[Record]] = {c1: [], c2: []}

        async def take(c: Consumer) -> None:
            batch = await c.fetch(timeout=0.3)
            await c.commit(batch)
            seen[c].extend(batch)

        end = time.monotonic() + 60
        while len(seen[c1]) + len(seen[c2]) < total:
            await asyncio.gather(take(c1), take(c2))
            assert time.monotonic() < end
        await asyncio.gather(take(c1), take(c2))
        all_values = sorted(int(r.value) for r in seen[c1] + seen[c2])
        assert all_values == list(range(total))  # every record exactly once
        assert seen[c1] and seen[c2]
        assert {(r.topic, r.partition) for r in seen[c1]} <= a1
        assert {(r.topic, r.partition) for r in seen[c2]} <= a2
    finally:
        await c1.close()
        await c2.close()


async def test_a_fresh_bus_sees_records_and_committed_offsets(
    make_bus: MakeBus, names: Names
) -> None:
    """A restart (a new bus on the same storage) loses nothing and repeats nothing."""
    topic, group = names("restart"), names("g")
    first = make_bus()
    await first.start()
    try:
        await first.ensure_topics([topic])
        await produce_all(first, topic, [(b"k%d" % i, b"v%d" % i) for i in range(10)])
        consumer = await first.consumer(group, [topic])
        got = await drain(consumer, 10)
        await consumer.commit(got[:4])
    finally:
        await first.stop()  # stops the consumer without committing the rest

    second = make_bus()
    await second.start()
    try:
        consumer = await second.consumer(group, [topic])
        again = await drain(consumer, 6)
        assert sorted(values(again)) == sorted(values(got[4:]))
        await consumer.commit(again)
        await nothing_more(consumer, wait=0.5)

        other = await second.consumer(names("other"), [topic])  # a new group: from the start
        assert sorted(values(await drain(other, 10))) == sorted(values(got))

        await second.produce(topic, b"k0", b"after")  # offsets continue, never reused
        (rec,) = await drain(consumer, 1)
        earlier = [r.offset for r in got if r.partition == rec.partition]
        assert rec.value == b"after" and rec.offset > max(earlier)
    finally:
        await second.stop()


async def test_closed_consumer_and_stopped_bus_refuse_work(make_bus: MakeBus, names: Names) -> None:
    bus = make_bus()
    with pytest.raises(BusError) as info:
        await bus.produce(names("t"), b"k", b"v")
    assert info.value.retriable is False
    await bus.start()
    try:
        consumer = await bus.consumer(names("g"), [names("t")])
        await consumer.close()
        await consumer.close()  # twice is fine
        with pytest.raises(BusError):
            await consumer.fetch(timeout=0.1)
    finally:
        await bus.stop()
        await bus.stop()


async def test_lag_counts_what_the_group_has_not_committed(bus: Bus, names: Names) -> None:
    topic, group = names("lag"), names("g")
    await bus.ensure_topics([topic])
    await produce_all(bus, topic, [(b"k%d" % (i % 3), b"v%d" % i) for i in range(9)])
    consumer = await bus.consumer(group, [topic])
    try:
        got = await drain(consumer, 9)
        assert sum((await consumer.lag()).values()) == 9  # fetched is not committed
        by_partition: dict[int, list[Record]] = defaultdict(list)
        for rec in got:
            by_partition[rec.partition].append(rec)
        done = [recs[0] for recs in by_partition.values()]  # the first of each partition
        await consumer.commit(done)
        assert sum((await consumer.lag()).values()) == 9 - len(done)
        await consumer.commit(got)
        assert sum((await consumer.lag()).values()) == 0
    finally:
        await consumer.close()


async def test_scan_reads_a_topic_as_it_is_without_a_group(bus: Bus, names: Names) -> None:
    topic = names("scan")
    await bus.ensure_topics([topic])
    items = [(f"k{i % 7}".encode(), b"%d" % i) for i in range(30)]
    await produce_all(bus, topic, items)
    scanned = [r async for batch in bus.scan(topic) for r in batch]
    assert sorted(values(scanned), key=int) == [v for _, v in items]
    per_partition: dict[int, list[int]] = defaultdict(list)
    for rec in scanned:
        per_partition[rec.partition].append(rec.offset)
    assert all(offsets == sorted(offsets) for offsets in per_partition.values())
    # From an offset, in one partition only: that record and the ones after it.
    some = next(p for p, offsets in per_partition.items() if len(offsets) > 1)
    later = per_partition[some][1]
    tail = [r async for batch in bus.scan(topic, {some: later}) for r in batch]
    assert [r.offset for r in tail] == per_partition[some][1:]
    assert {r.partition for r in tail} == {some}
    # A scan joins no group and commits nothing: a group still gets everything.
    consumer = await bus.consumer(names("g"), [topic])
    try:
        assert len(await drain(consumer, len(items))) == len(items)
    finally:
        await consumer.close()


async def test_backlog_counts_what_a_group_has_not_committed_running_or_not(
    bus: Bus, names: Names
) -> None:
    topic, other, group = names("backlog"), names("backlog-other"), names("g")
    await bus.ensure_topics([topic, other])
    await produce_all(bus, topic, [(b"k%d" % (i % 3), b"v%d" % i) for i in range(9)])
    await produce_all(bus, other, [(b"k", b"v")])
    # Nobody in the group has ever run: everything waits. (A fresh Kafka cluster may not
    # have its group coordinator up yet: a retriable error, as the contract says.)
    backlog = await retry(
        lambda: bus.backlog(group, [topic, other]), backoff=Backoff(base=0.2, cap=1, attempts=40)
    )
    assert backlog == {topic: 9, other: 1}
    consumer = await bus.consumer(group, [topic])
    try:
        got = await drain(consumer, 9)
        await consumer.commit(got[:1])
        first_partition = [r for r in got if r.partition == got[0].partition]
        waiting = 9 - sum(1 for r in first_partition if r.offset <= got[0].offset)
        assert await bus.backlog(group, [topic]) == {topic: waiting}
        await consumer.commit(got)
    finally:
        await consumer.close()
    # The group's member is gone: what it committed still counts.
    assert await bus.backlog(group, [topic, other]) == {topic: 0, other: 1}
