"""Dead letters: one schema for records, outputs and inputs; the original when it fits the
bus, where it is when not."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from router.bus import EmbeddedBus
from router.bus.base import Record
from router.dlq import DeadLetter, dead_letter
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
    record = Record("t.inbound", 0, 7, b"k", b"\xff\x00raw")
    await dead_letter(bus, TOPICS, DeadLetter.of_record(record, "bad"))
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
    record = Record("t.inbound", 0, 7, b"k", value)
    await dead_letter(bus, TOPICS, DeadLetter.of_record(record, "not an envelope"))
    [letter] = await drain(bus, TOPICS.dlq, "dlq", 1)
    body = orjson.loads(letter.value)
    assert "value" not in body and "value_base64" not in body
    assert body["value_ref"] == "t.inbound/0/7"
    assert body["size"] == len(value)
    assert body["reason"] == "not an envelope"


@dataclass
class Row:
    id: int
    topic: str
    key: bytes
    value: bytes


async def test_records_outputs_and_inputs_share_one_schema(bus: EmbeddedBus) -> None:
    letters = [
        DeadLetter.of_record(Record("t.inbound", 0, 7, b"k", b"{}"), "not an envelope"),
        DeadLetter.of_output(Row(3, "t.outbound.mail", b"k", b"{}"), "unknown topic"),
        DeadLetter.of_input("mail", "cannot parse", native_id="INBOX/1/9", ref="blob://sha256/ab"),
    ]
    for letter in letters:
        await dead_letter(bus, TOPICS, letter)
    bodies = [orjson.loads(r.value) for r in await drain(bus, TOPICS.dlq, "dlq", 3)]
    fields = {"reason", "source", "native_id", "key", "size", "value_ref", "dead_lettered_at"}
    assert [set(b) - {"value"} for b in bodies] == [fields] * 3
    record, output, given = bodies
    assert (record["value_ref"], record["value"]) == ("t.inbound/0/7", "{}")
    assert output["source"] == {"outbox_id": 3, "topic": "t.outbound.mail"}
    assert output["value_ref"] == "store:outbox/3"
    assert given["source"] == {"channel": "mail"}
    assert (given["native_id"], given["value_ref"], given["size"]) == (
        "INBOX/1/9",
        "blob://sha256/ab",
        None,
    )
