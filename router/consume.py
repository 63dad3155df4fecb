"""The one consume loop: fetch, handle in order, commit what is durable.

Offsets are committed only after a record's effects are durable. A retriable
failure is retried with backoff (the record is not skipped, so order per key
holds); a record that can never succeed is dead-lettered and the loop goes on.

With a batch handler, the fetched records are first offered to it: it applies
them in order, a part at a time, and hands back each part it did not apply
(nothing of it is done) for the loop to handle one record at a time, as
above, before it goes on to the next part.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

import structlog

from router.bus.base import Bus, Consumer, Record, Topics
from router.dlq import dead_letter
from router.errors import OmniError
from router.metrics import Metrics
from router.retry import Backoff

log = structlog.get_logger(__name__)

Handler = Callable[[Record], Awaitable[None]]
# Consecutive records of a fetched batch, and whether the batch handler applied them
# (False: the loop handles each through `handler`, with retry and dead letters).
Part = tuple[Sequence[Record], bool]
BatchHandler = Callable[[Sequence[Record]], AsyncGenerator[Part, None]]


class ConsumeLoop:
    def __init__(
        self,
        *,
        bus: Bus,
        topics: Topics,
        group: str,
        subscribe: Sequence[str],
        handler: Handler,
        metrics: Metrics,
        backoff: Backoff = Backoff(base=0.2, cap=10.0),
        after_batch: Callable[[], Awaitable[object]] | None = None,
        handle_batch: BatchHandler | None = None,
    ) -> None:
        self._bus = bus
        self._topics = topics
        self._group = group
        self._subscribe = list(subscribe)
        self._handler = handler
        self._metrics = metrics
        self._backoff = backoff
        # Runs after a batch is handled and before its offsets are committed
        # (the router publishes its outbox here).
        self._after_batch = after_batch
        # Yields the fetched records back, in order, in parts (see `Part`).
        self._handle_batch = handle_batch
        self._stopping = asyncio.Event()
        self._consumer: Consumer | None = None
        self.started = asyncio.Event()

    def stop(self) -> None:
        """Finish the record in hand, commit, and return from `run()`."""
        self._stopping.set()

    async def run(self) -> None:
        consumer = await self._bus.consumer(self._group, self._subscribe)
        self._consumer = consumer
        self.started.set()
        log.info("consumer started", group=self._group, topics=self._subscribe)
        try:
            while not self._stopping.is_set():
                records = await consumer.fetch(max_records=200, timeout=0.5)
                done = await self._handle(records)
                if done and self._after_batch is not None and not await self._finish_batch():
                    break  # stopping while the bus is down: records come again
                if done:
                    await consumer.commit(done)
        finally:
            self._consumer = None
            await consumer.close()
            log.info("consumer stopped", group=self._group)

    @property
    def group(self) -> str:
        return self._group

    async def lag(self) -> int:
        """Records this member's partitions hold beyond the group's commits."""
        consumer = self._consumer
        return sum((await consumer.lag()).values()) if consumer is not None else 0

    async def _handle(self, records: Sequence[Record]) -> list[Record]:
        """Handle `records` in order; return those done: all, or the ones before a
        record still failing when the loop was told to stop."""
        if self._handle_batch is None:
            parts = _unapplied(records)
        else:
            parts = self._handle_batch(records)
        done: list[Record] = []
        async with contextlib.aclosing(parts):
            async for part, applied in parts:
                if applied:
                    done.extend(part)
                else:
                    for record in part:
                        if not await self._process(record):
                            return done  # stopping during a retry: leave it for redelivery
                        done.append(record)
                if self._stopping.is_set():
                    return done  # the rest of the fetch comes again after the restart
        return done

    async def _finish_batch(self) -> bool:
        assert self._after_batch is not None
        delays = self._backoff.delays()
        while True:
            try:
                await self._after_batch()
                return True
            except OmniError as exc:
                if not exc.retriable:
                    raise
                delay = next(delays, 1.0)
                log.warning("after-batch step failed; retrying", error=str(exc), delay=delay)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                return False
            except TimeoutError:
                continue

    async def _process(self, record: Record) -> bool:
        delays = self._backoff.delays()
        while True:
            try:
                await self._handler(record)
                return True
            except OmniError as exc:
                if not exc.retriable:
                    await self._reject(record, f"{type(exc).__name__}: {exc}")
                    return True
                error = exc
            except Exception as exc:  # a bug must not stop the daemon or lose the record
                log.exception("handler failed", topic=record.topic, offset=record.offset)
                await self._reject(record, f"unexpected {type(exc).__name__}: {exc}")
                return True
            delay = next(delays, 1.0)
            log.warning(
                "retrying record",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                error=str(error),
                delay=round(delay, 3),
            )
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                return False
            except TimeoutError:
                continue

    async def _reject(self, record: Record, reason: str) -> None:
        self._metrics.dead_letters.labels(source=record.topic).inc()
        await dead_letter(self._bus, self._topics, record, reason)


async def _unapplied(records: Sequence[Record]) -> AsyncGenerator[Part, None]:
    yield records, False
