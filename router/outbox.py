"""Publishing the outbox: records the router wrote in its transactions, onto the bus.

Rows are published in the order they were written and marked sent after the
bus has them. A crash between the two publishes a row again on the next pass;
every output carries a stable envelope id, so its consumer dedupes it.

No store transaction waits on the bus: rows are leased in one short
transaction, published outside it, and marked sent a small step at a time (a
crash repeats at most one step).

The router's batches take a shorter way (`handover`, `publish`): the rows a
batch writes are leased in its own transaction and kept in memory, and
published from there once it commits, with no scan to find them, and marked
sent in one unit after (a crash there repeats at most that batch's rows). The scan
(`flush`) stays for what a crash or an unavailable bus left, and for records
handled one by one; while it holds rows back, later rows go its way too, so
none overtakes an older one of its key.

One row never holds up the others:

| publishing a row fails because...        | then                                              |
| ---------------------------------------- | ------------------------------------------------- |
| it is over `bus.max_record_bytes`, its   | it goes to the DLQ with the reason (and stays in  |
| topic is not one the daemon created, or  | the store, marked dead); the rest go on           |
| the bus refuses it for good              |                                                   |
| the bus is down (retriable)              | its key's later rows wait (order per key holds);  |
|                                          | other keys go on; all are tried again next flush  |
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from router.bus.base import Bus, Topics
from router.dlq import DeadLetter, dead_letter
from router.envelope import now_utc
from router.errors import BusError
from router.store import Store
from router.store import routing as db
from router.store.conn import Conn
from router.store.routing import Handover, Output

log = structlog.get_logger(__name__)

BATCH = 200  # rows leased per pass
STEP = 25  # rows published, then marked sent, per step: the most a crash repeats
# How long a lease lives: a publisher that died holding rows gives them up after it.
LEASE = timedelta(seconds=30)
# Published rows are kept this long (to see what went out), then pruned.
KEEP_SENT = timedelta(days=1)
PRUNE_BATCH = 5000


@dataclass(slots=True)
class _Outcome:
    """What producing rows did with each: sent, dead (and why), or not now."""

    sent: list[int] = field(default_factory=list)
    dead: list[tuple[int, str]] = field(default_factory=list)
    unsent: list[int] = field(default_factory=list)

    def add(self, other: _Outcome) -> None:
        self.sent += other.sent
        self.dead += other.dead
        self.unsent += other.unsent


@dataclass(slots=True)
class FlushResult:
    published: int = 0
    dead: int = 0
    waiting: int = 0  # rows left for the next flush (the bus was unavailable)
    errors: list[str] = field(default_factory=list)


class OutboxPublisher:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        topics: Topics,
        *,
        known_topics: Callable[[], Collection[str]] | None = None,
        on_dead: Callable[[str], None] | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._topics = topics
        # Topics that exist (the daemon created them); a row for any other goes to the DLQ.
        self._known_topics = known_topics
        self._on_dead = on_dead
        # Told the topic of each row the bus could not take now (metrics).
        self._on_wait = on_wait
        # One flush at a time in this process (the router loop and the clock both flush).
        self._lock = asyncio.Lock()
        # The scan holds rows back (the bus refused them): later rows must not overtake
        # them, so they go the scan's way too until it is through.
        self._behind = False
        # (topic, key) of the rows the scan in flight has leased and not yet published.
        self._scanning: Counter[tuple[str, bytes]] = Counter()

    @staticmethod
    def handover() -> Handover:
        """Where the next batch's unit of work keeps the rows it writes, leased to us
        (see `Engine.handle_batch`)."""
        return Handover(lease_until=now_utc() + LEASE)

    async def publish(self, rows: Sequence[Output], *, scan: bool = False) -> FlushResult:
        """Publish rows a unit of work just committed (leased to us), from memory.

        `scan`: unsent rows no unit kept may be older than these (a record handled
        one by one wrote them), so these are given back to wait for the next flush,
        which publishes all in the order they were written. So they are too while
        the scan holds rows the bus refused.
        """
        result = FlushResult()
        if not rows:
            return result
        if scan or self._behind:
            ids = [r.id for r in rows]
            await self._store.work(lambda conn: db.release_claims(conn, ids))
            return result
        # Produced a step at a time, each under the lock, and marked in one unit after
        # them: the clock's due timers (which take the lock too) wait for one step at most,
        # never for a batch to end.
        blocked: set[tuple[str, bytes]] = set()
        done = _Outcome()
        for start in range(0, len(rows), STEP):
            async with self._lock:
                done.add(await self._produce(rows[start : start + STEP], blocked, result))
        await self._record(rows, done, result)
        self._behind = self._behind or result.waiting > 0
        self._report(result)
        return result

    async def start(self) -> None:
        """Take back the leases a previous run held when it died, so its rows go out now
        rather than when their leases expire. A lease only saves a duplicate publish: if
        another live process held one, the worst is a row published twice (same id)."""
        released = await self._store.work(db.release_all_claims)
        if released:
            log.info("outbox leases taken back", rows=released)

    async def flush(self) -> FlushResult:
        """Publish every unsent row a pass can take; what the bus refused for now waits.

        Raises only when the store fails (retriable); a bus that is down is reported
        in the result and its rows are tried again on the next flush.
        """
        result = FlushResult()
        async with self._lock:
            while True:
                now = now_utc()
                rows = await self._store.work(
                    lambda conn: db.claim_unsent(conn, BATCH, now, now + LEASE),  # noqa: B023
                    urgent=False,
                )
                keys = Counter((row.topic, bytes(row.key)) for row in rows)
                self._scanning.update(keys)  # before any await: see `write_and_publish`
                try:
                    blocked = await self._publish_rows(rows, result)
                finally:
                    self._scanning.subtract(keys)
                    self._scanning = +self._scanning
                if blocked or len(rows) < BATCH:
                    break
        self._behind = result.waiting > 0
        self._report(result)
        return result

    async def write_and_publish(
        self, write: Callable[[Conn], Coroutine[object, object, int]], topic: str
    ) -> int:
        """Run `write` and lease `topic`'s unsent rows in ONE transaction, then publish them;
        `write`'s count. For the clock: its timer records (on the inbound topic) take the
        next turn at the store and go out at once, not behind the outputs a backlog left.

        They wait for a scan in flight only if it holds an older row of one of their keys
        (only the clock writes the inbound topic, so a newer one it cannot hold)."""
        now = now_utc()

        async def write_and_claim(conn: Conn) -> tuple[int, Sequence[Any]]:
            written = await write(conn)
            return written, await db.claim_unsent(conn, BATCH, now, now + LEASE, topic=topic)

        written, rows = await self._store.work(write_and_claim, ahead=True)
        if rows:
            result = FlushResult()
            older = any((row.topic, bytes(row.key)) in self._scanning for row in rows)
            async with self._lock if older else contextlib.nullcontext():
                await self._publish_rows(rows, result, ahead=True)
            self._report(result)
        return written

    async def _publish_rows(
        self, rows: Sequence[Any], result: FlushResult, *, ahead: bool = False
    ) -> bool:
        """Publish leased rows a step at a time; True if the bus held some back."""
        blocked: set[tuple[str, bytes]] = set()
        for start in range(0, len(rows), STEP):
            await self._step(rows[start : start + STEP], blocked, result, ahead=ahead)
        return bool(blocked)

    def _report(self, result: FlushResult) -> None:
        if result.errors:
            log.warning(
                "outbox rows wait for the bus",
                waiting=result.waiting,
                published=result.published,
                error=result.errors[0],
            )

    async def prune(self, now: datetime) -> int:
        """Delete rows published more than KEEP_SENT ago, a bounded batch at a time."""
        return await self._store.work(
            lambda conn: db.prune_outbox(conn, now - KEEP_SENT, PRUNE_BATCH)
        )

    async def _step(
        self,
        rows: Sequence[Any],
        blocked: set[tuple[str, bytes]],
        result: FlushResult,
        *,
        ahead: bool = False,
    ) -> None:
        """Publish one step of rows (keys in parallel, each key in order), then record it."""
        done = await self._produce(rows, blocked, result)
        await self._record(rows, done, result, ahead=ahead)

    async def _produce(
        self, rows: Sequence[Any], blocked: set[tuple[str, bytes]], result: FlushResult
    ) -> _Outcome:
        """Produce rows on the bus, keys in parallel, each key in order."""
        lanes: dict[tuple[str, bytes], list[Any]] = defaultdict(list)
        for row in rows:
            lanes[(row.topic, bytes(row.key))].append(row)
        done = _Outcome()

        async def lane(lane_key: tuple[str, bytes], records: list[Any]) -> None:
            for i, row in enumerate(records):
                if lane_key not in blocked:
                    try:
                        why = await self._publish(row)
                    except BusError as exc:
                        blocked.add(lane_key)
                        result.errors.append(str(exc))
                    else:
                        if why is None:
                            done.sent.append(row.id)
                        else:
                            done.dead.append((row.id, why))
                        continue
                # The bus is unavailable for this key: this row and its later ones wait
                # (they must not overtake it); other keys go on.
                done.unsent.extend(r.id for r in records[i:])
                return

        await asyncio.gather(*(lane(k, records) for k, records in lanes.items()))
        return done

    async def _record(
        self, rows: Sequence[Any], done: _Outcome, result: FlushResult, *, ahead: bool = False
    ) -> None:
        """Mark what went out sent (or dead), and give back what the bus refused for now.
        `ahead`: the clock's, whose next due timers wait for it (see `Store.work`)."""
        now = now_utc()

        async def record(conn: Conn) -> None:
            if done.sent:
                await db.mark_sent(conn, done.sent, now)
            for row_id, why in done.dead:
                await db.mark_dead(conn, row_id, why, now)
            if done.unsent:
                await db.release_claims(conn, done.unsent)

        # Others' marks may wait for a batch to end.
        await self._store.work(record, urgent=ahead, ahead=ahead)
        result.published += len(done.sent)
        result.dead += len(done.dead)
        result.waiting += len(done.unsent)
        if self._on_dead is not None:
            for _ in done.dead:
                self._on_dead("outbox")
        if self._on_wait is not None:
            topics = {row.id: row.topic for row in rows}
            for row_id in done.unsent:
                self._on_wait(topics[row_id])

    async def _publish(self, row: Any) -> str | None:
        """Produce the row: None once the bus has it, or why it went to the DLQ instead.
        Raises `BusError` when neither could be done now (the bus is unavailable)."""
        if self._known_topics is not None and row.topic not in self._known_topics():
            why = f"topic {row.topic} is not one this daemon created (channel not configured?)"
        else:
            try:
                await self._bus.produce(row.topic, bytes(row.key), bytes(row.value))
                return None
            except BusError as exc:
                if exc.retriable:
                    raise
                why = f"the bus refused it: {exc}"
        await dead_letter(self._bus, self._topics, DeadLetter.of_output(row, why))
        return why
