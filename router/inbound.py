"""The router's handling of one inbound record.

Decode strictly (bad records go to the DLQ with the reason), hand the envelope
to the routing engine (which dedupes by envelope id and writes its effects and
outputs in one store transaction). After each batch the outputs are published,
and only then does the consume loop commit the batch's offsets.
"""

from __future__ import annotations

import time

import structlog

from router.bus.base import Bus, Record, Topics
from router.dlq import dead_letter
from router.envelope import decode, now_utc
from router.errors import EnvelopeError
from router.metrics import Metrics
from router.outbox import OutboxPublisher
from router.routing.engine import Engine

log = structlog.get_logger(__name__)


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

    async def handle(self, record: Record) -> None:
        started = time.perf_counter()
        try:
            envelope = decode(record.value)
            decisions = await self._engine.handle(envelope, now_utc())
        except EnvelopeError as exc:
            self._metrics.dead_letters.labels(source=record.topic).inc()
            await dead_letter(self._bus, self._topics, record, f"invalid envelope: {exc}")
            return
        self._metrics.messages_in.labels(channel=envelope.channel, kind=envelope.kind).inc()
        duplicate = any(d.action == "duplicate" for d in decisions)
        if duplicate:
            self._metrics.duplicates.inc()
        log.info(
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
            log.info(
                "routing decision",
                record_id=envelope.id,
                action=decision.action,
                conversation_id=decision.conversation_id,
                agent=decision.agent,
                queue=decision.queue,
                priority=decision.priority,
                reason=dict(decision.reason),
            )
        self._metrics.routing_seconds.observe(time.perf_counter() - started)

    async def after_batch(self) -> None:
        """Publish the batch's outputs (and any a crash left unsent) before the commit."""
        await self._outbox.flush()
