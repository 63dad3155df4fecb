"""What is particular to one backend: the partitioner, ping on a dead broker, SQLite details."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from router.bus import EmbeddedBus, KafkaBus, murmur2, partition_for
from tests.harness.common import free_port

# from Kafka's own UtilsTest.testMurmur2 (Java ints, signed)
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_murmur2_matches_the_java_client() -> None:
    for key, expected in JAVA_MURMUR2.items():
        assert murmur2(key) == expected & 0xFFFFFFFF


@given(key=st.binary(max_size=64), partitions=st.integers(1, 64))
def test_partition_for_matches_kafkas_default_partitioner(key: bytes, partitions: int) -> None:
    every = list(range(partitions))
    p = partition_for(key, partitions)
    assert 0 <= p < partitions
    assert p == DefaultPartitioner()(key, every, every)


async def test_ping_is_false_fast_for_an_unreachable_kafka() -> None:
    bus = KafkaBus(f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    assert await bus.ping() is False
    assert time.monotonic() - started < 5


async def test_embedded_ping_is_false_before_start(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db")
    assert await bus.ping() is False
    async with bus:
        assert await bus.ping() is True
    assert await bus.ping() is False


async def test_embedded_file_is_wal_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    async with EmbeddedBus(path) as bus:
        await bus.produce("t", b"k", b"v")
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute('SELECT topic, key, value, "offset" FROM bus_records').fetchall()
        assert rows == [("t", b"k", b"v", 0)]
    finally:
        conn.close()


async def test_embedded_concurrent_produce_is_group_committed(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.db", partitions=3) as bus:
        await asyncio.gather(*(bus.produce("t", b"k%d" % (i % 10), b"%d" % i) for i in range(500)))
        consumer = await bus.consumer("g", ["t"])
        got = []
        while len(got) < 500:
            got.extend(await consumer.fetch(max_records=100, timeout=1))
        per_key: dict[bytes, list[int]] = {}
        for rec in got:
            per_key.setdefault(rec.key, []).append(int(rec.value))
        for key, vals in per_key.items():
            assert vals == sorted(vals), key  # call order is append order


async def test_embedded_existing_topic_keeps_its_partition_count(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    async with EmbeddedBus(path, partitions=2) as bus:
        await bus.ensure_topics(["t"])
    async with EmbeddedBus(path, partitions=8) as bus:
        await bus.produce("t", b"key", b"v")
        consumer = await bus.consumer("g", ["t", "u"])
        assert consumer.assignment == {("t", 0), ("t", 1)} | {("u", p) for p in range(8)}
        (rec,) = await consumer.fetch(timeout=1)
        assert rec.partition == partition_for(b"key", 2)


async def test_embedded_group_rebalances_when_members_come_and_go(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.db", partitions=6) as bus:
        c1 = await bus.consumer("g", ["t"])
        assert len(c1.assignment) == 6
        c2 = await bus.consumer("g", ["t"])
        c3 = await bus.consumer("g", ["t"])
        sizes = sorted(len(c.assignment) for c in (c1, c2, c3))
        assert sizes == [2, 2, 2]
        assert c1.assignment | c2.assignment | c3.assignment == {("t", p) for p in range(6)}
        await c2.close()
        assert len(c1.assignment) + len(c3.assignment) == 6
        solo = await bus.consumer("other", ["t"])
        assert len(solo.assignment) == 6  # groups are independent


async def test_embedded_commit_never_moves_backwards(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.db", partitions=1) as bus:
        for i in range(5):
            await bus.produce("t", b"k", b"%d" % i)
        c1 = await bus.consumer("g", ["t"])
        got = await c1.fetch(timeout=1)
        await c1.commit(got)
        await c1.commit(got[:1])  # a late, older commit (e.g. after a rebalance)
        await c1.close()
        c2 = await bus.consumer("g", ["t"])
        assert await c2.fetch(timeout=0.2) == []


async def test_embedded_purge_keeps_what_a_group_still_needs(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.db", partitions=1, retention=0.0) as bus:
        for i in range(6):
            await bus.produce("t", b"k", b"%d" % i)
        assert await bus.purge() == 0  # nobody committed: keep everything
        c = await bus.consumer("g", ["t"])
        got = await c.fetch(timeout=1)
        await c.commit(got[:4])
        assert await bus.purge() == 4
        await c.close()
        again = await bus.consumer("g", ["t"])
        assert [r.value for r in await again.fetch(timeout=1)] == [b"4", b"5"]
