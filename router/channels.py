"""Running one channel's connector: its intake into `omni.inbound`, its outbound topic out.

The daemon owns the lifecycle: a connector that fails is stopped, and started
again after a capped, jittered backoff; the rest of the daemon keeps running.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import orjson
import structlog

from router.bus.base import Bus, Record, Topics
from router.connector import DONE, Connector, Rejected
from router.consume import ConsumeLoop
from router.envelope import Envelope, Sender, decode, encode, envelope_id, now_utc
from router.errors import ConnectorError, EnvelopeError, OmniError, RecordTooLargeError
from router.metrics import Metrics
from router.retry import Backoff, retry

log = structlog.get_logger(__name__)

# Sends done beyond the commit in flight before the outbound loop waits for it (see
# router/consume.py): a crash repeats at most about twice this many sends. Measured on
# a local Kafka 4.1 (a commit takes about 8 ms) with a tool that answers at once,
# 2,000 POSTs: 1,120/s committing once per fetch of 200, 1,100/s at 10, 500/s at 5,
# 140/s at 1. A tool that takes longer than a commit gets a commit after every send.
OUTBOUND_COMMIT_STEP = 10


class ChannelRunner:
    def __init__(
        self,
        *,
        name: str,
        connector: Connector,
        bus: Bus,
        topics: Topics,
        metrics: Metrics,
        backoff: Backoff = Backoff(base=0.5, cap=60.0),
        serves_agents: bool = False,
    ) -> None:
        self.name = name
        self._connector = connector
        self._bus = bus
        self._topics = topics
        self._metrics = metrics
        self._backoff = backoff
        self._intake_task: asyncio.Task[None] | None = None
        self.outbound = ConsumeLoop(
            bus=bus,
            topics=topics,
            group=f"omnirouter-out-{name}",
            # Customers' messages on this channel, and (when agents' tools are
            # reached through it) deliveries to agents: both are sent the same way.
            subscribe=[topics.outbound(name)] + ([topics.agent(name)] if serves_agents else []),
            handler=self._send,
            metrics=metrics,
            # every send reaches a person: a crash should repeat a few, not a fetch
            commit_step=OUTBOUND_COMMIT_STEP,
        )

    def start_intake(self) -> asyncio.Task[None]:
        self._intake_task = asyncio.create_task(self._supervise(), name=f"intake:{self.name}")
        return self._intake_task

    async def stop_intake(self) -> None:
        task = self._intake_task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        try:
            await self._connector.stop()
        except Exception:
            log.exception("connector stop failed", channel=self.name)
        self._metrics.connector_up.labels(channel=self.name).set(0)

    async def _supervise(self) -> None:
        delays = self._backoff.delays()
        while True:
            try:
                await self._connector.start()
                self._metrics.connector_up.labels(channel=self.name).set(1)
                log.info("connector started", channel=self.name)
                delays = self._backoff.delays()  # a good start resets the backoff
                async for incoming in self._connector.receive():
                    if isinstance(incoming, Rejected):
                        await self._reject(incoming)
                        continue
                    env = incoming.envelope
                    try:
                        payload = encode(env)

                        async def publish(
                            key: bytes = env.bus_key(), value: bytes = payload
                        ) -> None:
                            await self._bus.produce(self._topics.inbound, key, value)

                        await retry(publish, backoff=self._backoff, what="publish inbound")
                    except (EnvelopeError, RecordTooLargeError) as exc:
                        # The input itself cannot travel: offering it again would fail again.
                        await self._reject(
                            Rejected(
                                reason=str(exc),
                                ack=incoming.ack,
                                native_id=env.id,
                            )
                        )
                        continue
                    # Only now is the message safe: let the channel forget it.
                    await incoming.ack(DONE)
                log.warning("connector intake ended; restarting", channel=self.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "connector failed",
                    channel=self.name,
                    error=f"{type(exc).__name__}: {exc}",
                    retriable=getattr(exc, "retriable", None),
                )
            self._metrics.connector_up.labels(channel=self.name).set(0)
            try:
                await self._connector.stop()
            except Exception:
                log.exception("connector stop failed", channel=self.name)
            await asyncio.sleep(next(delays, self._backoff.cap))

    async def _reject(self, rejected: Rejected) -> None:
        body = {
            "reason": rejected.reason,
            "channel": self.name,
            "native_id": rejected.native_id,
            "raw_ref": rejected.raw_ref,
            "dead_lettered_at": now_utc().isoformat(),
        }
        key = f"{self.name}\x1f{rejected.native_id or ''}".encode()

        async def publish() -> None:
            await self._bus.produce(self._topics.dlq, key, orjson.dumps(body))

        await retry(publish, backoff=self._backoff, what="dead-letter rejected input")
        self._metrics.dead_letters.labels(source=self.name).inc()
        log.warning(
            "input rejected",
            channel=self.name,
            native_id=rejected.native_id,
            reason=rejected.reason,
            raw_ref=rejected.raw_ref,
        )
        await rejected.ack(DONE)

    async def _report_failure(self, envelope: Envelope, detail: str) -> None:
        """Tell the router (an incident, a note to the owning agent) through the bus."""
        event = delivery_failed(self.name, envelope, detail, now_utc())

        async def publish() -> None:
            await self._bus.produce(self._topics.inbound, event.bus_key(), encode(event))

        await retry(publish, backoff=self._backoff, what="report delivery failure")

    async def _send(self, record: Record) -> None:
        envelope = decode(record.value)
        try:
            result = await self._connector.send(envelope)
        except OmniError:
            raise
        except Exception as exc:  # library errors should stop at the connector; be safe
            raise ConnectorError(f"send failed: {exc}", retriable=True) from exc
        self._metrics.messages_out.labels(channel=self.name, result=result.status).inc()
        if result.status == "retry":
            raise ConnectorError(f"send deferred: {result.detail}", retriable=True)
        if result.status == "failed":
            await self._report_failure(envelope, result.detail)
            raise ConnectorError(f"send failed: {result.detail}", retriable=False)
        log.info("message sent", channel=self.name, record_id=envelope.id)


def delivery_failed(channel: str, envelope: Envelope, detail: str, now: datetime) -> Envelope:
    """The system event that tells the router `envelope` could not be delivered, for good."""
    return Envelope(
        id=envelope_id(channel, f"delivery_failed:{envelope.id}"),
        kind="command",
        direction="in",
        channel=envelope.channel,
        channel_type=envelope.channel_type,
        thread_key=envelope.thread_key,
        conversation_id=envelope.conversation_id,
        sender=Sender(address="omnirouter", role="system"),
        received_at=now,
        meta={
            "command": {"name": "delivery_failed", "args": []},
            "failed": {
                "envelope_id": envelope.id,
                "detail": detail,
                "purpose": envelope.meta.get("purpose"),
            },
        },
    )
