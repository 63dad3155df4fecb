"""Dead letters: what cannot be processed or published goes to `omni.dlq` with the reason.

One function (`dead_letter`) and one record body for all of them, whatever
failed: a record the router cannot apply, an output that can never be
published, an input a channel could not turn into an envelope.

    reason            why it was given up (str)
    source            where it came from: {"topic", "partition", "offset"} (a bus
                      record), {"outbox_id", "topic"} (an output), or {"channel"}
                      (an input a channel took in)
    native_id         the input's own id on its channel (an IMAP folder/UIDVALIDITY/UID,
                      an envelope id), or null
    key               the record's key (str; empty for an input)
    size              the original's size in bytes, or null when there is none
    value             the original, when it is UTF-8 and fits the bus...
    value_base64      ...or the original as base64 when it is not UTF-8
    value_ref         where the original stays (`<topic>/<partition>/<offset>`,
                      `store:outbox/<id>`, `blob://sha256/...`), or null
    dead_lettered_at  ISO 8601 time, UTC

When the original with the body around it is too large for the bus, it is not
copied: `value_ref` says where it is.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from router.bus.base import Bus, Record, Topics
from router.envelope import now_utc
from router.errors import RecordTooLargeError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class DeadLetter:
    """What to dead-letter; build one with `of_record`, `of_output` or `of_input`."""

    what: str  # "record", "output" or "input": names the log line
    reason: str
    source: dict[str, Any]
    key: bytes = b""
    original: bytes | None = None
    ref: str | None = None
    native_id: str | None = None

    @classmethod
    def of_record(cls, record: Record, reason: str) -> DeadLetter:
        """A bus record that cannot be processed."""
        return cls(
            what="record",
            reason=reason,
            source={"topic": record.topic, "partition": record.partition, "offset": record.offset},
            key=record.key,
            original=record.value,
            ref=f"{record.topic}/{record.partition}/{record.offset}",
        )

    @classmethod
    def of_output(cls, row: Any, reason: str) -> DeadLetter:
        """An outbox row that can never be published; the store keeps it (marked dead)."""
        return cls(
            what="output",
            reason=reason,
            source={"outbox_id": row.id, "topic": row.topic},
            key=bytes(row.key),
            original=bytes(row.value),
            ref=f"store:outbox/{row.id}",
        )

    @classmethod
    def of_input(
        cls,
        channel: str,
        reason: str,
        *,
        native_id: str | None = None,
        original: bytes | None = None,
        ref: str | None = None,
    ) -> DeadLetter:
        """An input a channel took in that cannot travel as an envelope."""
        return cls(
            what="input",
            reason=reason,
            source={"channel": channel},
            key=f"{channel}\x1f{native_id or ''}".encode(),
            original=original,
            ref=ref,
            native_id=native_id,
        )

    def body(self, *, inline: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "reason": self.reason,
            "source": self.source,
            "native_id": self.native_id,
            "key": self.key.decode("utf-8", "replace"),
            "size": None if self.original is None else len(self.original),
            "value_ref": self.ref,
            "dead_lettered_at": now_utc().isoformat(),
        }
        if inline and self.original is not None:
            try:
                body["value"] = self.original.decode("utf-8")
            except UnicodeDecodeError:
                body["value_base64"] = base64.b64encode(self.original).decode("ascii")
        return body


async def dead_letter(bus: Bus, topics: Topics, letter: DeadLetter) -> None:
    """Put `letter` on the dead-letter topic, with the original in it when that fits the
    bus. Raises `BusError` (retriable) while the bus is unavailable."""
    try:
        await bus.produce(topics.dlq, letter.key, orjson.dumps(letter.body()))
    except RecordTooLargeError:
        await bus.produce(topics.dlq, letter.key, orjson.dumps(letter.body(inline=False)))
    log.warning(
        f"{letter.what} dead-lettered",
        **letter.source,
        native_id=letter.native_id,
        size=None if letter.original is None else len(letter.original),
        value_ref=letter.ref,
        reason=letter.reason,
    )
