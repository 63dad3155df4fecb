"""The connector contract, run against every registered connector type and the in-memory one.

A type joins by registering (the `omnirouter.connectors` entry points) and
adding its harness (a module here with `open_harness`) to `HARNESSES`; a
registered type with a factory and no harness fails
`test_every_registered_connector_has_a_harness`. The runner's cases go through
the real `ChannelRunner` on the embedded bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest

from router.bus import EmbeddedBus
from router.bus.base import Topics
from router.channels import ChannelRunner
from router.connector import DONE, Incoming, Outcome, Rejected, load_registry
from router.metrics import Metrics
from router.retry import Backoff
from tests.connectors.contract import email, memory, phone, telegram, webchat, webhook
from tests.connectors.contract.harness import (
    Fed,
    Harness,
    Items,
    OpenHarness,
    WatchedBus,
    close_items,
)
from tests.harness.common import eventually

TOPICS = Topics(prefix="omni.")
WAIT = 10.0  # bound of every condition-wait (each holds within a second when all is well)


HARNESSES: dict[str, OpenHarness] = {
    "memory": memory.open_harness,
    "email": email.open_harness,
    "webhook": webhook.open_harness,
    "phone": phone.open_harness,
    "telegram": telegram.open_harness,
    "webchat": webchat.open_harness,
}
MARKS = {"email": [pytest.mark.imap]}  # types whose harness needs a real service


def registered() -> list[str]:
    """The installed connector types that can run (a factory), by name."""
    return sorted(t for t, spec in load_registry().items() if spec.factory is not None)


def contract_types() -> list[object]:
    return [pytest.param(t, marks=MARKS.get(t, [])) for t in ["memory", *registered()]]


def test_every_registered_connector_has_a_harness() -> None:
    missing = sorted(set(registered()) - set(HARNESSES))
    assert not missing, (
        f"connector types {missing} are registered with a factory but have no contract"
        " harness: add one in tests/connectors/contract/ and to HARNESSES"
    )


@pytest.fixture(params=contract_types())
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    make = HARNESSES.get(request.param)
    if make is None:
        pytest.fail(f"no contract harness for the registered connector type {request.param!r}")
    async with make(request, tmp_path) as h:
        try:
            yield h
        finally:
            await h.connector.stop()


async def next_item(items: Items) -> Incoming | Rejected:
    return await asyncio.wait_for(anext(items), WAIT)


async def next_incoming(items: Items) -> Incoming:
    item = await next_item(items)
    assert isinstance(item, Incoming), f"expected an envelope, got {item}"
    return item


async def start_and_take(harness: Harness) -> tuple[Fed, Items, Incoming]:
    """Start the connector, feed it one good input and take it: not acked yet."""
    await harness.connector.start()
    fed = await harness.feed()
    items = harness.connector.receive()
    first = await next_incoming(items)
    assert first.envelope.id == fed.envelope_id
    return fed, items, first


async def taken_again(harness: Harness, items: Items, fed: Fed) -> None:
    """`fed` is what the channel offers next; acked done, the channel forgets it."""
    again = await next_incoming(items)
    assert again.envelope.id == fed.envelope_id
    await again.ack(DONE)
    await eventually(lambda: harness.acked(fed), WAIT)


@asynccontextmanager
async def running(harness: Harness, tmp: Path) -> AsyncIterator[WatchedBus]:
    """The harness's connector run by the real channel runner, on a watched embedded bus."""
    inner = EmbeddedBus(
        tmp / "bus.sqlite3", partitions=1, max_record_bytes=harness.max_record_bytes
    )
    bus = WatchedBus(inner)
    await bus.start()
    runner = ChannelRunner(
        name=harness.name,
        connector=harness.connector,
        bus=bus,
        topics=TOPICS,
        metrics=Metrics(),
        reconnect=Backoff(base=0.05, cap=0.5),
    )
    runner.start_intake()
    try:
        yield bus
    finally:
        bus.open.set()
        await runner.stop_intake()
        await bus.stop()


async def test_start_and_stop_twice(harness: Harness) -> None:
    connector = harness.connector
    for _ in range(2):
        await connector.start()
        fed = await harness.feed()
        items = connector.receive()
        try:
            item = await next_incoming(items)  # it works after a restart, too
            assert item.envelope.id == fed.envelope_id
            await item.ack(DONE)
            await eventually(lambda f=fed: harness.acked(f), WAIT)
        finally:
            await close_items(items)
        await connector.stop()
    await connector.stop()  # stopping a stopped connector is harmless


async def test_a_rejected_input_is_dead_lettered_and_acked(
    harness: Harness, tmp_path: Path
) -> None:
    async with running(harness, tmp_path) as bus:
        bad = await harness.feed_bad()
        await eventually(lambda: harness.acked(bad), WAIT)
        [letter] = bus.on(TOPICS.dlq)
        assert orjson.loads(letter)["reason"]
        assert bus.on(TOPICS.inbound) == []
        # and the channel goes on: the next input reaches the bus
        good = await harness.feed()
        await eventually(lambda: harness.acked(good), WAIT)
        assert len(bus.on(TOPICS.inbound)) == 1


# Types whose channel shows how an input ended (`Harness.refused`), not only that it did.
SHOWS_REFUSAL = ["memory", "webhook", "webchat"]


@pytest.mark.parametrize("harness", SHOWS_REFUSAL, indirect=True)
async def test_a_dead_lettered_input_is_acked_as_refused(harness: Harness, tmp_path: Path) -> None:
    async with running(harness, tmp_path) as bus:
        bad = await harness.feed_bad()
        await eventually(lambda: harness.acked(bad), WAIT)
        assert len(bus.on(TOPICS.dlq)) == 1
        assert await harness.refused(bad)


@pytest.mark.parametrize("input", ["good", "bad"])
async def test_the_ack_comes_only_once_it_is_on_the_bus(
    harness: Harness, tmp_path: Path, input: str
) -> None:
    async with running(harness, tmp_path) as bus:
        bus.open.clear()  # every produce waits: the bus is slow or unavailable
        fed = await (harness.feed() if input == "good" else harness.feed_bad())
        await eventually(lambda: bus.held > 0, WAIT)
        assert not await harness.acked(fed)
        assert bus.produced == []
        bus.open.set()
        await eventually(lambda: harness.acked(fed), WAIT)
        topic = TOPICS.inbound if input == "good" else TOPICS.dlq
        assert len(bus.on(topic)) == 1


async def test_a_bad_outbound_envelope_fails_without_raising(harness: Harness) -> None:
    await harness.connector.start()
    for envelope in harness.bad_outbound():
        result = await harness.connector.send(envelope)
        assert result.status == "failed", (envelope, result)
        assert result.detail
    assert harness.delivered() == 0
    # and the connector still sends what it can
    assert (await harness.connector.send(harness.good_outbound())).status == "sent"
    assert harness.delivered() == 1


async def test_a_retriable_negative_ack_offers_the_input_again(harness: Harness) -> None:
    fed, items, first = await start_and_take(harness)
    try:
        await first.ack(Outcome("the bus is unavailable", retriable=True))
        assert not await harness.acked(fed)
        items = await harness.offer_again(items)
        await taken_again(harness, items, fed)
    finally:
        await close_items(items)


@pytest.mark.parametrize(
    "outcome",
    [DONE, Outcome("dead-lettered: cannot travel", retriable=False)],
    ids=["done", "dead-lettered"],
)
async def test_an_input_acked_done_or_dead_lettered_is_not_offered_again(
    harness: Harness, outcome: Outcome
) -> None:
    fed, items, first = await start_and_take(harness)
    try:
        await first.ack(outcome)
        await eventually(lambda: harness.acked(fed), WAIT)
        items = await harness.offer_again(items)
        later = await harness.feed()
        # The next thing the channel offers is the new input, not the old one again.
        assert (await next_incoming(items)).envelope.id == later.envelope_id
    finally:
        await close_items(items)


async def test_an_input_unacked_when_the_connector_stops_is_offered_again(
    harness: Harness,
) -> None:
    fed, items, _ = await start_and_take(harness)
    await close_items(items)
    await harness.connector.stop()  # a crash or a restart before the envelope reached the bus
    assert not await harness.acked(fed)
    await harness.connector.start()
    items = harness.connector.receive()
    try:
        await taken_again(harness, items, fed)
    finally:
        await close_items(items)


async def test_a_retriable_ack_holds_when_a_later_input_is_done(harness: Harness) -> None:
    await harness.connector.start()
    first, later = await harness.feed(), await harness.feed()
    items = harness.connector.receive()
    try:
        taken = {}
        for _ in range(2):  # both taken before either is acked, as the runner may
            item = await next_incoming(items)
            taken[item.envelope.id] = item
        assert set(taken) == {first.envelope_id, later.envelope_id}
        await taken[first.envelope_id].ack(Outcome("the bus is unavailable", retriable=True))
        await taken[later.envelope_id].ack(DONE)
        # A channel that keeps a position (IMAP's last UID) may hold the later one back
        # too and offer it again; what it must not do is forget the earlier one.
        assert not await harness.acked(first)
        items = await harness.offer_again(items)
        await taken_again(harness, items, first)
    finally:
        await close_items(items)
