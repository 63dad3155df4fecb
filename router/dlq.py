"""Dead letters: what cannot be processed or published goes to `omni.dlq` with the reason.

One body shape for all of them: `reason`, `source` (where it came from),
`key`, `size`, the original bytes intact (`value`, or `value_base64` when they
are not UTF-8), and `dead_lettered_at`. When the original with the body around
it is too large for the bus, it is not copied: `value_ref` names where it stays
(the store's outbox row, or the source topic's record).
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


def _body(
    reason: str, source: dict[str, Any], key: bytes, value: bytes, *, inline: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reason": reason,
        "source": source,
        "key": key.decode("utf-8", "replace"),
        "size": len(value),
        "dead_lettered_at": now_utc().isoformat(),
    }
    if inline:
        try:
            body["value"] = value.decode("utf-8")
        except UnicodeDecodeError:
            body["value_base64"] = base64.b64encode(value).decode("ascii")
    return body


async def _produce(
    bus: Bus,
    topics: Topics,
    key: bytes,
    value: bytes,
    reason: str,
    source: dict[str, Any],
    ref: str,
) -> None:
    """The dead letter with the original in it, or with `value_ref` when that is too large."""
    try:
        await bus.produce(topics.dlq, key, orjson.dumps(_body(reason, source, key, value)))
    except RecordTooLargeError:
        body = _body(reason, source, key, value, inline=False)
        body["value_ref"] = ref
        await bus.produce(topics.dlq, key, orjson.dumps(body))


async def dead_letter(bus: Bus, topics: Topics, record: Record, reason: str) -> None:
    source = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    ref = f"{record.topic}/{record.partition}/{record.offset}"
    await _produce(bus, topics, record.key, record.value, reason, source, ref)
    log.warning(
        "record dead-lettered",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=reason,
    )


async def dead_letter_output(bus: Bus, topics: Topics, row: Any, reason: str) -> None:
    """An outbox row that can never be published; the store keeps it (marked dead)."""
    value = bytes(row.value)
    source = {"outbox_id": row.id, "topic": row.topic}
    await _produce(bus, topics, bytes(row.key), value, reason, source, f"store:outbox/{row.id}")
    log.warning(
        "output dead-lettered", outbox_id=row.id, topic=row.topic, size=len(value), reason=reason
    )
