"""The router's handling of inbound records.

Decode strictly (bad records go to the DLQ with the reason), hand the envelope
to the routing engine (which dedupes by envelope id and writes its effects and
outputs in one store transaction). Each committed run's outputs are published
from memory (see `router.outbox`) while the next run is applied, one run after
the other; after each fetch they are all out and the outbox is flushed, and only
then does the consume loop commit the fetch's offsets.

`handle_batch` applies runs of valid envelopes in one transaction each (a
commit per record is much of a record's cost); what it cannot apply so, it
hands back to the consume loop, which runs it through `handle` one record at a
time, with retries and dead letters as ever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from typing import Any

import structlog

from router.bus.base import Bus, Record, Topics
from router.consume import Part
from router.dlq import DeadLetter, dead_letter
from router.envelope import Envelope, decode, now_utc
from router.errors import EnvelopeError
from router.metrics import Metrics
from router.outbox import OutboxPublisher
from router.routing.admission import refusal
from router.routing.engine import Decision, Engine
from router.store.routing import Output

log = structlog.get_logger(__name__)

# Records per store transaction in `handle_batch`. A commit (an fsync on SQLite) is about
# a tenth of a record's cost at 25 per transaction; fewer per transaction would make the
# first records of a fetch wait longer for their outputs, which go out per transaction.
# Under a backlog (a fetch of at least BACKLOG records) a transaction takes half the fetch,
# up to BACKLOG_CHUNK: fewer commits where latency is lost anyway. On SQLite the
# transaction holds the write lock throughout (about 0.25 s for 100 records on 2 cores);
# a writer of this process that waits meanwhile (the clock's due timers, a connector's
# checkpoint) ends the batch early and goes next (see `Engine.handle_batch`).
CHUNK = 25
BACKLOG = 4 * CHUNK
BACKLOG_CHUNK = 100


def chunk_for(fetched: int) -> int:
    """Records per transaction for a fetch of `fetched` records."""
    if fetched < BACKLOG:
        return CHUNK
    return max(CHUNK, min(BACKLOG_CHUNK, fetched // 2))


class InboundProcessor:
    def __init__(
        self,
        *,
        bus: Bus,
        topics: Topics,
        engine: Engine,
        outbox: OutboxPublisher,
        metrics: Metrics,
    ) -> None:
        self._bus = bus
        self._topics = topics
        self._engine = engine
        self._outbox = outbox
        self._metrics = metrics
        # Records handled alone (their outputs wait for the scan): begun, done, and how
        # many a finished flush has published. While some are not, memory publishes go the
        # scan's way, so none overtakes theirs. Counted, not flagged: a fetch's flush may
        # still run while the next fetch is handled (see `router.consume`).
        self._alone = 0
        self._alone_done = 0
        self._flushed_alone = 0
        self._publishing: asyncio.Task[None] | None = None  # the latest run's outputs

    async def handle(self, record: Record) -> None:
        # Its outputs are not kept in memory: the scan publishes them, and they must not
        # overtake those of a run still going out, so that run goes out first.
        await self._published()
        self._alone += 1
        try:
            await self._handle_alone(record)
        finally:
            self._alone_done += 1  # committed (or not at all): a flush from now on sees it

    async def _handle_alone(self, record: Record) -> None:
        started = time.perf_counter()
        try:
            envelope = decode(record.value)
            refused = self._refusal(envelope)
            if refused is not None:
                raise EnvelopeError(refused)
            decisions = await self._engine.handle(envelope, now_utc())
        except EnvelopeError as exc:
            self._metrics.dead_letters.labels(source=record.topic).inc()
            letter = DeadLetter.of_record(record, f"invalid envelope: {exc}")
            await dead_letter(self._bus, self._topics, letter)
            return
        self._report(log.bind(), record, envelope, decisions, started)

    def _refusal(self, envelope: Envelope) -> str | None:
        return refusal(self._engine.ctx, envelope)

    async def handle_batch(self, records: Sequence[Record]) -> AsyncGenerator[Part, None]:
        """Apply `records` in order, up to `chunk_for(len(records))` valid envelopes per
        transaction (fewer when another writer waits for its turn).

        Yields each run of records, or each part of it, with True once it committed
        (logged and counted), or with False for the consume loop to pass to `handle` one by
        one before the next run: an invalid envelope (dead-lettered there) or a
        run whose transaction failed (none of it committed).
        """
        try:
            async for part in self._apply_runs(records, chunk_for(len(records))):
                yield part
        except BaseException:
            await self._published()  # what did commit goes out, whatever stops the rest
            raise

    async def _apply_runs(
        self, records: Sequence[Record], chunk: int
    ) -> AsyncGenerator[Part, None]:
        for run, envelopes in _runs(records, self._refusal, chunk):
            if not envelopes:
                yield run, False
                continue
            while envelopes:  # the engine may apply a first part only (another writer waits)
                # Each record's routing time: its part's, to the commit.
                started = time.perf_counter()
                handover = self._outbox.handover()
                try:
                    decided = await self._engine.handle_batch(envelopes, now_utc, handover=handover)
                except Exception as exc:  # whatever it was, each record gets its own chance
                    log.warning(
                        "batch transaction failed; handling its records one by one",
                        error=f"{type(exc).__name__}: {exc}",
                        records=len(run),
                    )
                    yield run, False
                    break
                done = len(decided)
                # One logger for the part's lines: the module's lazy proxy makes a new one
                # for every line, about 12 µs each, a third of what a decision's line costs.
                reporting = log.bind()
                for record, envelope, decisions in zip(run, envelopes, decided, strict=False):
                    try:
                        self._report(reporting, record, envelope, decisions, started)
                    except Exception:  # committed already: a logging fault must not redo it
                        log.exception("could not report decisions", record_id=envelope.id)
                self._publish(handover.written)
                yield run[:done], True
                run, envelopes = run[done:], envelopes[done:]

    def _report(
        self,
        logger: Any,
        record: Record,
        envelope: Envelope,
        decisions: list[Decision],
        started: float,
    ) -> None:
        """Log (with `logger`, bound from the module's) and count one envelope's decisions,
        once they are committed."""
        self._metrics.messages_in.labels(channel=envelope.channel, kind=envelope.kind).inc()
        duplicate = any(d.action == "duplicate" for d in decisions)
        if duplicate:
            self._metrics.duplicates.inc()
        logger.info(
            "inbound record consumed",
            record_id=envelope.id,
            channel=envelope.channel,
            kind=envelope.kind,
            partition=record.partition,
            offset=record.offset,
            duplicate=duplicate,
        )
        for decision in decisions:
            self._metrics.decisions.labels(action=decision.action).inc()
            if decision.action == "breach":
                self._metrics.sla_breaches.labels(channel=envelope.channel).inc()
            elif decision.action == "escalate" and decision.reason.get("rule") == "sla_warning":
                self._metrics.sla_warnings.labels(channel=envelope.channel).inc()
            elif decision.action == "praise" and decision.agent is not None:
                self._metrics.praise.labels(agent=decision.agent).inc()
            elif decision.action == "resolve" and "first_contact" in decision.reason:
                self._metrics.resolved(
                    str(decision.reason.get("channel") or envelope.channel),
                    decision.queue,
                    decision.reason.get("owner"),
                    bool(decision.reason["first_contact"]),
                )
            logger.info(
                "routing decision",
                record_id=envelope.id,
                action=decision.action,
                conversation_id=decision.conversation_id,
                agent=decision.agent,
                queue=decision.queue,
                priority=decision.priority,
                reason=dict(decision.reason),
            )
        self._metrics.routing_duration.observe(time.perf_counter() - started)

    def _publish(self, rows: Sequence[Output]) -> None:
        """Publish a committed run's outputs in the background, after the previous run's."""
        previous, scan = self._publishing, self._alone > self._flushed_alone

        async def publish() -> None:
            if previous is not None:
                await previous
            try:
                await self._outbox.publish(rows, scan=scan)
            except Exception as exc:  # committed, leased: a flush takes them after the lease
                log.warning(
                    "outputs not published now; a later flush takes them",
                    error=f"{type(exc).__name__}: {exc}",
                    rows=len(rows),
                )

        self._publishing = asyncio.create_task(publish())

    async def _published(self) -> None:
        """Wait until every run committed so far had its outputs published (or given back).
        The chain stays: a run committed later still goes out after these."""
        task = self._publishing
        if task is not None:
            await task

    async def after_batch(self) -> None:
        """Publish what is still unsent (records handled one by one wrote it, or the bus
        refused it for a while) before the fetch's offsets are committed. It may run while
        the next fetch's runs are applied and published."""
        await self._published()
        alone = self._alone_done  # committed before the flush looks: it publishes theirs
        await self._outbox.flush()
        self._flushed_alone = max(self._flushed_alone, alone)


def _runs(
    records: Sequence[Record], refused: Callable[[Envelope], str | None], chunk: int
) -> Iterator[tuple[list[Record], list[Envelope]]]:
    """Consecutive records in order: up to `chunk` valid envelopes with their records,
    or one invalid or refused record alone (no envelopes; `handle` dead-letters it)."""
    run: list[Record] = []
    envelopes: list[Envelope] = []
    for record in records:
        try:
            envelope = decode(record.value)
            if refused(envelope) is not None:
                raise EnvelopeError("refused")
        except EnvelopeError:
            if run:
                yield run, envelopes
                run, envelopes = [], []
            yield [record], []
            continue
        run.append(record)
        envelopes.append(envelope)
        if len(run) == chunk:
            yield run, envelopes
            run, envelopes = [], []
    if run:
        yield run, envelopes
