"""Publishing the outbox: records the router wrote in its transactions, onto the bus.

Rows are published in the order they were written and marked sent after the
bus has them. A crash between the two publishes a row again on the next pass;
every output carries a stable envelope id, so its consumer dedupes it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from router.bus.base import Bus
from router.envelope import now_utc
from router.store import Store
from router.store import routing as db

log = structlog.get_logger(__name__)

BATCH = 200
# Published rows are kept this long (to see what went out), then pruned.
KEEP_SENT = timedelta(days=1)
PRUNE_BATCH = 5000


class OutboxPublisher:
    def __init__(self, store: Store, bus: Bus) -> None:
        self._store = store
        self._bus = bus

    async def flush(self) -> int:
        """Publish every unsent row; return how many were published."""
        total = 0
        while True:
            async with self._store.transaction() as conn:
                rows = await db.unsent(conn, BATCH)
                await self._publish(rows)
                if rows:
                    await db.mark_sent(conn, [r.id for r in rows], now_utc())
            total += len(rows)
            if len(rows) < BATCH:
                return total

    async def prune(self, now: datetime) -> int:
        """Delete rows published more than KEEP_SENT ago, a bounded batch at a time."""
        async with self._store.transaction() as conn:
            return await db.prune_outbox(conn, now - KEEP_SENT, PRUNE_BATCH)

    async def _publish(self, rows: Sequence[Any]) -> None:
        # Records of one key stay in order (one after the other); different keys
        # go out together, so a batch costs about one round trip, not one each.
        lanes: dict[tuple[str, bytes], list[Any]] = defaultdict(list)
        for row in rows:
            lanes[(row.topic, bytes(row.key))].append(row)

        async def lane(records: list[Any]) -> None:
            for row in records:
                await self._bus.produce(row.topic, bytes(row.key), bytes(row.value))

        await asyncio.gather(*(lane(records) for records in lanes.values()))
