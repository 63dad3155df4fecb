"""The router's handling of one inbound record.

Foundation step: decode strictly (bad records go to the DLQ with the reason),
dedupe by envelope id, and make the message durable in the store. The routing
engine (customers, conversations, agents) plugs in after the message is stored.
"""

from __future__ import annotations

import time

import structlog

from router.bus.base import Bus, Record, Topics
from router.dlq import dead_letter
from router.envelope import decode
from router.errors import EnvelopeError
from router.metrics import Metrics
from router.store import Store

log = structlog.get_logger(__name__)


class InboundProcessor:
    def __init__(self, *, bus: Bus, topics: Topics, store: Store, metrics: Metrics) -> None:
        self._bus = bus
        self._topics = topics
        self._store = store
        self._metrics = metrics

    async def handle(self, record: Record) -> None:
        started = time.perf_counter()
        try:
            envelope = decode(record.value)
        except EnvelopeError as exc:
            self._metrics.dead_letters.labels(source=record.topic).inc()
            await dead_letter(self._bus, self._topics, record, f"invalid envelope: {exc}")
            return
        is_new = await self._store.record_message(envelope)
        self._metrics.messages_in.labels(channel=envelope.channel, kind=envelope.kind).inc()
        if not is_new:
            self._metrics.duplicates.inc()
        log.info(
            "inbound record consumed",
            record_id=envelope.id,
            channel=envelope.channel,
            kind=envelope.kind,
            partition=record.partition,
            offset=record.offset,
            duplicate=not is_new,
        )
        self._metrics.routing_seconds.observe(time.perf_counter() - started)
