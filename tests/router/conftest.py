"""The embedded bus with the inbound and DLQ topics, for consume-loop tests."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from router.bus import EmbeddedBus
from tests.router.consuming import TOPICS


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[EmbeddedBus]:
    b = EmbeddedBus(tmp_path / "bus.sqlite3", partitions=2)
    await b.start()
    await b.ensure_topics([TOPICS.inbound, TOPICS.dlq])
    yield b
    await b.stop()
