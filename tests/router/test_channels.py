"""The channel runner: connecting and reconnecting (refusals stop the retries and mark the
channel down, once), the outcome each input is acked with, several inputs in flight at
once (bounded, in order per conversation, acked in the order taken), and the outbound
loop after a crash (it sends again a few records, not a fetch)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog.testing

from router.bus import EmbeddedBus
from router.bus.base import Bus, Consumer, Topics
from router.channels import OUTBOUND_COMMIT_STEP, ChannelRunner
from router.connector import Incoming, Outcome, SendResult
from router.connector.testing import MemoryConnector
from router.envelope import Envelope, decode, encode
from router.errors import BusError, ConnectorError, RecordTooLargeError
from router.intake import BEHIND
from router.metrics import Metrics
from router.retry import Backoff
from tests.harness.common import eventually
from tests.router.consuming import TOPICS as BUS_TOPICS
from tests.router.consuming import drain, kill
from tests.router.test_daemon import message

TOPICS = Topics(prefix="omni.")


class Tool:
    """An agent's tool that takes every delivery, until it hangs at delivery `hang_at`."""

    def __init__(self, hang_at: int | None = None) -> None:
        self.sent: list[str] = []
        self.hang_at = hang_at
        self.hanging = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def receive(self) -> AsyncIterator[Incoming]:
        await asyncio.Event().wait()
        yield  # type: ignore[misc]  # never: the tool sends nothing in

    async def send(self, envelope: Envelope) -> SendResult:
        if len(self.sent) == self.hang_at:
            self.hanging.set()
            await asyncio.Event().wait()  # the crash comes while this POST is in hand
        self.sent.append(envelope.id)
        return SendResult(status="sent")


def runner(bus: EmbeddedBus, tool: Tool) -> ChannelRunner:
    return ChannelRunner(
        name="hooks", connector=tool, bus=bus, topics=TOPICS, metrics=Metrics(), serves_agents=True
    )


async def test_a_crash_repeats_at_most_a_commit_step_of_deliveries(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.sqlite3", partitions=1)
    await bus.start()
    try:
        deliveries = [
            message("hooks", f"d{i}").model_copy(update={"direction": "out"}) for i in range(150)
        ]
        for env in deliveries:
            await bus.produce(TOPICS.agent("hooks"), env.bus_key(), encode(env))
        first = Tool(hang_at=100)  # one fetch: the old loop committed none of the 100
        task = asyncio.create_task(runner(bus, first).outbound.run())
        await asyncio.wait_for(first.hanging.wait(), 20)
        await kill(task)

        second = Tool()
        restarted = runner(bus, second)
        task = asyncio.create_task(restarted.outbound.run())
        try:
            await eventually(lambda: len(set(first.sent + second.sent)) == 150, 20)
        finally:
            restarted.outbound.stop()
            await asyncio.wait_for(task, 10)
        times = Counter(first.sent + second.sent)
        repeated = sum(n - 1 for n in times.values())
        assert repeated <= 2 * OUTBOUND_COMMIT_STEP
        assert max(times.values()) <= 2
        assert second.sent[-1] == deliveries[-1].id
    finally:
        await bus.stop()


# --- connecting, reconnecting, and the channel's state ---------------------------------

REFUSED = "login as 'support' refused: NO [AUTHENTICATIONFAILED] Authentication failed."


class Clock:
    """A pretend clock for the runner's waits: each wait moves it on at once, and a wait
    that would pass `horizon` never ends (unless the runner is woken)."""

    def __init__(self, horizon: float) -> None:
        self.now = 0.0
        self.horizon = horizon
        self.waits: list[float] = []

    async def sleep(self, delay: float) -> None:
        self.waits.append(delay)
        if self.now + delay >= self.horizon:
            await asyncio.Event().wait()
        self.now += delay
        await asyncio.sleep(0)


def channel(failure: Exception | None = None, fail_times: int | None = None) -> MemoryConnector:
    """The `mail` channel in memory, whose starts fail with `failure` (only the first
    `fail_times`, when that is given)."""
    mail = MemoryConnector("mail")
    mail.fail_starts(failure, fail_times)
    return mail


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


@contextlib.asynccontextmanager
async def supervising(
    bus: Bus, mail: MemoryConnector, clock: Clock, **kw: Any
) -> AsyncIterator[ChannelRunner]:
    """A runner of `mail`'s intake on `bus` (the `bus` fixture's topics) for the block, its
    waits on `clock`."""
    runner = ChannelRunner(
        name="mail",
        connector=mail,
        bus=bus,
        topics=BUS_TOPICS,
        metrics=Metrics(),
        reconnect=Backoff(base=1.0, cap=60.0, attempts=5),
        after_refusal=600.0,
        sleep=clock.sleep,
        **kw,
    )
    runner.start_intake()
    try:
        yield runner
    finally:
        await runner.stop_intake()


def down_gauge(runner: ChannelRunner) -> dict[str, float]:
    """omnirouter_connector_down's series: reason -> value."""
    samples = runner._metrics.connector_down.collect()[0].samples
    return {s.labels["reason"]: s.value for s in samples if s.labels["channel"] == "mail"}


def up_gauge(runner: ChannelRunner) -> float:
    return float(runner._metrics.connector_up.labels(channel="mail")._value.get())


async def test_a_refusal_marks_the_channel_down_once_and_is_not_retried_in_a_storm(
    bus: EmbeddedBus, logs: list[dict[str, Any]]
) -> None:
    clock = Clock(horizon=3600)
    mail = channel(ConnectorError(REFUSED, retriable=False))
    async with supervising(bus, mail, clock) as runner:
        await eventually(lambda: len(clock.waits) == 6)  # an hour: the sixth wait never ends
        # One start before each wait, never two in a row: within the first minute, one.
        assert mail.starts == 6
        assert clock.waits[:5] == [600.0] * 5  # the long wait after each refusal
        assert runner.down is not None
        assert (runner.down.reason, runner.down.retriable) == (REFUSED, False)
        assert down_gauge(runner) == {REFUSED: 1.0}
        assert up_gauge(runner) == 0
        said = [e for e in logs if e.get("channel") == "mail" and e["log_level"] != "debug"]
        assert [(e["event"], e["log_level"], e["reason"]) for e in said] == [
            ("channel down", "error", REFUSED)
        ]


async def test_a_fixed_cause_brings_the_channel_up_and_clears_the_reason(
    bus: EmbeddedBus, logs: list[dict[str, Any]]
) -> None:
    clock = Clock(horizon=60)  # the first wait (10 minutes) never ends by itself
    mail = channel(ConnectorError(REFUSED, retriable=False))
    async with supervising(bus, mail, clock) as runner:
        await eventually(lambda: runner.down is not None and clock.waits == [600.0])
        mail.fail_starts(None)  # the password file was fixed, then the config reloaded
        runner.retry_now()
        await eventually(lambda: runner.down is None)
        assert mail.starts == 2
        assert down_gauge(runner) == {}
        assert up_gauge(runner) == 1
        assert [e["event"] for e in logs if e.get("channel") == "mail"] == [
            "channel down",
            "channel up again",
        ]
        msg = message("mail", "after-fix")
        mail.offer(msg)
        await eventually(lambda: mail.acks == [(msg.id, Outcome())])


async def test_passing_failures_are_retried_with_backoff_then_the_channel_is_down(
    bus: EmbeddedBus, logs: list[dict[str, Any]]
) -> None:
    clock = Clock(horizon=3600)
    mail = channel(ConnectorError("cannot reach mail:993: refused", retriable=True))
    async with supervising(bus, mail, clock) as runner:
        await eventually(lambda: mail.starts >= 8)
        retries, then = clock.waits[:4], clock.waits[4:7]
        assert all(0 <= d <= min(60.0, 2**n) for n, d in enumerate(retries))
        assert then == [60.0] * 3  # attempts (5) in a row failed: every `cap`
        assert runner.down is not None and runner.down.retriable
        events = [e["event"] for e in logs if e.get("channel") == "mail"]
        assert events[:5] == ["connector failed; reconnecting"] * 4 + ["channel down"]
        assert events.count("channel down") == 1


async def test_a_passing_failure_is_retried_and_never_reported_down(
    bus: EmbeddedBus, logs: list[dict[str, Any]]
) -> None:
    clock = Clock(horizon=3600)
    mail = channel(ConnectorError("connection reset", retriable=True), fail_times=1)
    async with supervising(bus, mail, clock) as runner:
        await eventually(lambda: up_gauge(runner) == 1)
        assert mail.starts == 2 and len(clock.waits) == 1
        assert clock.waits[0] <= 1.0  # `base`
        assert runner.down is None and down_gauge(runner) == {}
        assert [e["event"] for e in logs if e.get("channel") == "mail"] == [
            "connector failed; reconnecting",
            "connector started",
        ]


# --- what each input is acked with --------------------------------------------------------


async def test_inputs_are_acked_done_or_refused_with_the_reason(bus: EmbeddedBus) -> None:
    mail = channel()
    async with supervising(bus, mail, Clock(horizon=3600)):
        bad = message("mail", "bad").model_copy(update={"text": "lone \ud800 surrogate"})
        good = message("mail", "good")
        for env in (bad, good):
            mail.offer(env)
        await eventually(lambda: len(mail.acks) == 2)
        (_, refused), done = mail.acks
        assert not refused.done and not refused.retriable
        assert done == (good.id, Outcome())
        [dead] = await drain(bus, BUS_TOPICS.dlq, "dlq", 1)
        body = orjson.loads(dead.value)
        assert body["source"] == {"channel": "mail"}
        assert (body["native_id"], body["reason"]) == (bad.id, refused.error)


async def test_a_bus_that_stays_down_gets_a_retriable_ack_and_a_restarted_intake(
    bus: EmbeddedBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    mail = channel()
    produce = bus.produce
    failing = True

    async def flaky(topic: str, key: bytes, value: bytes) -> None:
        if failing:
            raise BusError("broker unavailable")
        await produce(topic, key, value)

    monkeypatch.setattr(bus, "produce", flaky)
    publish = Backoff(base=0.001, cap=0.001, attempts=3)
    async with supervising(bus, mail, Clock(horizon=3600), publish=publish) as runner:
        msg = message("mail", "m1")
        mail.offer(msg)
        await eventually(lambda: mail.acks != [])
        [(_, outcome), *_] = mail.acks
        assert outcome.retriable and "broker unavailable" in (outcome.error or "")
        await eventually(lambda: mail.starts >= 2)  # the intake starts again from the channel
        failing = False
        runner.retry_now()  # its waits may have run the pretend clock out meanwhile
        # The channel still holds it and offers it again: this time it is on the bus.
        await eventually(lambda: mail.outcome(msg.id) == Outcome())
        assert mail.pending == []


class Deferring(Tool):
    """A tool that defers the first send, then fails to answer the second try."""

    def __init__(self) -> None:
        super().__init__()
        self.tries = 0

    async def send(self, envelope: Envelope) -> SendResult:
        self.tries += 1
        if self.tries == 1:
            return SendResult(status="retry", detail="rate limited")
        if self.tries == 2:
            raise ConnectorError("tool unreachable", retriable=True)
        return await super().send(envelope)


async def test_sends_tried_again_are_counted_per_channel(bus: EmbeddedBus) -> None:
    tool = Deferring()
    hooks = runner(bus, tool)
    env = message("hooks", "d1").model_copy(update={"direction": "out"})
    await bus.produce(TOPICS.agent("hooks"), env.bus_key(), encode(env))
    task = asyncio.create_task(hooks.outbound.run())
    try:
        await eventually(lambda: tool.sent == [env.id], 20)
    finally:
        hooks.outbound.stop()
        await asyncio.wait_for(task, 10)
    metrics = hooks._metrics
    assert metrics.send_retries.labels(channel="hooks")._value.get() == 2
    assert metrics.messages_out.labels(channel="hooks", result="retry")._value.get() == 1
    assert metrics.messages_out.labels(channel="hooks", result="sent")._value.get() == 1


# --- inputs in flight at once -----------------------------------------------------------


class HeldBus:
    """The embedded bus, its inbound produces held until their envelope is let through;
    one in `fail` then raises that error (at every attempt)."""

    def __init__(self, inner: EmbeddedBus) -> None:
        self.inner = inner
        self.fail: dict[str, Exception] = {}
        self.waiting: list[str] = []  # envelope ids whose produce is held now
        self.most = 0  # the most held at once
        self._let: set[str] = set()
        self._changed = asyncio.Condition()

    async def release(self, *ids: str) -> None:
        async with self._changed:
            self._let.update(ids)
            self._changed.notify_all()

    async def produce(self, topic: str, key: bytes, value: bytes) -> None:
        if topic == BUS_TOPICS.inbound:
            env_id = decode(value).id
            self.waiting.append(env_id)
            self.most = max(self.most, len(self.waiting))
            try:
                async with self._changed:
                    await self._changed.wait_for(lambda: env_id in self._let)
            finally:
                self.waiting.remove(env_id)
            if env_id in self.fail:
                raise self.fail[env_id]
        await self.inner.produce(topic, key, value)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def ensure_topics(self, names: Sequence[str]) -> None:
        await self.inner.ensure_topics(names)

    async def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        return await self.inner.consumer(group, topics)

    async def ping(self) -> bool:
        return await self.inner.ping()


def offered(mail: MemoryConnector, *natives: str) -> list[Envelope]:
    """Offer one message per `thread/native` (its conversation, and its native id)."""
    envelopes = []
    for name in natives:
        thread, native = name.split("/")
        envelopes.append(message("mail", native, thread=thread))
        mail.offer(envelopes[-1])
    return envelopes


async def on_inbound(bus: EmbeddedBus, want: int) -> list[str]:
    return [decode(r.value).id for r in await drain(bus, BUS_TOPICS.inbound, "check", want)]


async def test_inputs_are_in_flight_at_once_up_to_the_limit(bus: EmbeddedBus) -> None:
    held, mail = HeldBus(bus), channel()
    async with supervising(held, mail, Clock(horizon=3600), max_in_flight=5):
        msgs = offered(mail, *(f"t{i}/m{i}" for i in range(8)))
        ids = [m.id for m in msgs]
        await eventually(lambda: held.waiting == ids[:5])  # 5 written at once
        await held.release(ids[0])
        await eventually(lambda: held.waiting == ids[1:6])  # one acked: one more taken
        assert mail.acks == [(ids[0], Outcome())]
        await held.release(*ids)
        await eventually(lambda: len(mail.acks) == 8)
        assert mail.acks == [(i, Outcome()) for i in ids]
        assert held.most == 5  # never more than the limit
    assert sorted(await on_inbound(bus, 8)) == sorted(ids)


async def test_acks_come_in_the_order_inputs_were_taken(bus: EmbeddedBus) -> None:
    held, mail = HeldBus(bus), channel()
    async with supervising(held, mail, Clock(horizon=3600)):
        first, second, third = (m.id for m in offered(mail, "a/m1", "b/m2", "c/m3"))
        await eventually(lambda: len(held.waiting) == 3)
        await held.release(third)
        assert await on_inbound(bus, 1) == [third]  # on the bus, but not acked before...
        assert mail.acks == []
        await held.release(first)
        await eventually(lambda: len(mail.acks) == 1)  # ...the ones taken before it
        await held.release(second)
        await eventually(lambda: len(mail.acks) == 3)
        assert [native for native, _ in mail.acks] == [first, second, third]


async def test_a_conversation_reaches_the_bus_in_the_order_taken(bus: EmbeddedBus) -> None:
    held, mail = HeldBus(bus), channel()
    async with supervising(held, mail, Clock(horizon=3600)):
        a1, b1, a2, a3, c1 = (m.id for m in offered(mail, "a/a1", "b/b1", "a/a2", "a/a3", "c/c1"))
        # c1, taken after a2 and a3, is in flight with a1 and b1; a2 and a3 wait for a1.
        await eventually(lambda: held.waiting == [a1, b1, c1])
        await held.release(a3, a2)
        assert held.waiting == [a1, b1, c1]
        await held.release(a1)
        await eventually(lambda: len(mail.acks) == 1)
        await held.release(b1, c1)
        await eventually(lambda: len(mail.acks) == 5)
        assert all(outcome.done for _, outcome in mail.acks)
    records = await on_inbound(bus, 5)
    assert [r for r in records if r in (a1, a2, a3)] == [a1, a2, a3]


async def test_a_failed_input_is_acked_retriable_while_the_others_are_done(
    bus: EmbeddedBus,
) -> None:
    held, mail = HeldBus(bus), channel()
    publish = Backoff(base=0.001, cap=0.001, attempts=3)
    clock = Clock(horizon=0)  # the wait before the intake starts again lasts until woken
    async with supervising(held, mail, clock, publish=publish) as runner:
        f1, g1, f2 = (m.id for m in offered(mail, "f/f1", "g/g1", "f/f2"))
        await eventually(lambda: held.waiting == [f1, g1])
        held.fail[f1] = BusError("broker unavailable")
        await held.release(f1, g1)
        await eventually(lambda: len(mail.acks) == 3)
        (_, failed), done, (_, behind) = mail.acks
        assert failed.retriable and "broker unavailable" in (failed.error or "")
        assert done == (g1, Outcome())
        # f2 must not reach the bus before f1, which the channel offers again: not tried.
        assert (behind.retriable, behind.error) == (True, BEHIND)
        assert await on_inbound(bus, 1) == [g1]
        # The intake starts again; the channel offers f1 and f2 again, in their order.
        await eventually(lambda: len(clock.waits) == 1)
        del held.fail[f1]
        await held.release(f2)
        runner.retry_now()
        await eventually(lambda: mail.outcome(f2) == Outcome())
        assert mail.starts == 2
        assert mail.outcome(f1) == Outcome() and mail.pending == []
    assert await on_inbound(bus, 3) == [g1, f1, f2]


async def test_a_refused_input_is_dead_lettered_while_the_others_are_done(
    bus: EmbeddedBus,
) -> None:
    held, mail = HeldBus(bus), channel()
    async with supervising(held, mail, Clock(horizon=3600)):
        big, small, after = (m.id for m in offered(mail, "a/big", "b/small", "a/after"))
        await eventually(lambda: held.waiting == [big, small])
        held.fail[big] = RecordTooLargeError("record for omni.inbound is too large")
        await held.release(big, small, after)
        await eventually(lambda: len(mail.acks) == 3)
        (_, refused), done, later = mail.acks
        assert not refused.done and not refused.retriable
        assert (done, later) == ((small, Outcome()), (after, Outcome()))
        assert mail.starts == 1  # nothing to restart for
    [dead] = await drain(bus, BUS_TOPICS.dlq, "dlq", 1)
    assert orjson.loads(dead.value)["native_id"] == big
    assert await on_inbound(bus, 2) == [small, after]


async def test_an_input_whose_write_raises_is_offered_again_and_the_intake_restarts(
    bus: EmbeddedBus,
) -> None:
    held, mail = HeldBus(bus), channel()
    clock = Clock(horizon=0)  # the wait before the intake starts again lasts until woken
    async with supervising(held, mail, clock) as runner:
        f1, g1 = (m.id for m in offered(mail, "f/f1", "g/g1"))
        await eventually(lambda: held.waiting == [f1, g1])
        held.fail[f1] = BusError("embedded bus is not started", retriable=False)
        await held.release(f1, g1)
        await eventually(lambda: len(mail.acks) == 2)
        (_, failed), done = mail.acks
        assert failed.retriable and "not started" in (failed.error or "")
        assert done == (g1, Outcome())
        await eventually(lambda: len(clock.waits) == 1)  # stopped, waiting to start again
        del held.fail[f1]
        runner.retry_now()
        await eventually(lambda: mail.outcome(f1) == Outcome())
    assert await on_inbound(bus, 2) == [g1, f1]
