"""Bus throughput: the router's bus layer against the raw client underneath it.

    python bench/bus.py [-n 100000] [--kafka HOST:PORT] [--no-kafka]

For each backend, N records (200-byte values, 1000 distinct keys, 6
partitions) go through two phases, timed separately:

- produce: N `produce()` calls with up to `--window` of them in flight
  (a busy router: many connectors producing at once); every call returns only
  once the record is durable.
- consume: one consumer in a fresh group fetches batches (up to 500) and
  commits each batch before fetching the next (the router's loop).

Rows:
- KafkaBus: `router.bus.KafkaBus` (idempotent producer, acks=all).
- aiokafka (baseline): the same work straight on aiokafka with the same
  settings (`send()` futures gathered per window; `getmany` + `commit`).
- EmbeddedBus: `router.bus.EmbeddedBus` on a temp file (WAL, synchronous=FULL).
- sqlite3 (baseline): what SQLite itself does with the same durability and
  batching: one thread, the same table layout, one transaction per window of
  inserts (executemany), then SELECT batches of 500 each followed by an offset
  UPDATE transaction. The bus adds the event loop <-> thread hops, per-record
  futures and partition bookkeeping on top of this.

A second table repeats the produce phase one record at a time (each
`produce()` awaited before the next): the latency floor of a durable write.

Without `--kafka`, a broker is started with tests/harness/kafka.py (needs
java and the jars; see there).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from router.bus import Bus, EmbeddedBus, KafkaBus, partition_for  # noqa: E402

PARTITIONS = 6
KEYS = 1000
VALUE_SIZE = 200
BATCH = 500


def records(n: int) -> list[tuple[bytes, bytes]]:
    pad = b"x" * VALUE_SIZE
    out = []
    for i in range(n):
        head = b"%d:" % i
        out.append((b"customer-%04d" % (i % KEYS), head + pad[len(head) :]))
    return out


@dataclass
class Result:
    name: str
    n: int
    produce_s: float
    consume_s: float

    def row(self) -> str:
        p = self.n / self.produce_s
        c = self.n / self.consume_s if self.consume_s else 0.0
        total = self.n / (self.produce_s + self.consume_s) if self.consume_s else 0.0
        cells = [f"{p:>11,.0f}", f"{c:>11,.0f}" if c else f"{'-':>11}"]
        cells.append(f"{total:>11,.0f}" if total else f"{'-':>11}")
        return f"{self.name:<22} {self.n:>8,} " + " ".join(cells)


HEADER = f"{'backend':<22} {'records':>8} {'produce/s':>11} {'consume/s':>11} {'both/s':>11}"


async def windowed(calls: list[Callable[[], Awaitable[object]]], window: int) -> None:
    for start in range(0, len(calls), window):
        await asyncio.gather(*(c() for c in calls[start : start + window]))


# -- the router's bus layer ------------------------------------------------


async def bench_bus(name: str, bus: Bus, data: list[tuple[bytes, bytes]], window: int) -> Result:
    topic = f"bench.bus.{uuid.uuid4().hex[:8]}"
    await bus.ensure_topics([topic])
    t0 = time.perf_counter()
    await windowed([lambda k=k, v=v: bus.produce(topic, k, v) for k, v in data], window)
    produced = time.perf_counter() - t0

    consumer = await bus.consumer(f"bench-{uuid.uuid4().hex[:8]}", [topic])
    got = 0
    t0 = time.perf_counter()
    while got < len(data):
        batch = await consumer.fetch(max_records=BATCH, timeout=1.0)
        if batch:
            await consumer.commit(batch)
            got += len(batch)
    consumed = time.perf_counter() - t0
    await consumer.close()
    return Result(name, len(data), produced, consumed)


async def bench_bus_sequential(name: str, bus: Bus, data: list[tuple[bytes, bytes]]) -> Result:
    topic = f"bench.seq.{uuid.uuid4().hex[:8]}"
    await bus.ensure_topics([topic])
    t0 = time.perf_counter()
    for k, v in data:
        await bus.produce(topic, k, v)
    return Result(name, len(data), time.perf_counter() - t0, 0.0)


# -- raw aiokafka ------------------------------------------------------------


async def bench_aiokafka(
    bootstrap: str, data: list[tuple[bytes, bytes]], window: int, *, sequential: bool = False
) -> Result:
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    async with KafkaBus(bootstrap, partitions=PARTITIONS) as admin:
        await admin.ensure_topics([topic])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        t0 = time.perf_counter()
        if sequential:
            for k, v in data:
                await producer.send_and_wait(topic, v, key=k)
        else:
            for start in range(0, len(data), window):
                futs = [
                    await producer.send(topic, v, key=k) for k, v in data[start : start + window]
                ]
                await asyncio.gather(*futs)
        produced = time.perf_counter() - t0
    finally:
        await producer.stop()
    if sequential:
        return Result("aiokafka (baseline)", len(data), produced, 0.0)

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        got = 0
        t0 = time.perf_counter()
        while got < len(data):
            batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            if batches:
                await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in batches.items()})
                got += sum(len(m) for m in batches.values())
        consumed = time.perf_counter() - t0
    finally:
        await consumer.stop()
    return Result("aiokafka (baseline)", len(data), produced, consumed)


# -- raw sqlite3 ---------------------------------------------------------------


def bench_sqlite(
    path: Path, data: list[tuple[bytes, bytes]], window: int, *, sequential: bool = False
) -> Result:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        'CREATE TABLE r (topic TEXT, partition INTEGER, "offset" INTEGER, key BLOB, value BLOB,'
        ' ts REAL, PRIMARY KEY (topic, partition, "offset"))'
    )
    conn.execute("CREATE TABLE o (grp TEXT, partition INTEGER, next INTEGER)")
    nexts = [0] * PARTITIONS
    step = 1 if sequential else window
    t0 = time.perf_counter()
    for start in range(0, len(data), step):
        rows = []
        for k, v in data[start : start + step]:
            p = partition_for(k, PARTITIONS)
            rows.append(("t", p, nexts[p], k, v, time.time()))
            nexts[p] += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    produced = time.perf_counter() - t0
    if sequential:
        conn.close()
        return Result("sqlite3 (baseline)", len(data), produced, 0.0)

    positions = [0] * PARTITIONS
    got = 0
    turn = 0
    t0 = time.perf_counter()
    while got < len(data):
        turn = (turn + 1) % PARTITIONS
        out: list[tuple[int, int]] = []
        for p in [*range(turn, PARTITIONS), *range(turn)]:
            if len(out) >= BATCH:
                break
            rows = conn.execute(
                'SELECT "offset", value FROM r WHERE topic = ? AND partition = ? AND "offset" >= ?'
                ' ORDER BY "offset" LIMIT ?',
                ("t", p, positions[p], BATCH - len(out)),
            ).fetchall()
            out.extend((p, o) for o, _ in rows)
            if rows:
                positions[p] = rows[-1][0] + 1
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO o VALUES (?, ?, ?)", [("g", p, positions[p]) for p in range(PARTITIONS)]
        )
        conn.execute("COMMIT")
        got += len(out)
    consumed = time.perf_counter() - t0
    conn.close()
    return Result("sqlite3 (baseline)", len(data), produced, consumed)


# -- main ----------------------------------------------------------------------


async def run(args: argparse.Namespace, bootstrap: str | None) -> None:
    data = records(args.n)
    seq = records(args.sequential)
    main_rows: list[Result] = []
    seq_rows: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="omnirouter-bench-") as tmp:
        if bootstrap is not None:
            await bench_aiokafka(bootstrap, records(5000), args.window)  # JVM warm-up, untimed
            main_rows.append(await bench_aiokafka(bootstrap, data, args.window))
            async with KafkaBus(bootstrap, partitions=PARTITIONS) as kbus:
                main_rows.append(await bench_bus("KafkaBus", kbus, data, args.window))
                seq_rows.append(await bench_bus_sequential("KafkaBus", kbus, seq))
            seq_rows.append(await bench_aiokafka(bootstrap, seq, args.window, sequential=True))
        main_rows.append(
            await asyncio.to_thread(bench_sqlite, Path(tmp) / "raw.db", data, args.window)
        )
        async with EmbeddedBus(Path(tmp) / "bus.db", partitions=PARTITIONS) as ebus:
            main_rows.append(await bench_bus("EmbeddedBus", ebus, data, args.window))
            seq_rows.append(await bench_bus_sequential("EmbeddedBus", ebus, seq))
        seq_rows.append(
            await asyncio.to_thread(
                bench_sqlite, Path(tmp) / "raw-seq.db", seq, args.window, sequential=True
            )
        )

    print(
        f"\nproduce {args.window} in flight, consume+commit batches of {BATCH}; "
        f"{VALUE_SIZE}-byte values, {KEYS} keys, {PARTITIONS} partitions"
    )
    print(HEADER)
    for r in main_rows:
        print(r.row())
    print("\nproduce one at a time (each awaited: durable-write latency)")
    print(HEADER)
    for r in seq_rows:
        print(r.row())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=100_000, help="records per run (default 100000)")
    parser.add_argument("--window", type=int, default=500, help="produces in flight (500)")
    parser.add_argument(
        "--sequential", type=int, default=1000, help="records for the one-at-a-time run (1000)"
    )
    parser.add_argument("--kafka", help="bootstrap servers of a running broker")
    parser.add_argument("--no-kafka", action="store_true", help="embedded bus only")
    args = parser.parse_args()
    # aiokafka logs retries (coordinator moves, leader elections) as errors; not ours
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    if args.no_kafka:
        asyncio.run(run(args, None))
        return 0
    if args.kafka:
        asyncio.run(run(args, args.kafka))
        return 0
    from tests.harness.kafka import KafkaBroker

    print("starting a Kafka broker (tests/harness/kafka.py) ...", file=sys.stderr, flush=True)
    with KafkaBroker() as broker:
        print(f"broker at {broker.bootstrap}", file=sys.stderr, flush=True)
        asyncio.run(run(args, broker.bootstrap))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
