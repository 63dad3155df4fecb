"""The `bus` fixture: every contract test runs on the embedded bus and on real Kafka."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from router.bus import Bus, EmbeddedBus, KafkaBus

PARTITIONS = 4
MakeBus = Callable[[], Bus]


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def make_bus(request: pytest.FixtureRequest, tmp_path: Path) -> MakeBus:
    """A factory of fresh (unstarted) bus instances on the same storage."""
    if request.param == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        return lambda: KafkaBus(bootstrap, partitions=PARTITIONS)
    path = tmp_path / "not-yet" / "bus.db"  # the bus creates the parent dir
    return lambda: EmbeddedBus(path, partitions=PARTITIONS, poll_interval=0.05)


@pytest.fixture
async def bus(make_bus: MakeBus) -> AsyncIterator[Bus]:
    b = make_bus()
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


@pytest.fixture
def names() -> Callable[[str], str]:
    """Unique topic/group names, so tests never see each other's records."""
    run = uuid.uuid4().hex[:10]
    return lambda what: f"test.{what}.{run}"
