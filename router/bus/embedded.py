"""The embedded bus: a durable single-machine log in one SQLite file.

Same contract as Kafka (see `router.bus.base`): records are appended per
partition (`partition_for(key)`, Kafka's own partitioner) with increasing
offsets; consumer groups keep committed offsets; a consumer starts each of its
partitions at the group's committed offset, so whatever a dead or closed member
fetched without committing is delivered again.

Durability: WAL journal with `synchronous=FULL`, so every commit fsyncs the
WAL and `produce()` returns only once the record survives a power loss, not
just a process crash (NORMAL in WAL mode would only sync at checkpoints).
Concurrent `produce()` calls are group-committed: records waiting while a
transaction is in flight go into the next transaction together, so the fsync
cost is shared.

Threads: one writer thread and one reader thread, each owning its own
connection; the event loop never touches SQLite. WAL lets the reader run while
the writer commits.

Groups: members of one group inside one process split partitions (round robin
per topic, rebalanced whenever a member joins or leaves). Across processes
there is no coordination: every process's members of a group see all of the
partitions their process assigns them, so run one consuming process per group
(producing from several processes is fine). Scale out on Kafka.

Topics are created with the bus's `partitions` on first use (like a broker
with auto-create) or by `ensure_topics`; an existing topic keeps its count.

Retention: records older than `retention` seconds that every group which ever
committed on their partition has committed are deleted (checked at most every
ten minutes). Records no group has committed are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import structlog

from router.bus.base import DEFAULT_MAX_RECORD_BYTES, Record, check_record_size
from router.bus.partition import partition_for
from router.errors import BusError
from router.sqlite import enable_wal

T = TypeVar("T")
log = structlog.get_logger(__name__)

TP = tuple[str, int]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS bus_topics (
    topic TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bus_partitions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bus_records (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);
CREATE TABLE IF NOT EXISTS bus_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
"""
_MAX_BATCH: Final = 5000
_PURGE_EVERY: Final = 600.0
_SCAN_BATCH: Final = 500


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    enable_wal(conn.cursor(), 30.0)
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class _Writer:
    """The writer thread's state; every method runs on that thread."""

    def __init__(self, path: Path) -> None:
        self.conn = _connect(path)
        self.conn.executescript(_SCHEMA)
        self.partitions: dict[str, int] = {}

    def _topics(self, names: Sequence[str], partitions: int) -> dict[str, int]:
        """Inside a write transaction: create missing topics, return all counts."""
        missing = [n for n in names if n not in self.partitions]
        if missing:
            cur = self.conn.executemany(
                "INSERT OR IGNORE INTO bus_topics (topic, partitions) VALUES (?, ?)",
                [(n, partitions) for n in missing],
            )
            cur.executemany(
                "INSERT OR IGNORE INTO bus_partitions (topic, partition, next_offset)"
                " VALUES (?, ?, 0)",
                [(n, p) for n in missing for p in range(partitions)],
            )
            for name in missing:
                row = self.conn.execute(
                    "SELECT partitions FROM bus_topics WHERE topic = ?", (name,)
                ).fetchone()
                self.partitions[name] = int(row[0])
        return {n: self.partitions[n] for n in names}

    def _transaction(self, work: Callable[[], T]) -> T:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = work()
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return result

    def ensure_topics(self, names: Sequence[str], partitions: int) -> dict[str, int]:
        return self._transaction(lambda: self._topics(names, partitions))

    def append(self, batch: Sequence[tuple[str, bytes, bytes]], partitions: int) -> None:
        def work() -> None:
            counts = self._topics(list(dict.fromkeys(t for t, _, _ in batch)), partitions)
            placed = [(t, partition_for(k, counts[t]), k, v) for t, k, v in batch]
            nexts: dict[TP, int] = {}
            for t, p, _, _ in placed:
                if (t, p) not in nexts:
                    row = self.conn.execute(
                        "SELECT next_offset FROM bus_partitions WHERE topic = ? AND partition = ?",
                        (t, p),
                    ).fetchone()
                    nexts[(t, p)] = int(row[0])
            now = time.time()
            rows = []
            for t, p, k, v in placed:
                offset = nexts[(t, p)]
                nexts[(t, p)] = offset + 1
                rows.append((t, p, offset, k, v, now))
            self.conn.executemany(
                'INSERT INTO bus_records (topic, partition, "offset", key, value, ts)'
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self.conn.executemany(
                "UPDATE bus_partitions SET next_offset = ? WHERE topic = ? AND partition = ?",
                [(n, t, p) for (t, p), n in nexts.items()],
            )

        self._transaction(work)

    def commit(self, group: str, offsets: dict[TP, int]) -> None:
        def work() -> None:
            self.conn.executemany(
                "INSERT INTO bus_offsets (grp, topic, partition, next_offset) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (grp, topic, partition) DO UPDATE"
                " SET next_offset = max(next_offset, excluded.next_offset)",
                [(group, t, p, n) for (t, p), n in offsets.items()],
            )

        self._transaction(work)

    def purge(self, older_than: float) -> int:
        def work() -> int:
            floors = self.conn.execute(
                "SELECT topic, partition, min(next_offset) FROM bus_offsets"
                " GROUP BY topic, partition"
            ).fetchall()
            deleted = 0
            for topic, partition, floor in floors:
                cur = self.conn.execute(
                    'DELETE FROM bus_records WHERE topic = ? AND partition = ? AND "offset" < ?'
                    " AND ts < ?",
                    (topic, partition, floor, older_than),
                )
                deleted += cur.rowcount
            return deleted

        return self._transaction(work)

    def close(self) -> None:
        self.conn.close()


class _Reader:
    """The reader thread's state; every method runs on that thread."""

    def __init__(self, path: Path) -> None:
        self.conn = _connect(path)

    def fetch(self, plan: Sequence[tuple[str, int, int]], max_records: int) -> list[Record]:
        out: list[Record] = []
        self.conn.execute("BEGIN")  # one snapshot for the whole fetch
        try:
            for topic, partition, position in plan:
                left = max_records - len(out)
                if left <= 0:
                    break
                rows = self.conn.execute(
                    'SELECT "offset", key, value FROM bus_records'
                    ' WHERE topic = ? AND partition = ? AND "offset" >= ?'
                    ' ORDER BY "offset" LIMIT ?',
                    (topic, partition, position, left),
                ).fetchall()
                out.extend(Record(topic, partition, o, k, v) for o, k, v in rows)
        finally:
            self.conn.execute("COMMIT")
        return out

    def committed(self, group: str, tps: Sequence[TP]) -> dict[TP, int]:
        result: dict[TP, int] = {}
        for topic, partition in tps:
            row = self.conn.execute(
                "SELECT next_offset FROM bus_offsets WHERE grp = ? AND topic = ? AND partition = ?",
                (group, topic, partition),
            ).fetchone()
            result[(topic, partition)] = int(row[0]) if row else 0
        return result

    def ends(self, tps: Sequence[TP]) -> dict[TP, int]:
        """The offset after the last record, per partition (0 when empty)."""
        result: dict[TP, int] = {}
        for topic, partition in tps:
            row = self.conn.execute(
                'SELECT MAX("offset") FROM bus_records WHERE topic = ? AND partition = ?',
                (topic, partition),
            ).fetchone()
            result[(topic, partition)] = int(row[0]) + 1 if row and row[0] is not None else 0
        return result

    def close(self) -> None:
        self.conn.close()


@dataclass(eq=False)
class _Group:
    name: str
    members: list[EmbeddedConsumer] = field(default_factory=list)

    def rebalance(self, partitions: dict[str, int]) -> None:
        """Round robin per topic over the members subscribed to it."""
        plan: dict[EmbeddedConsumer, set[TP]] = {m: set() for m in self.members}
        for topic in sorted({t for m in self.members for t in m.topics}):
            subs = [m for m in self.members if topic in m.topics]
            for p in range(partitions[topic]):
                plan[subs[p % len(subs)]].add((topic, p))
        for member, tps in plan.items():
            member._assign(tps)


class EmbeddedBus:
    """A durable partitioned log with consumer groups in one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        *,
        partitions: int = 6,
        poll_interval: float = 0.2,
        retention: float | None = 7 * 24 * 3600.0,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.path = Path(path)
        self.max_record_bytes = max_record_bytes
        self.partitions = partitions
        self.poll_interval = poll_interval
        self.retention = retention
        self._writer: _Writer | None = None
        self._reader: _Reader | None = None
        self._wpool: ThreadPoolExecutor | None = None
        self._rpool: ThreadPoolExecutor | None = None
        self._counts: dict[str, int] = {}
        self._groups: dict[str, _Group] = {}
        self._pending: list[tuple[str, bytes, bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._last_purge = time.monotonic()
        self._started = False

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wpool = ThreadPoolExecutor(1, thread_name_prefix="bus-writer")
        self._rpool = ThreadPoolExecutor(1, thread_name_prefix="bus-reader")
        try:
            self._writer = await self._run(self._wpool, _Writer, self.path)
            self._reader = await self._run(self._rpool, _Reader, self.path)
        except BaseException:
            await self._close_threads()
            raise
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        for group in list(self._groups.values()):
            for member in list(group.members):
                await member.close()
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        self._started = False
        await self._close_threads()

    async def _close_threads(self) -> None:
        writer, reader, self._writer, self._reader = self._writer, self._reader, None, None
        if writer is not None and self._wpool is not None:
            with contextlib.suppress(BusError):
                await self._run(self._wpool, writer.close)
        if reader is not None and self._rpool is not None:
            with contextlib.suppress(BusError):
                await self._run(self._rpool, reader.close)
        for pool in (self._wpool, self._rpool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._wpool = self._rpool = None

    async def __aenter__(self) -> EmbeddedBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- plumbing --------------------------------------------------------

    @staticmethod
    async def _run(pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except sqlite3.Error as exc:
            # locked/busy/IO are worth retrying; a corrupt file or a bug is not
            raise BusError(
                f"embedded bus: {exc}", retriable=isinstance(exc, sqlite3.OperationalError)
            ) from exc

    def _live(self) -> tuple[_Writer, _Reader, ThreadPoolExecutor, ThreadPoolExecutor]:
        if not self._started or self._writer is None or self._reader is None:
            raise BusError("embedded bus is not started", retriable=False)
        assert self._wpool is not None and self._rpool is not None
        return self._writer, self._reader, self._wpool, self._rpool

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        _, _, wpool, _ = self._live()
        return await self._run(wpool, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        _, _, _, rpool = self._live()
        return await self._run(rpool, fn, *args)

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    # -- Bus ---------------------------------------------------------------

    async def ensure_topics(self, names: Sequence[str]) -> None:
        await self._topic_counts(names)

    async def _topic_counts(self, names: Sequence[str]) -> dict[str, int]:
        writer = self._live()[0]
        missing = [n for n in dict.fromkeys(names) if n not in self._counts]
        if missing:
            self._counts.update(await self._write(writer.ensure_topics, missing, self.partitions))
        return {n: self._counts[n] for n in names}

    async def produce(self, topic: str, key: bytes, value: bytes) -> None:
        self._live()
        check_record_size(topic, key, value, self.max_record_bytes)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((topic, key, value, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        """Commit whatever is pending, one transaction at a time (group commit)."""
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            try:
                writer = self._live()[0]
                await self._write(
                    writer.append, [(t, k, v) for t, k, v, _ in batch], self.partitions
                )
            except Exception as exc:
                retriable = exc.retriable if isinstance(exc, BusError) else False
                for *_, fut in batch:
                    if not fut.done():
                        err = BusError(f"produce failed: {exc}", retriable=retriable)
                        err.__cause__ = exc
                        fut.set_exception(err)
                continue
            for *_, fut in batch:
                if not fut.done():
                    fut.set_result(None)
            self._notify()
            await self._maybe_purge()

    async def _maybe_purge(self) -> None:
        if self.retention is None or time.monotonic() - self._last_purge < _PURGE_EVERY:
            return
        self._last_purge = time.monotonic()
        try:
            deleted = await self._write(self._live()[0].purge, time.time() - self.retention)
        except BusError as exc:
            log.warning("bus.purge_failed", error=str(exc))
            return
        if deleted:
            log.info("bus.purged", records=deleted)

    async def purge(self) -> int:
        """Delete expired records now (see retention); returns how many."""
        if self.retention is None:
            return 0
        return await self._write(self._live()[0].purge, time.time() - self.retention)

    async def consumer(self, group: str, topics: Sequence[str]) -> EmbeddedConsumer:
        if not topics:
            raise BusError("a consumer needs at least one topic", retriable=False)
        counts = await self._topic_counts(topics)
        grp = self._groups.setdefault(group, _Group(group))
        member = EmbeddedConsumer(self, grp, tuple(dict.fromkeys(topics)))
        grp.members.append(member)
        grp.rebalance({**self._counts, **counts})
        return member

    async def scan(
        self, topic: str, start: Mapping[int, int] | None = None
    ) -> AsyncGenerator[list[Record], None]:
        reader = self._live()[1]
        counts = await self._topic_counts([topic])
        plan = dict(start) if start is not None else dict.fromkeys(range(counts[topic]), 0)
        ends = await self._read(reader.ends, [(topic, p) for p in plan])
        for partition, first in sorted(plan.items()):
            position, end = first, ends[(topic, partition)]
            while position < end:
                fetch = [(topic, partition, position)]
                rows = await self._read(reader.fetch, fetch, min(_SCAN_BATCH, end - position))
                rows = [r for r in rows if r.offset < end]
                if not rows:
                    break
                yield rows
                position = rows[-1].offset + 1

    def _leave(self, member: EmbeddedConsumer) -> None:
        group = member.group
        if member in group.members:
            group.members.remove(member)
        if group.members:
            group.rebalance(self._counts)
        else:
            self._groups.pop(group.name, None)

    async def backlog(self, group: str, topics: Sequence[str]) -> dict[str, int]:
        counts = await self._topic_counts(topics)
        tps = [(t, p) for t, n in counts.items() for p in range(n)]
        reader = self._live()[1]
        ends = await self._read(reader.ends, tps)
        committed = await self._read(reader.committed, group, tps)
        result = dict.fromkeys(counts, 0)
        for tp in tps:
            result[tp[0]] += max(ends[tp] - committed[tp], 0)
        return result

    async def ping(self) -> bool:
        if not self._started:
            return False
        try:
            return await self._read(_ping, self._live()[1])
        except BusError:
            return False


def _ping(reader: _Reader) -> bool:
    reader.conn.execute("SELECT 1 FROM bus_topics LIMIT 1").fetchall()
    return True


class EmbeddedConsumer:
    """One member of a consumer group on the embedded bus."""

    def __init__(self, bus: EmbeddedBus, group: _Group, topics: tuple[str, ...]) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        # position per assigned partition; None = start at the committed offset
        self._positions: dict[TP, int | None] = {}
        self._turn = 0
        self._closed = False

    @property
    def assignment(self) -> frozenset[TP]:
        return frozenset(self._positions)

    def _assign(self, tps: set[TP]) -> None:
        self._positions = {tp: self._positions.get(tp) for tp in sorted(tps)}

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:  # noqa: ASYNC109
        if self._closed:
            raise BusError("consumer is closed", retriable=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self.bus._changed  # taken before reading: no lost wake-up
            records = await self._fetch_once(max_records)
            left = deadline - loop.time()
            if records or left <= 0 or self._closed:
                return records
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, self.bus.poll_interval)):
                    await changed.wait()

    async def _fetch_once(self, max_records: int) -> list[Record]:
        reader = self.bus._live()[1]
        unknown = [tp for tp, pos in self._positions.items() if pos is None]
        if unknown:
            committed = await self.bus._read(reader.committed, self.group.name, unknown)
            for tp, offset in committed.items():
                if tp in self._positions and self._positions[tp] is None:
                    self._positions[tp] = offset
        plan = [(t, p, pos) for (t, p), pos in self._positions.items() if pos is not None]
        if not plan:
            return []
        self._turn = (self._turn + 1) % len(plan)
        plan = plan[self._turn :] + plan[: self._turn]
        rows = await self.bus._read(reader.fetch, plan, max_records)
        # keep only partitions still ours at the position we read from
        start = {(t, p): pos for t, p, pos in plan}
        accepted: list[Record] = []
        for rec in rows:
            tp = (rec.topic, rec.partition)
            if tp in self._positions and self._positions[tp] == start[tp]:
                accepted.append(rec)
        for rec in accepted:
            self._positions[(rec.topic, rec.partition)] = rec.offset + 1
        return accepted

    async def commit(self, records: Sequence[Record]) -> None:
        if not records:
            return
        offsets: dict[TP, int] = {}
        for rec in records:
            tp = (rec.topic, rec.partition)
            offsets[tp] = max(offsets.get(tp, 0), rec.offset + 1)
        await self.bus._write(self.bus._live()[0].commit, self.group.name, offsets)

    async def lag(self) -> dict[TP, int]:
        tps = sorted(self._positions)
        if not tps:
            return {}
        reader = self.bus._live()[1]
        ends = await self.bus._read(reader.ends, tps)
        committed = await self.bus._read(reader.committed, self.group.name, tps)
        return {tp: max(ends[tp] - committed[tp], 0) for tp in tps}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._positions = {}
        self.bus._leave(self)
