"""The bus contract, shared by the Kafka and the embedded backends.

A record is produced under a key; records with one key are consumed in the
order they were produced. A consumer belongs to a group; the group's committed
offset moves only when `commit()` is called with records whose effects are
durable, so a consumer that dies before committing has those records
delivered again (at-least-once; the router dedupes by envelope id).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from router.errors import RecordTooLargeError

# Kafka's default `message.max.bytes` is 1,048,588 bytes for a whole batch; a
# record kept under a million bytes fits it with room for the batch's overhead.
DEFAULT_MAX_RECORD_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Topics:
    """Topic names under the configured prefix (default `omni.`)."""

    prefix: str = "omni."

    @property
    def inbound(self) -> str:
        return f"{self.prefix}inbound"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    def outbound(self, channel: str) -> str:
        return f"{self.prefix}outbound.{channel}"

    def agent(self, sink: str) -> str:
        return f"{self.prefix}agent.{sink}"


def check_record_size(topic: str, key: bytes, value: bytes, limit: int) -> None:
    """Refuse, before producing, a record the bus would refuse (or should not carry)."""
    size = len(key) + len(value)
    if size > limit:
        raise RecordTooLargeError(
            f"record for {topic} is {size} bytes, over the bus's max_record_bytes ({limit})"
        )


class Consumer(Protocol):
    """One member of a consumer group."""

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:  # noqa: ASYNC109
        """Return the next records (possibly none after `timeout` seconds)."""
        ...

    async def commit(self, records: Sequence[Record]) -> None:
        """Mark these records, and everything before them per partition, as done."""
        ...

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records not yet committed by this group, per assigned (topic, partition)."""
        ...

    async def close(self) -> None: ...


class Bus(Protocol):
    """A durable, partitioned log with consumer groups."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ensure_topics(self, names: Sequence[str]) -> None:
        """Create the topics that do not exist yet (configured partitions)."""
        ...

    async def produce(self, topic: str, key: bytes, value: bytes) -> None:
        """Append one record; returns once it is durable (acks=all / fsync'd commit).

        A record over the bus's `max_record_bytes` raises `RecordTooLargeError`
        before anything is sent."""
        ...

    async def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        """Join `group` on `topics`; uncommitted records are delivered again."""
        ...

    def scan(
        self, topic: str, start: Mapping[int, int] | None = None
    ) -> AsyncGenerator[list[Record], None]:
        """Read `topic` as it is now, outside any group (nothing joins, nothing is
        committed): batches of records, each partition in offset order, up to the end
        each partition had when the scan began. `start`: partition -> first offset, only
        those partitions; default every partition from its first record. For operators'
        tools (`omnirouter dlq`); close it (`contextlib.aclosing`) when leaving early."""
        ...

    async def ping(self) -> bool:
        """True when the backend is reachable (used by /readyz)."""
        ...

    async def backlog(self, group: str, topics: Sequence[str]) -> dict[str, int]:
        """Records on each of `topics` (made by `ensure_topics`) beyond `group`'s committed
        offsets, over all partitions, whether or not a member of the group is running:
        everything the topic holds where the group never committed. For the metrics.
        Raises `BusError` (retriable) while the bus cannot tell (on a fresh Kafka cluster,
        until its group coordinator is up)."""
        ...
