"""The one consume loop: fetch, handle in order, commit what is durable.

Offsets are committed only after a record's effects are durable. A retriable
failure is retried with backoff (the record is not skipped, so order per key
holds); a record that can never succeed is dead-lettered and the loop goes on.

With a batch handler, the fetched records are first offered to it: it applies
them in order, a part at a time, and hands back each part it did not apply
(nothing of it is done) for the loop to handle one record at a time, as
above, before it goes on to the next part.

When the loop commits: by default once per fetch (up to `FETCH` records),
in the background while the next fetch is handled, and the one after waits for
it to land (a crash repeats at most the fetch whose commit was in flight).
With `after_batch` (the router publishes its outbox there, and no offset may
be committed before that), a fetch's `after_batch` and then its commit run in
the background together while the next fetch is handled (its outputs go out
while the next records are applied); the next fetch's step waits for them, so
at most one is in flight, and a failure of one stops the loop.

With `commit_step`, progress is committed as records are done, so a crash
repeats a few records instead of up to a whole fetch: for loops whose effect is
each record's own send (the channels' outbound loops), where every repeat
reaches a person. A commit is a round trip (about 8 ms on a local Kafka 4.1, so
one per record would cap a loop near 120 records/s): steps run in the
background, one at a time, while the next records are handled; each takes what
was done since the last one began, and the loop waits for a step only when
`commit_step` records are waiting behind it. A crash then repeats at most the
step in flight, the records waiting, and the record in hand: at most 2 x
`commit_step` + 1, usually a few.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

import structlog

from router.bus.base import Bus, Consumer, Record, Topics
from router.dlq import DeadLetter, dead_letter
from router.errors import OmniError
from router.metrics import Metrics
from router.retry import Backoff

log = structlog.get_logger(__name__)

Handler = Callable[[Record], Awaitable[None]]
# Consecutive records of a fetched batch, and whether the batch handler applied them
# (False: the loop handles each through `handler`, with retry and dead letters).
Part = tuple[Sequence[Record], bool]
BatchHandler = Callable[[Sequence[Record]], AsyncGenerator[Part, None]]

# Records asked for per fetch.
FETCH = 200


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
        commit_step: int | None = None,
    ) -> None:
        if commit_step is not None and (commit_step < 1 or after_batch is not None):
            # after_batch must run before any offset of its batch is committed
            raise ValueError("commit_step must be >= 1, and cannot go with after_batch")
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
        # Commit in steps as records are done (see the module's docstring).
        self._commit_step = commit_step
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
        progress = _Progress(consumer, self._commit_step)
        # The last fetch's after-batch step and commit, while the next fetch is handled:
        # False once it gave up (stopping while the bus is down: its records come again).
        settling: asyncio.Task[bool] | None = None
        try:
            while not self._stopping.is_set():
                if settling is not None and settling.done() and not settling.result():
                    break  # result() raises what the step raised
                records = await consumer.fetch(max_records=FETCH, timeout=0.5)
                if records:  # an empty fetch (nothing yet, or a slow start) has no batch
                    await self._handle(records, progress)
                if self._after_batch is None:
                    await progress.commit()
                elif progress.done:
                    if settling is not None and not await settling:
                        break
                    settling = asyncio.create_task(self._settle(progress.take(), progress))
            if settling is not None:
                await settling
            await progress.settle()
        finally:
            if settling is not None and not settling.done():  # the loop failed meanwhile
                settling.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await settling
            await progress.abandon()
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

    async def _handle(self, records: Sequence[Record], progress: _Progress) -> None:
        """Handle `records` in order into `progress`: all, or those before a record
        still failing when the loop was told to stop."""
        if self._handle_batch is None:
            parts = _unapplied(records)
        else:
            parts = self._handle_batch(records)
        async with contextlib.aclosing(parts):
            async for part, applied in parts:
                if applied:
                    await progress.add(part)
                else:
                    for record in part:
                        if not await self._process(record, progress):
                            return  # stopping during a retry: leave it for redelivery
                        await progress.add((record,))
                if self._stopping.is_set():
                    return  # the rest of the fetch comes again after the restart

    async def _settle(self, records: Sequence[Record], progress: _Progress) -> bool:
        """`after_batch` for a fetch's `records`, then their commit begun (a failed commit
        is logged and they go with the next one); False if it gave up (stopping)."""
        if not await self._finish_batch():
            return False
        await progress.begin_commit(records)  # landed by the next commit, or at the end
        return True

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

    async def _process(self, record: Record, progress: _Progress) -> bool:
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
            await progress.flush()  # what is done need not wait on this record's retries
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
        await dead_letter(self._bus, self._topics, DeadLetter.of_record(record, reason))


class _Progress:
    """Records done and not yet committed, and the commit step in flight, if any."""

    def __init__(self, consumer: Consumer, step: int | None) -> None:
        self._consumer = consumer
        self._step = step
        self.done: list[Record] = []  # no commit has taken these yet
        self._taken: list[Record] = []  # the step in flight
        self._inflight: asyncio.Task[None] | None = None

    async def add(self, records: Sequence[Record]) -> None:
        self.done.extend(records)
        if self._step is None or not self.done:
            return
        if self._inflight is not None:
            if not self._inflight.done() and len(self.done) < self._step:
                return  # the next step takes these once this one lands
            await self._land()
        self._begin(self.take())

    async def flush(self) -> None:
        """With steps on: commit what is done now, and wait for it (a failure is logged)."""
        if self._step is not None:
            await self._land()
            if self.done:
                self._begin(self.take())
                await self._land()

    async def commit(self) -> None:
        """Commit everything done (the end of a fetch) in the background, once the previous
        commit landed: the next fetch need not wait a round trip to the broker. A failed
        commit is logged and its records go with the next one (non-retriable: raised)."""
        await self._land()
        if self.done:
            self._begin(self.take())

    def take(self) -> list[Record]:
        """The records done so far, for a commit the caller begins (`begin_commit`)."""
        taken, self.done = self.done, []
        return taken

    async def begin_commit(self, records: Sequence[Record]) -> None:
        """Commit `records` in the background, once the previous commit landed: waiting for
        the broker's answer here would hold up the next fetch's records (at 100 msg/s it
        tripled their median latency)."""
        await self._land()
        self._begin(list(records))

    async def settle(self) -> None:
        """The loop is stopping: let the commit in flight land."""
        await self._land()

    async def abandon(self) -> None:
        """The loop is ending: a step still in flight may land or not (it repeats)."""
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _begin(self, records: list[Record]) -> None:
        self._taken = records
        self._inflight = asyncio.create_task(self._consumer.commit(records))

    async def _land(self) -> None:
        """Wait for the step in flight; if it failed, the next commit takes its records."""
        task, self._inflight = self._inflight, None
        if task is None:
            return
        try:
            await task
        except OmniError as exc:
            if not exc.retriable:
                raise
            log.warning("commit step failed; the next commit takes its records", error=str(exc))
            self.done[:0] = self._taken


async def _unapplied(records: Sequence[Record]) -> AsyncGenerator[Part, None]:
    yield records, False
