"""`omnirouter dlq list` and `dlq replay ID|--all`: dead letters, read and sent back.

Entries come from the dead-letter topic, as `router.dlq` writes it, read with
`Bus.scan` (no consumer group joins, nothing is committed), and from outbox
rows the store keeps marked dead (one entry each: the dead letter of an output
and its row are the same entry). An entry's id is where its dead letter sits
on the topic, `<partition>-<offset>`, or `outbox-<row id>` for a dead row whose
dead letter is gone.

Replaying, after the cause is fixed:

| the dead letter is...              | replay                                          |
| ---------------------------------- | ----------------------------------------------- |
| a bus record (`source.topic`)      | its original (inline, or read back from         |
|                                    | `value_ref`) is produced again on its topic,     |
|                                    | under its key; an inbound envelope the router    |
|                                    | would still refuse is not (the reason is shown)  |
| an output (`store:outbox/<id>`)    | its row is re-armed: the daemon's publisher      |
|                                    | sends it on its next flush                       |
| an input a channel could not read  | not replayable (it never was an envelope): the   |
|                                    | channel must take it in again                    |

Each entry is replayed once: the replay is noted in the store (`processed`,
consumer `dlq-replay`) before it is re-injected, and forgotten if that fails;
a second replay is refused unless `--again`. Re-injected twice all the same, an inbound
record is still applied once: the router dedupes by envelope id.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import orjson

from router.bus.base import Bus, Topics
from router.envelope import decode
from router.errors import EnvelopeError, OmniError
from router.ops.console import console, progress, table, when
from router.routing.admission import refusal
from router.routing.context import Routing
from router.routing.engine import CONSUMER as ROUTER
from router.store import Store, views

REPLAYS = "dlq-replay"  # the `processed` consumer noting replayed entries
_IN_CHUNK = 500  # ids per IN (...) query


class ReplayError(OmniError):
    """An entry that cannot be replayed (the reason says why); others go on."""


@dataclass(slots=True)
class Entry:
    id: str
    reason: str
    source: dict[str, Any]
    key: bytes
    size: int | None
    at: datetime | None
    value: bytes | None = None  # the original, when it rode in the dead letter
    ref: str | None = None  # where the original stays otherwise
    outbox_id: int | None = None
    state: str = "dead"  # dead | replayed | re-armed | sent | gone (outputs: the row's)
    replayed_at: datetime | None = None
    routed: bool = False  # an inbound envelope the router has applied since
    envelope_id: str | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        if self.outbox_id is not None:
            return "output"
        return "record" if "topic" in self.source else "input"

    def where(self) -> str:
        s = self.source
        if self.outbox_id is not None:
            return f"outbox {self.outbox_id} -> {s.get('topic', '?')}"
        if "topic" in s:
            return f"{s['topic']}/{s.get('partition')}/{s.get('offset')}"
        return f"channel {s.get('channel', '?')}"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "reason": self.reason,
            "source": self.source,
            "key": self.key.decode("utf-8", "replace"),
            "size": self.size,
            "dead_lettered_at": self.at,
            "value_ref": self.ref,
            "state": self.state,
            "replayed_at": self.replayed_at,
            "routed": self.routed,
        }


async def entries(bus: Bus, topics: Topics, store: Store) -> list[Entry]:
    """Every dead letter, oldest first, with what has become of it."""
    found: list[Entry] = []
    async with aclosing(bus.scan(topics.dlq)) as batches:
        async for batch in batches:
            found.extend(_entry(f"{r.partition}-{r.offset}", r.key, r.value) for r in batch)
    found.sort(key=lambda e: (e.at is None, e.at or datetime.min, e.id))
    async with store.transaction(readonly=True) as conn:
        dead = {row.id: row for row in await views.dead_outbox(conn)}
        by_row = {e.outbox_id: e for e in found if e.outbox_id is not None}
        for entry in by_row.values():
            assert entry.outbox_id is not None
            row = dead.get(entry.outbox_id) or await views.outbox_row(conn, entry.outbox_id)
            entry.state = _row_state(row)
        for row_id, row in dead.items():
            if row_id not in by_row:
                found.append(_orphan(row))
        await _replays(conn, found)
    return found


def _entry(entry_id: str, key: bytes, value: bytes) -> Entry:
    try:
        body = orjson.loads(value)
        if not isinstance(body, dict):
            raise TypeError(type(body).__name__)
    except (orjson.JSONDecodeError, TypeError):
        return Entry(entry_id, "unreadable dead letter", {}, key, len(value), None)
    original: bytes | None = None
    if isinstance(body.get("value"), str):
        original = body["value"].encode("utf-8")
    elif isinstance(body.get("value_base64"), str):
        original = base64.b64decode(body["value_base64"])
    given = body.get("source")
    source: dict[str, Any] = given if isinstance(given, dict) else {}
    outbox_id = source.get("outbox_id")
    at = body.get("dead_lettered_at")
    return Entry(
        id=entry_id,
        reason=str(body.get("reason", "")),
        source=source,
        key=str(body.get("key") or "").encode("utf-8"),
        size=body.get("size") if isinstance(body.get("size"), int) else None,
        at=_time(at),
        value=original,
        ref=body.get("value_ref") if isinstance(body.get("value_ref"), str) else None,
        outbox_id=outbox_id if isinstance(outbox_id, int) else None,
    )


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _orphan(row: Any) -> Entry:
    """A dead outbox row whose dead letter is no longer on the topic."""
    return Entry(
        id=f"outbox-{row.id}",
        reason=str(row.dead_reason),
        source={"outbox_id": row.id, "topic": row.topic},
        key=bytes(row.key),
        size=len(row.value),
        at=row.sent_at,
        ref=f"store:outbox/{row.id}",
        outbox_id=row.id,
    )


def _row_state(row: Any) -> str:
    if row is None:
        return "gone"
    if row.dead_reason is not None:
        return "dead"
    return "sent" if row.sent_at is not None else "re-armed"


async def _replays(conn: Any, found: Sequence[Entry]) -> None:
    """Fill in which entries were replayed and which inbound envelopes were routed."""
    marks: dict[str, datetime] = {}
    ids = [e.id for e in found]
    for start in range(0, len(ids), _IN_CHUNK):
        marks.update(await views.processed_at(conn, REPLAYS, ids[start : start + _IN_CHUNK]))
    for entry in found:
        entry.envelope_id = _envelope_id(entry.value)
        if entry.id in marks:
            entry.replayed_at = marks[entry.id]
            if entry.outbox_id is None:
                entry.state = "replayed"
    envelopes = [e.envelope_id for e in found if e.envelope_id is not None]
    routed: dict[str, datetime] = {}
    for start in range(0, len(envelopes), _IN_CHUNK):
        routed.update(await views.processed_at(conn, ROUTER, envelopes[start : start + _IN_CHUNK]))
    for entry in found:
        entry.routed = entry.envelope_id in routed


def _envelope_id(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        found = orjson.loads(value).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def show(found: Sequence[Entry], *, as_json: bool, out: IO[str] | None = None) -> None:
    if as_json:
        out = sys.stdout if out is None else out
        for entry in found:
            out.write(orjson.dumps(entry.as_json()).decode() + "\n")
        return
    if not found:
        console(out).print("no dead letters")
        return
    t = table("ID", "WHEN (UTC)", "SOURCE", "KEY", "SIZE", "STATE", "REASON")
    for e in found:
        state = e.state
        if e.replayed_at is not None:
            state = f"{state} {when(e.replayed_at)}"
        if e.routed:
            state += ", routed"
        size = "-" if e.size is None else str(e.size)
        key = e.key.decode("utf-8", "replace").replace("\x1f", "/")
        t.add_row(e.id, when(e.at), e.where(), key, size, state, e.reason)
    console(out).print(t)


# --- replay ---------------------------------------------------------------------------


@dataclass(slots=True)
class Replayed:
    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # id, why


async def replay(
    ctx: Routing,
    bus: Bus,
    found: Sequence[Entry],
    *,
    again: bool = False,
    err: IO[str] | None = None,
) -> Replayed:
    """Replay `found` in order (see the module's table); what cannot go is skipped with
    why. Raises `OmniError` (retriable) when the bus or the store fails."""
    result = Replayed()
    with progress("replaying", len(found), file=err) as bar:
        task = bar.task_ids[0]
        for entry in found:
            try:
                await _replay_one(ctx, bus, entry, again=again)
                result.done.append(entry.id)
            except ReplayError as exc:
                result.skipped.append((entry.id, str(exc)))
            bar.advance(task)
    return result


async def _replay_one(ctx: Routing, bus: Bus, entry: Entry, *, again: bool) -> None:
    if entry.replayed_at is not None and not again:
        raise ReplayError(f"replayed already at {when(entry.replayed_at)} UTC (--again to repeat)")
    if entry.kind == "input":
        raise ReplayError(
            "an input the channel could not read is no envelope to replay:"
            " the channel must take it in again"
        )
    if entry.kind == "output":
        await _rearm(ctx.store, entry)
        return
    topic = entry.source["topic"]
    key, value = await _original(bus, entry)
    if topic == ctx.topics.inbound:
        refused = _still_refused(ctx, value)
        if refused is not None:
            raise ReplayError(f"the router would refuse it again: {refused}")
    # Noted first, in a transaction of its own (no store lock is held while the bus
    # takes its time), and forgotten again if producing fails. Two operators at once:
    # only the one who noted it produces it.
    noted = await ctx.store.mark_processed(REPLAYS, entry.id)
    if not noted and not again:
        raise ReplayError("replayed by someone else just now")
    try:
        await bus.produce(topic, key, value)
    except BaseException:
        if noted:
            async with ctx.store.transaction() as conn:
                await views.forget_processed(conn, REPLAYS, entry.id)
        raise


async def _rearm(store: Store, entry: Entry) -> None:
    assert entry.outbox_id is not None
    async with store.transaction() as conn:
        if not await views.rearm_dead_outbox(conn, entry.outbox_id):
            row = await views.outbox_row(conn, entry.outbox_id)
            raise ReplayError(f"its output is not dead any more ({_row_state(row)})")
        await store.mark_processed(REPLAYS, entry.id, conn=conn)


async def _original(bus: Bus, entry: Entry) -> tuple[bytes, bytes]:
    """The original record's key and value: from the dead letter, or where it stays."""
    if entry.value is not None:
        return entry.key, entry.value
    topic, partition, offset = _bus_ref(entry.ref)
    async with aclosing(bus.scan(topic, {partition: offset})) as batches:
        async for batch in batches:
            for record in batch:
                if record.offset == offset:
                    return record.key, record.value
                break  # gaps: a later offset means the record is gone
            break
    raise ReplayError(f"its original is gone from {entry.ref} (past the bus's retention)")


def _bus_ref(ref: str | None) -> tuple[str, int, int]:
    topic, _, rest = (ref or "").rpartition("/")
    topic, _, partition = topic.rpartition("/")
    if not topic or not partition.isdigit() or not rest.isdigit():
        raise ReplayError(f"its original is neither in the dead letter nor on the bus ({ref})")
    return topic, int(partition), int(rest)


def _still_refused(ctx: Routing, value: bytes) -> str | None:
    """Why the router would dead-letter this inbound record again, or None."""
    try:
        return refusal(ctx, decode(value))
    except EnvelopeError as exc:
        return f"invalid envelope: {exc}"


def choose(found: Sequence[Entry], ids: Sequence[str], *, every: bool, again: bool) -> list[Entry]:
    """The entries `ids` names (an unknown one raises `ReplayError`), or with `every`
    those not replayed yet (all with `again`) that can be: not inputs, and for an
    output, one whose row is still dead."""
    if every:
        return [
            e
            for e in found
            if e.kind != "input"
            and (e.replayed_at is None or again)
            and (e.kind != "output" or e.state == "dead")
        ]
    by_id = {e.id: e for e in found}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise ReplayError(f"no dead letter {', '.join(unknown)} (see dlq list)")
    return [by_id[i] for i in dict.fromkeys(ids)]


def report(result: Replayed, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    for entry_id in result.done:
        out.write(f"replayed {entry_id}\n")
    for entry_id, why in result.skipped:
        err.write(f"not replayed {entry_id}: {why}\n")
    out.write(f"{len(result.done)} replayed, {len(result.skipped)} not replayed\n")
