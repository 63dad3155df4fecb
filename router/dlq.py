"""Dead letters: what cannot be processed or published goes to `omni.dlq` with the reason.

One body shape for all of them: `reason`, `source` (where it came from),
`key`, `size`, the original bytes intact (`value`, or `value_base64` when they
are not UTF-8), and `dead_lettered_at`. An output too large for the bus is not
copied into its dead letter: `value_ref` names where it stays (the store's outbox).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import structlog

from router.bus.base import Bus, Record, Topics
from router.envelope import now_utc
from router.errors import RecordTooLargeError

log = structlog.get_logger(__name__)

# An original larger than this is referenced, not copied, so the dead letter fits the bus.
INLINE_LIMIT = 256 * 1024


def _body(reason: str, source: dict[str, Any], key: bytes, value: bytes) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reason": reason,
        "source": source,
        "key": key.decode("utf-8", "replace"),
        "size": len(value),
        "dead_lettered_at": now_utc().isoformat(),
    }
    if len(value) > INLINE_LIMIT:
        return body
    try:
        body["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        body["value_base64"] = base64.b64encode(value).decode("ascii")
    return body


def dead_letter_value(record: Record, reason: str) -> bytes:
    """The DLQ record: why, where it came from, and the original bytes."""
    source = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    body = _body(reason, source, record.key, record.value)
    if "value" not in body and "value_base64" not in body:
        # A record the bus carried once fits it; keep it whole (the DLQ may be the only copy).
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


async def dead_letter_output(bus: Bus, topics: Topics, row: Any, reason: str) -> None:
    """An outbox row that can never be published: its dead letter carries the original
    when it fits the bus, else references the row, which the store keeps (marked dead)."""
    value = bytes(row.value)
    source = {"outbox_id": row.id, "topic": row.topic}
    body = _body(reason, source, bytes(row.key), value)
    try:
        await bus.produce(topics.dlq, bytes(row.key), orjson.dumps(body))
    except RecordTooLargeError:
        body.pop("value", None)
        body.pop("value_base64", None)
        body["value_ref"] = f"store:outbox/{row.id}"
        await bus.produce(topics.dlq, bytes(row.key), orjson.dumps(body))
    log.warning(
        "output dead-lettered", outbox_id=row.id, topic=row.topic, size=len(value), reason=reason
    )
