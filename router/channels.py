"""Running one channel's connector: its intake into `omni.inbound`, its outbound topic out.

The runner, not the connector, owns connecting and reconnecting (with the one
backoff helper, `router.retry`); a connector just raises, and the rest of the
daemon keeps running:

- A retriable failure (the server unreachable, the connection dropped) is
  logged and retried after a capped, jittered backoff (`reconnect.base` ..
  `reconnect.cap`). After `reconnect.attempts` failures in a row the channel
  is *down*: `/readyz` names it with the reason, `omnirouter_connector_down`
  carries the reason, one error line says so; it then tries every `cap`.
- A failure retrying cannot fix (`retriable=False`: a wrong password, a
  refused token, a certificate the configured trust rejects) marks the channel
  down at once and is logged once, not once per attempt. The next attempt
  comes after `reconnect.after_refusal` (at least a minute), or at once after a
  config reload (`retry_now`), e.g. once the password file is fixed.
- A start that succeeds brings the channel up and clears the reason.

Each input is acked with its outcome: done once it is on the bus; a
non-retriable error once it was dead-lettered instead (the channel forgets it);
a retriable error when the bus stayed unavailable (the channel offers it again,
and the intake is restarted once the inputs in flight are settled). Up to
`channels[].max_in_flight` inputs are in flight at once, their writes sharing
the bus's commits; order per conversation and the order of acks hold
(`router.intake`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from router.bus.base import Bus, Record, Topics
from router.connector import DONE, Connector, Incoming, Outcome, Rejected
from router.consume import ConsumeLoop
from router.dlq import DeadLetter, dead_letter
from router.envelope import Command, Envelope, Sender, decode, encode, envelope_id, now_utc
from router.errors import ConnectorError, EnvelopeError, OmniError, RecordTooLargeError
from router.intake import MAX_IN_FLIGHT, Flight, Planned
from router.metrics import Metrics
from router.retry import Backoff, retry

log = structlog.get_logger(__name__)

# Sends done beyond the commit in flight before the outbound loop waits for it (see
# router/consume.py): a crash repeats at most about twice this many sends. Measured on
# a local Kafka 4.1 (a commit takes about 8 ms) with a tool that answers at once,
# 2,000 POSTs: 1,120/s committing once per fetch of 200, 1,100/s at 10, 500/s at 5,
# 140/s at 1. A tool that takes longer than a commit gets a commit after every send.
OUTBOUND_COMMIT_STEP = 10

# Putting one input on the bus: about 6 s at most before the runner gives up, acks
# with a retriable error (a webhook caller gets its 503 while it still waits) and
# restarts the intake.
PUBLISH_BACKOFF = Backoff(base=0.2, cap=5.0, attempts=6)

# Telling the router a send failed for good: until the bus takes it (the outbound loop
# must not send the message again).
REPORT_BACKOFF = Backoff(base=0.5, cap=60.0)

# The reconnect settings' defaults (`channels[].reconnect`).
RECONNECT = Backoff(base=1.0, cap=60.0, attempts=5)
AFTER_REFUSAL = 600.0

REASON_CHARS = 300  # a reason in /readyz and the metric's label


@dataclass(frozen=True, slots=True)
class Down:
    """Why a channel is down, since when, and when it tries again."""

    reason: str
    retriable: bool
    since: datetime
    next_attempt: datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "retriable": self.retriable,
            "since": self.since.isoformat(),
            "next_attempt": self.next_attempt.isoformat(),
        }


class _Unpublished(OmniError):
    """The bus stayed unavailable for an input: the intake starts again from the channel."""

    retriable = True


class ChannelRunner:
    def __init__(
        self,
        *,
        name: str,
        connector: Connector,
        bus: Bus,
        topics: Topics,
        metrics: Metrics,
        reconnect: Backoff = RECONNECT,
        after_refusal: float = AFTER_REFUSAL,
        publish: Backoff = PUBLISH_BACKOFF,
        max_in_flight: int = MAX_IN_FLIGHT,
        serves_agents: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self._connector = connector
        self._bus = bus
        self._topics = topics
        self._metrics = metrics
        self._reconnect = reconnect
        self._after_refusal = after_refusal
        self._publish = publish
        self._max_in_flight = max_in_flight
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._intake_task: asyncio.Task[None] | None = None
        self.down: Down | None = None
        self.up = False  # the connector started and has not failed since
        self.outbound = ConsumeLoop(
            bus=bus,
            topics=topics,
            group=outbound_group(name),
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
        await self._stop_connector()
        self.up = False
        self._metrics.connector_up.labels(channel=self.name).set(0)

    def retry_now(self) -> None:
        """Cut a wait between attempts short (a config reload may have fixed the cause)."""
        self._wake.set()

    # -- connecting and reconnecting -------------------------------------------------------

    async def _supervise(self) -> None:
        delays = self._reconnect.delays()
        while True:
            started = time.monotonic()
            try:
                await self._connector.start()
                self._up()
                await self._pump()
                failure: BaseException = ConnectorError("the intake ended", retriable=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = exc
            # A connection that held for a while starts a new series of attempts; one that
            # drops as soon as it is made keeps backing off (and is down after `attempts`).
            if time.monotonic() - started >= self._reconnect.cap:
                delays = self._reconnect.delays()
            await self._stop_connector()
            await self._pause(self._failed(failure, delays))

    async def _stop_connector(self) -> None:
        try:
            await self._connector.stop()
        except Exception:
            log.exception("connector stop failed", channel=self.name)

    def _up(self) -> None:
        self.up = True
        self._metrics.connector_up.labels(channel=self.name).set(1)
        down, self.down = self.down, None
        if down is None:
            log.info("connector started", channel=self.name)
            return
        self._metrics.connector_down.remove(self.name, down.reason)
        log.info(
            "channel up again",
            channel=self.name,
            was=down.reason,
            down_seconds=round((now_utc() - down.since).total_seconds(), 1),
        )

    def _failed(self, exc: BaseException, delays: Iterator[float]) -> float:
        """Say what failed, once where it repeats; how long to wait before the next attempt.

        Only passing failures take a step of `delays` (the series of attempts in a row).
        """
        self.up = False
        self._metrics.connector_up.labels(channel=self.name).set(0)
        reason = _describe(exc)
        # Our own errors say whether retrying can help; anything else (a library's
        # exception that escaped the connector) is taken as passing.
        retriable = exc.retriable if isinstance(exc, OmniError) else True
        if not retriable:
            self._mark_down(reason, retriable=False, wait=self._after_refusal)
            return self._after_refusal
        delay = next(delays, None)
        if delay is None:  # `attempts` in a row failed
            delay = self._reconnect.cap
            self._mark_down(reason, retriable=True, wait=delay)
            return delay
        log.warning(
            "connector failed; reconnecting",
            channel=self.name,
            error=reason,
            delay=round(delay, 3),
        )
        return delay

    def _mark_down(self, reason: str, *, retriable: bool, wait: float) -> None:
        now = now_utc()
        before = self.down
        same = before is not None and before.reason == reason
        self.down = Down(
            reason=reason,
            retriable=retriable,
            since=before.since if before is not None else now,
            next_attempt=now + timedelta(seconds=wait),
        )
        if same:
            return  # said already: one line per cause, not one per attempt
        if before is not None:
            self._metrics.connector_down.remove(self.name, before.reason)
        self._metrics.connector_down.labels(channel=self.name, reason=reason).set(1)
        log.error(
            "channel down",
            channel=self.name,
            reason=reason,
            retriable=retriable,
            retry_in=round(wait, 1),
        )

    async def _pause(self, delay: float) -> None:
        """Wait `delay` seconds, or until `retry_now`."""
        self._wake.clear()
        sleeping = asyncio.ensure_future(self._sleep(delay))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeping, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, woken):
                task.cancel()
            await asyncio.gather(sleeping, woken, return_exceptions=True)

    # -- intake ------------------------------------------------------------------------------

    async def _pump(self) -> None:
        flight = Flight(self._max_in_flight)

        def plan(item: Incoming | Rejected) -> Planned:
            if isinstance(item, Rejected):
                letter = DeadLetter.of_input(
                    self.name, item.reason, native_id=item.native_id, ref=item.raw_ref
                )
                return None, lambda: self._refuse(letter, flight), item.ack
            env = item.envelope
            return env.bus_key(), lambda: self._take(env, flight), item.ack

        await flight.run(self._connector.receive(), plan)

    async def _take(self, env: Envelope, flight: Flight) -> Outcome:
        try:
            payload = encode(env)

            async def publish() -> None:
                await self._bus.produce(self._topics.inbound, env.bus_key(), payload)

            unavailable = await self._publishing(publish, flight, "publish inbound")
        except (EnvelopeError, RecordTooLargeError) as exc:
            # The input itself cannot travel: offering it again would fail again.
            return await self._refuse(
                DeadLetter.of_input(self.name, str(exc), native_id=env.id), flight
            )
        # Only once it is on the bus is the message safe: the channel may forget it.
        return unavailable or DONE

    async def _refuse(self, letter: DeadLetter, flight: Flight) -> Outcome:
        """Dead-letter an input that can never travel; the channel is told to forget it."""

        async def publish() -> None:
            await dead_letter(self._bus, self._topics, letter)

        unavailable = await self._publishing(publish, flight, "dead-letter refused input")
        if unavailable is not None:
            return unavailable
        self._metrics.dead_letters.labels(source=self.name).inc()
        return Outcome(letter.reason, retriable=False)

    async def _publishing(
        self, op: Callable[[], Awaitable[None]], flight: Flight, what: str
    ) -> Outcome | None:
        """`op` with the bounded publish backoff; None once done. When the bus stays
        unavailable: the input's retriable outcome (the channel offers it again), and
        the intake restarts once what is in flight is settled."""
        try:
            await retry(op, backoff=self._publish, what=what)
        except OmniError as exc:
            if not exc.retriable:
                raise
            failure = _Unpublished(f"{what}: the bus stayed unavailable: {exc}")
            failure.__cause__ = exc
            flight.fail(failure)
            return Outcome(f"the bus is unavailable: {exc}", retriable=True)
        return None

    async def _report_failure(self, envelope: Envelope, detail: str) -> None:
        """Tell the router (an incident, a note to the owning agent) through the bus."""
        event = delivery_failed(self.name, envelope, detail, now_utc())

        async def publish() -> None:
            await self._bus.produce(self._topics.inbound, event.bus_key(), encode(event))

        await retry(publish, backoff=REPORT_BACKOFF, what="report delivery failure")

    async def _send(self, record: Record) -> None:
        envelope = decode(record.value)
        try:
            result = await self._connector.send(envelope)
        except OmniError as exc:
            if exc.retriable:
                self._metrics.send_retries.labels(channel=self.name).inc()
            raise
        except Exception as exc:  # library errors should stop at the connector; be safe
            self._metrics.send_retries.labels(channel=self.name).inc()
            raise ConnectorError(f"send failed: {exc}", retriable=True) from exc
        self._metrics.messages_out.labels(channel=self.name, result=result.status).inc()
        if result.status == "retry":
            self._metrics.send_retries.labels(channel=self.name).inc()
            raise ConnectorError(f"send deferred: {result.detail}", retriable=True)
        if result.status == "failed":
            await self._report_failure(envelope, result.detail)
            raise ConnectorError(f"send failed: {result.detail}", retriable=False)
        log.info("message sent", channel=self.name, record_id=envelope.id)


def outbound_group(channel: str) -> str:
    """The consumer group that sends what goes out on `channel` (customers and agents)."""
    return f"omnirouter-out-{channel}"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, OmniError):
        text = f"{type(exc).__name__}: {text}"
    return text[:REASON_CHARS]


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
        command=Command(name="delivery_failed"),
        meta={
            "failed": {
                "envelope_id": envelope.id,
                "detail": detail,
                "purpose": envelope.meta.get("purpose"),
            },
        },
    )
