"""Dead letters carry the original when it fits the bus, and say where it is when not."""

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from router.bus import EmbeddedBus
from router.bus.base import Record
from router.dlq import dead_letter
from tests.router.consuming import TOPICS, drain

LIMIT = 20_000


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[EmbeddedBus]:
    b = EmbeddedBus(tmp_path / "bus.sqlite3", partitions=1, max_record_bytes=LIMIT)
    await b.start()
    await b.ensure_topics([TOPICS.dlq])
    yield b
    await b.stop()


async def test_a_dead_letter_keeps_the_original_bytes(bus: EmbeddedBus) -> None:
    await dead_letter(bus, TOPICS, Record("t.inbound", 0, 7, b"k", b"\xff\x00raw"), "bad")
    [letter] = await drain(bus, TOPICS.dlq, "dlq", 1)
    body = orjson.loads(letter.value)
    assert body["reason"] == "bad"
    assert body["source"] == {"topic": "t.inbound", "partition": 0, "offset": 7}
    assert body["value_base64"] == "/wByYXc="


async def test_an_original_too_large_to_copy_is_referenced_where_it_stays(
    bus: EmbeddedBus,
) -> None:
    # Under the limit on the bus, over it once escaped inside the dead letter's JSON.
    value = b'"' * (LIMIT - 100)
    await dead_letter(bus, TOPICS, Record("t.inbound", 0, 7, b"k", value), "not an envelope")
    [letter] = await drain(bus, TOPICS.dlq, "dlq", 1)
    body = orjson.loads(letter.value)
    assert "value" not in body and "value_base64" not in body
    assert body["value_ref"] == "t.inbound/0/7"
    assert body["size"] == len(value)
    assert body["reason"] == "not an envelope"
