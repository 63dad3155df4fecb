"""Dead letters: a record that cannot be processed goes to `omni.dlq` with the reason."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import structlog

from router.bus.base import Bus, Record, Topics
from router.envelope import now_utc

log = structlog.get_logger(__name__)


def dead_letter_value(record: Record, reason: str) -> bytes:
    """The DLQ record: why, where it came from, and the original bytes, intact."""
    body: dict[str, Any] = {
        "reason": reason,
        "source": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
        "key": record.key.decode("utf-8", "replace"),
        "dead_lettered_at": now_utc().isoformat(),
    }
    try:
        body["value"] = record.value.decode("utf-8")
    except UnicodeDecodeError:
        body["value_base64"] = base64.b64encode(record.value).decode("ascii")
    return orjson.dumps(body)


async def dead_letter(bus: Bus, topics: Topics, record: Record, reason: str) -> None:
    await bus.produce(topics.dlq, record.key, dead_letter_value(record, reason))
    log.warning(
        "record dead-lettered",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=reason,
    )
