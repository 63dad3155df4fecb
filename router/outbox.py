"""Publishing the outbox: records the router wrote in its transactions, onto the bus.

Rows are published in the order they were written and marked sent after the
bus has them. A crash between the two publishes a row again on the next pass;
every output carries a stable envelope id, so its consumer dedupes it.
"""

from __future__ import annotations

import structlog

from router.bus.base import Bus
from router.envelope import now_utc
from router.store import Store
from router.store import routing as db

log = structlog.get_logger(__name__)

BATCH = 200


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
                for row in rows:
                    await self._bus.produce(row.topic, bytes(row.key), bytes(row.value))
                if rows:
                    await db.mark_sent(conn, [r.id for r in rows], now_utc())
            total += len(rows)
            if len(rows) < BATCH:
                return total
