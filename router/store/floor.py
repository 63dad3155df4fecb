"""The floor at a glance, for the metrics: queues, agents, load and the unsent outbox.

Four grouped counts in one read-only transaction. Each reads an index or a small table:
waiting conversations (`ix_conversations_waiting_since`), agents and their load (one
row per agent and channel type), and unsent outbox rows (the partial `ix_outbox_unsent`,
a handful unless the bus is down).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa

from router.metrics import NO_QUEUE, Floor
from router.store import Store
from router.store.schema import agent_load, agents, conversations, outbox


async def read_floor(store: Store, now: datetime, agent_ids: Collection[str]) -> Floor:
    """The floor as the store has it at `now`; agents counted are the configured ones."""
    c = conversations.c
    waiting = (
        sa.select(
            c.queue,
            sa.func.count(),
            sa.func.min(c.waiting_since),
            sa.func.sum(sa.case((c.sla_due_at < now, 1), else_=0)),
        )
        .where(c.waiting_since.is_not(None))
        .group_by(c.queue)
    )
    load = sa.select(agent_load.c.channel_type, sa.func.sum(agent_load.c.open_count)).group_by(
        agent_load.c.channel_type
    )
    unsent = (
        sa.select(outbox.c.topic, sa.func.count())
        .where(outbox.c.sent_at.is_(None))
        .group_by(outbox.c.topic)
    )
    async with store.transaction(readonly=True) as conn:
        queues = {
            queue or NO_QUEUE: (
                int(count),
                max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0,
                int(overdue or 0),
            )
            for queue, count, oldest, overdue in (await conn.execute(waiting)).all()
        }
        statuses: dict[str, int] = {}
        for agent_id, status in (await conn.execute(sa.select(agents.c.id, agents.c.status))).all():
            if agent_id in agent_ids:  # rows of agents a reload removed stay in the store
                statuses[status] = statuses.get(status, 0) + 1
        loads = {t: int(n or 0) for t, n in (await conn.execute(load)).all()}
        topics = {t: int(n) for t, n in (await conn.execute(unsent)).all()}
    return Floor(queues=queues, agents=statuses, load=loads, outbox=topics)
