"""The store reads behind the supervisor's snapshot: a few aggregate queries, each
bounded (the page asks every few seconds, with thousands of conversations open)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from router.store.schema import conversations, incidents, outbox, timers

Row = Any


async def queue_depths(conn: AsyncConnection) -> list[Row]:
    """Per queue (None: none): conversations waiting for an agent, and the longest wait's start."""
    c = conversations.c
    stmt = (
        sa.select(
            c.queue,
            sa.func.count().label("depth"),
            sa.func.min(c.waiting_since).label("oldest"),
        )
        .where(c.waiting_since.is_not(None), c.status == "open")
        .group_by(c.queue)
    )
    return list((await conn.execute(stmt)).all())


def _unanswered() -> sa.ColumnElement[bool]:
    c = conversations.c
    return sa.and_(c.status == "open", c.first_response_at.is_(None), c.sla_due_at.is_not(None))


async def at_risk(
    conn: AsyncConnection, now: datetime, within: timedelta, limit: int
) -> tuple[int, list[Row]]:
    """Open conversations not answered yet that will miss their first-response target
    soon: past their SLA warning, or due within `within` (or overdue). How many, and the
    first `limit` by time left."""
    c = conversations.c
    warned = (
        sa.select(timers.c.id)
        .where(
            timers.c.conversation_id == c.id,
            timers.c.kind == "sla_warning",
            timers.c.cancelled_at.is_(None),
            timers.c.due_at <= now,
        )
        .exists()
    )
    risky = sa.and_(_unanswered(), sa.or_(c.sla_due_at <= now + within, warned))
    count = int(await conn.scalar(sa.select(sa.func.count()).where(risky)) or 0)
    stmt = (
        sa.select(
            c.id,
            c.ref,
            c.channel,
            c.queue,
            c.owner_agent_id,
            c.priority,
            c.sla_due_at,
            c.waiting_since,
        )
        .where(risky)
        .order_by(c.sla_due_at, c.id)
        .limit(limit)
    )
    return count, list((await conn.execute(stmt)).all())


async def incidents_since(
    conn: AsyncConnection, since: datetime, limit: int
) -> tuple[int, list[Row]]:
    """Incidents recorded since `since`: how many, and the newest `limit` with their
    conversation's reference and channel."""
    i, c = incidents.c, conversations.c
    count = int(await conn.scalar(sa.select(sa.func.count()).where(i.created_at >= since)) or 0)
    stmt = (
        sa.select(i.id, i.kind, i.created_at, i.cause, i.conversation_id, c.ref, c.channel)
        .select_from(incidents.outerjoin(conversations, c.id == i.conversation_id))
        .where(i.created_at >= since)
        .order_by(i.created_at.desc(), i.id.desc())
        .limit(limit)
    )
    return count, list((await conn.execute(stmt)).all())


async def dead_outputs(conn: AsyncConnection) -> int:
    """Outputs that could never be published (they went to the dead-letter topic; the
    store keeps them for review)."""
    stmt = sa.select(sa.func.count()).where(outbox.c.dead_reason.is_not(None))
    return int(await conn.scalar(stmt) or 0)


async def resolved_since(conn: AsyncConnection, since: datetime) -> list[Row]:
    """Conversations resolved since `since` and still resolved (or closed after it)."""
    c = conversations.c
    stmt = sa.select(c.id, c.channel, c.status, c.thread_meta).where(
        c.resolved_at >= since, c.status.in_(("resolved", "closed"))
    )
    return list((await conn.execute(stmt)).all())
