"""Read-only queries for the operator's commands (`router.ops`): what routing recorded.

Nothing here writes, except for `omnirouter dlq replay`: `rearm_dead_outbox` (a
dead-lettered output given back to the publisher) and `forget_processed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from router.store.schema import (
    assignments,
    conversations,
    customers,
    identities,
    incidents,
    messages,
    outbox,
    processed,
    timers,
)

Row = Any


async def find_conversation(conn: AsyncConnection, wanted: str) -> Row | None:
    """A conversation by its id, or by the reference customers quote (`#K7Q2M9`, `K7Q2M9`)."""
    row = (await conn.execute(sa.select(conversations).where(conversations.c.id == wanted))).first()
    if row is not None:
        return row
    ref = wanted.strip().lstrip("#").upper()
    stmt = sa.select(conversations).where(conversations.c.ref == ref)
    return (await conn.execute(stmt)).first()


async def messages_of(conn: AsyncConnection, conversation_id: str, limit: int) -> list[Row]:
    """The conversation's first `limit` messages, in the order they arrived."""
    stmt = (
        sa.select(messages)
        .where(messages.c.conversation_id == conversation_id)
        .order_by(messages.c.received_at, messages.c.stored_at)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


async def assignments_of(conn: AsyncConnection, conversation_id: str) -> list[Row]:
    stmt = (
        sa.select(assignments)
        .where(assignments.c.conversation_id == conversation_id)
        .order_by(assignments.c.assigned_at, assignments.c.id)
    )
    return list((await conn.execute(stmt)).all())


async def incidents_of(conn: AsyncConnection, conversation_id: str) -> list[Row]:
    stmt = (
        sa.select(incidents)
        .where(incidents.c.conversation_id == conversation_id)
        .order_by(incidents.c.created_at, incidents.c.id)
    )
    return list((await conn.execute(stmt)).all())


async def timers_of(conn: AsyncConnection, conversation_id: str) -> list[Row]:
    stmt = (
        sa.select(timers)
        .where(timers.c.conversation_id == conversation_id)
        .order_by(timers.c.due_at, timers.c.id)
    )
    return list((await conn.execute(stmt)).all())


async def customer_of(conn: AsyncConnection, customer_id: str) -> tuple[Row | None, list[Row]]:
    """The customer and their identities (kind, value), or (None, []) when unknown."""
    row = (await conn.execute(sa.select(customers).where(customers.c.id == customer_id))).first()
    stmt = (
        sa.select(identities.c.kind, identities.c.value)
        .where(identities.c.customer_id == customer_id)
        .order_by(identities.c.kind, identities.c.value)
    )
    return row, list((await conn.execute(stmt)).all())


async def incidents_with_context(
    conn: AsyncConnection, limit: int, kind: str | None = None
) -> list[Row]:
    """Incidents, newest first, with their conversation's reference and channel and
    their customer's name (each null when the incident names none)."""
    customer_id = sa.func.coalesce(incidents.c.customer_id, conversations.c.customer_id)
    stmt = (
        sa.select(
            incidents,
            conversations.c.ref,
            conversations.c.channel,
            customers.c.display_name.label("customer_name"),
            customer_id.label("customer"),
        )
        .select_from(
            incidents.outerjoin(
                conversations, conversations.c.id == incidents.c.conversation_id
            ).outerjoin(customers, customers.c.id == customer_id)
        )
        .order_by(incidents.c.created_at.desc(), incidents.c.id.desc())
        .limit(limit)
    )
    if kind:
        stmt = stmt.where(incidents.c.kind == kind)
    return list((await conn.execute(stmt)).all())


async def first_identity(conn: AsyncConnection, customer_ids: Sequence[str]) -> dict[str, str]:
    """One identity per customer (the first by kind and value), to name those with no name."""
    if not customer_ids:
        return {}
    stmt = (
        sa.select(identities.c.customer_id, identities.c.kind, identities.c.value)
        .where(identities.c.customer_id.in_(list(customer_ids)))
        .order_by(identities.c.customer_id, identities.c.kind, identities.c.value)
    )
    found: dict[str, str] = {}
    for row in (await conn.execute(stmt)).all():
        found.setdefault(str(row.customer_id), f"{row.kind}:{row.value}")
    return found


# --- dead letters --------------------------------------------------------------------


async def dead_outbox(conn: AsyncConnection) -> list[Row]:
    """Outputs that could never be published (they went to the DLQ), oldest first."""
    stmt = sa.select(outbox).where(outbox.c.dead_reason.is_not(None)).order_by(outbox.c.id)
    return list((await conn.execute(stmt)).all())


async def outbox_row(conn: AsyncConnection, row_id: int) -> Row | None:
    return (await conn.execute(sa.select(outbox).where(outbox.c.id == row_id))).first()


async def rearm_dead_outbox(conn: AsyncConnection, row_id: int) -> bool:
    """Give a dead output back to the publisher (its next flush sends it); False when the
    row is not dead (already re-armed, sent, or pruned): a replay is done once."""
    result = await conn.execute(
        outbox.update()
        .where(outbox.c.id == row_id, outbox.c.dead_reason.is_not(None))
        .values(sent_at=None, claimed_until=None, dead_reason=None)
    )
    return bool(result.rowcount)


async def processed_at(
    conn: AsyncConnection, consumer: str, ids: Sequence[str]
) -> dict[str, datetime]:
    """When `consumer` applied each of these ids that it has applied (its dedupe record)."""
    if not ids:
        return {}
    stmt = sa.select(processed.c.envelope_id, processed.c.processed_at).where(
        processed.c.consumer == consumer, processed.c.envelope_id.in_(list(ids))
    )
    return {str(r.envelope_id): r.processed_at for r in (await conn.execute(stmt)).all()}


async def forget_processed(conn: AsyncConnection, consumer: str, envelope_id: str) -> None:
    """Undo `Store.mark_processed` for an effect that did not happen after all."""
    await conn.execute(
        processed.delete().where(
            processed.c.consumer == consumer, processed.c.envelope_id == envelope_id
        )
    )
