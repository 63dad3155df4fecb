"""Data access for the routing engine: every query it runs, on either engine.

Each function takes the caller's connection, so one record's effects commit
together. Rows that several router processes may change at once are locked
(`FOR UPDATE` on PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE).
Capacity is taken with a conditional UPDATE, so two processes can never push
an agent past it.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from router.store.schema import (
    agent_load,
    agents,
    assignments,
    conversations,
    customers,
    identities,
    incidents,
    link_suggestions,
    messages,
    outbox,
    praise,
    promises,
    timers,
)

# A result row (SQLAlchemy 2.1 types rows by their column tuple; these vary by query).
Row = Any
# Conversation references customers quote: no 0/O or 1/I to misread.
_REF_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"


# Where new customer and conversation ids and references come from: random in the
# daemon; `simulate` sets a counter (`seeded_ids`), so the same events give the same
# ids and its output can be compared byte for byte. A context variable, so a seeded
# run never leaks into another task.
_draw: ContextVar[Callable[[str], str] | None] = ContextVar("omnirouter_ids", default=None)


def new_id() -> str:
    draw = _draw.get()
    return draw("id") if draw is not None else secrets.token_hex(16)


def new_ref() -> str:
    draw = _draw.get()
    if draw is not None:
        digest = bytes.fromhex(draw("ref"))
        return "".join(_REF_ALPHABET[b % len(_REF_ALPHABET)] for b in digest[:7])
    return "".join(secrets.choice(_REF_ALPHABET) for _ in range(7))


@contextmanager
def seeded_ids(seed: str) -> Iterator[None]:
    """New ids and references within: the n-th draw is a hash of (seed, kind, n)."""
    counter = itertools.count()

    def draw(kind: str) -> str:
        return hashlib.sha256(f"{seed}:{kind}:{next(counter)}".encode()).hexdigest()[:32]

    token = _draw.set(draw)
    try:
        yield
    finally:
        _draw.reset(token)


def _insert(conn: AsyncConnection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _locked(conn: AsyncConnection, stmt: sa.Select[Any]) -> sa.Select[Any]:
    return stmt.with_for_update() if conn.dialect.name == "postgresql" else stmt


# --- customers and identities ---------------------------------------------------------


async def identity_owner(conn: AsyncConnection, kind: str, value: str) -> str | None:
    stmt = sa.select(identities.c.customer_id).where(
        identities.c.kind == kind, identities.c.value == value
    )
    owner = await conn.scalar(stmt)
    return None if owner is None else str(owner)


async def create_customer(conn: AsyncConnection, name: str | None, now: datetime) -> str:
    cid = new_id()
    await conn.execute(
        customers.insert().values(
            id=cid, display_name=name, tier="standard", tags=[], created_at=now, updated_at=now
        )
    )
    return cid


async def add_identity(
    conn: AsyncConnection, kind: str, value: str, customer_id: str, source: str, now: datetime
) -> str:
    """Link an identity to a customer unless it is linked already; return its owner."""
    stmt = (
        _insert(conn, identities)
        .values(kind=kind, value=value, customer_id=customer_id, source=source, created_at=now)
        .on_conflict_do_nothing(index_elements=["kind", "value"])
        .returning(identities.c.customer_id)
    )
    if (await conn.execute(stmt)).first() is not None:
        return customer_id
    owner = await identity_owner(conn, kind, value)
    assert owner is not None
    return owner


async def remove_identity(conn: AsyncConnection, kind: str, value: str, customer_id: str) -> bool:
    result = await conn.execute(
        identities.delete().where(
            identities.c.kind == kind,
            identities.c.value == value,
            identities.c.customer_id == customer_id,
        )
    )
    return bool(result.rowcount)


async def suggest_link(
    conn: AsyncConnection,
    kind: str,
    value: str,
    current: str,
    proposed: str,
    source: str,
    now: datetime,
) -> bool:
    stmt = (
        _insert(conn, link_suggestions)
        .values(
            kind=kind,
            value=value,
            current_customer_id=current,
            proposed_customer_id=proposed,
            source=source,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["kind", "value", "proposed_customer_id"])
        .returning(link_suggestions.c.id)
    )
    return (await conn.execute(stmt)).first() is not None


async def customer(conn: AsyncConnection, customer_id: str) -> Row:
    row = (await conn.execute(sa.select(customers).where(customers.c.id == customer_id))).one()
    return row


async def customer_identities(conn: AsyncConnection, customer_id: str) -> list[Row]:
    stmt = (
        sa.select(identities.c.kind, identities.c.value, identities.c.source)
        .where(identities.c.customer_id == customer_id)
        .order_by(identities.c.kind, identities.c.value)
    )
    return list((await conn.execute(stmt)).all())


async def pending_suggestions(conn: AsyncConnection, customer_id: str) -> list[Row]:
    stmt = sa.select(link_suggestions).where(
        link_suggestions.c.resolved_at.is_(None),
        sa.or_(
            link_suggestions.c.current_customer_id == customer_id,
            link_suggestions.c.proposed_customer_id == customer_id,
        ),
    )
    return list((await conn.execute(stmt)).all())


async def set_customer_language(conn: AsyncConnection, customer_id: str, language: str) -> None:
    await conn.execute(
        customers.update().where(customers.c.id == customer_id).values(language=language)
    )


# --- conversations and messages --------------------------------------------------------


async def conversation_by_thread(
    conn: AsyncConnection, channel: str, thread_key: str
) -> Row | None:
    stmt = sa.select(conversations).where(
        conversations.c.channel == channel, conversations.c.thread_key == thread_key
    )
    return (await conn.execute(_locked(conn, stmt))).first()


async def conversation(conn: AsyncConnection, conversation_id: str) -> Row | None:
    stmt = sa.select(conversations).where(conversations.c.id == conversation_id)
    return (await conn.execute(_locked(conn, stmt))).first()


async def reload(conn: AsyncConnection, conversation_id: str) -> Row:
    """A conversation known to exist, read again after a change."""
    row = await conversation(conn, conversation_id)
    assert row is not None, conversation_id
    return row


async def create_conversation(conn: AsyncConnection, values: Mapping[str, Any]) -> Row:
    """Insert a conversation with a fresh reference and return it (one statement, usually)."""
    for _ in range(5):  # a reference collision is rare (32**7 of them); draw again
        stmt = (
            _insert(conn, conversations)
            .values(id=new_id(), ref=new_ref(), **values)
            .on_conflict_do_nothing(index_elements=["ref"])
            .returning(*conversations.c)
        )
        row = (await conn.execute(stmt)).first()
        if row is not None:
            return row
    raise RuntimeError("no free conversation reference after 5 draws")


async def update_conversation(conn: AsyncConnection, conversation_id: str, **values: Any) -> Row:
    """Change a conversation and return it as it now is (one statement, no re-read)."""
    stmt = (
        conversations.update()
        .where(conversations.c.id == conversation_id)
        .values(**values)
        .returning(*conversations.c)
    )
    return (await conn.execute(stmt)).one()


async def transcript(conn: AsyncConnection, conversation_id: str, limit: int) -> list[Row]:
    """The conversation's latest `limit` messages, oldest first."""
    stmt = (
        sa.select(messages.c.id, messages.c.kind, messages.c.direction, messages.c.envelope)
        .where(messages.c.conversation_id == conversation_id)
        .order_by(messages.c.received_at.desc(), messages.c.stored_at.desc())
        .limit(limit)
    )
    return list(reversed((await conn.execute(stmt)).all()))


async def message_conversation(conn: AsyncConnection, message_id: str) -> str | None:
    """The conversation a stored message belongs to (None: not stored, or in none)."""
    stmt = sa.select(messages.c.conversation_id).where(messages.c.id == message_id)
    found = await conn.scalar(stmt)
    return None if found is None else str(found)


async def message_count(conn: AsyncConnection, conversation_id: str) -> int:
    stmt = (
        sa.select(sa.func.count())
        .select_from(messages)
        .where(messages.c.conversation_id == conversation_id)
    )
    return int((await conn.execute(stmt)).scalar_one())


async def recent_conversations(
    conn: AsyncConnection, customer_id: str, since: datetime, exclude: str, limit: int = 20
) -> list[Row]:
    stmt = (
        sa.select(conversations)
        .where(
            conversations.c.customer_id == customer_id,
            conversations.c.updated_at >= since,
            conversations.c.id != exclude,
        )
        .order_by(conversations.c.updated_at.desc())
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


async def last_texts(conn: AsyncConnection, conversation_ids: Sequence[str]) -> dict[str, str]:
    """The text of each conversation's latest message, in one query."""
    if not conversation_ids:
        return {}
    newest = (
        sa.func.row_number()
        .over(partition_by=messages.c.conversation_id, order_by=messages.c.received_at.desc())
        .label("newest")
    )
    ranked = (
        sa.select(messages.c.conversation_id, messages.c.text, newest)
        .where(messages.c.conversation_id.in_(list(conversation_ids)))
        .subquery()
    )
    stmt = sa.select(ranked.c.conversation_id, ranked.c.text).where(ranked.c.newest == 1)
    return {str(r.conversation_id): str(r.text or "") for r in (await conn.execute(stmt)).all()}


async def waiting(conn: AsyncConnection, limit: int) -> list[Row]:
    """Conversations waiting for an agent, best queue position (priority with aging) first."""
    stmt = (
        sa.select(conversations)
        .where(conversations.c.waiting_since.is_not(None), conversations.c.status == "open")
        # Best position first; ties broken by stable facts, never by random ids.
        .order_by(
            conversations.c.queue_rank,
            conversations.c.waiting_since,
            conversations.c.opened_at,
            conversations.c.channel,
            conversations.c.thread_key,
        )
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


# The queue's order (as `waiting` walks it); ties broken by stable facts.
_QUEUE_ORDER = (
    conversations.c.queue_rank,
    conversations.c.waiting_since,
    conversations.c.opened_at,
    conversations.c.channel,
    conversations.c.thread_key,
)


def _same_line(queue: str | None, channel_type: str) -> sa.ColumnElement[bool]:
    """Waiting, open, in `queue` on `channel_type`: the conversations one waits behind."""
    return sa.and_(
        conversations.c.waiting_since.is_not(None),
        conversations.c.status == "open",
        conversations.c.channel_type == channel_type,
        conversations.c.queue.is_(None) if queue is None else conversations.c.queue == queue,
    )


async def queue_position(conn: AsyncConnection, conv: Row) -> int:
    """1 + how many conversations wait ahead of `conv` in its queue on its channel type."""
    # Bound with the columns' own types (times stored as UTC, as the column stores them).
    mine = sa.tuple_(*(sa.literal(getattr(conv, c.name), c.type) for c in _QUEUE_ORDER))
    stmt = sa.select(sa.func.count()).where(
        _same_line(conv.queue, conv.channel_type), sa.tuple_(*_QUEUE_ORDER) < mine
    )
    return 1 + int(await conn.scalar(stmt) or 0)


async def waiting_in(
    conn: AsyncConnection, queue: str | None, channel_type: str, limit: int
) -> list[Row]:
    """The first `limit` conversations waiting in `queue` on `channel_type`, in queue order."""
    stmt = (
        sa.select(conversations)
        .where(_same_line(queue, channel_type))
        .order_by(*_QUEUE_ORDER)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


async def waiting_positions(conn: AsyncConnection) -> list[Row]:
    """Every waiting conversation's id, priority and wait start (to rank them again)."""
    stmt = sa.select(
        conversations.c.id, conversations.c.priority, conversations.c.waiting_since
    ).where(conversations.c.waiting_since.is_not(None))
    return list((await conn.execute(stmt)).all())


async def set_queue_ranks(conn: AsyncConnection, ranks: Mapping[str, float]) -> None:
    if not ranks:
        return
    stmt = (
        conversations.update()
        .where(conversations.c.id == sa.bindparam("conversation"))
        .values(queue_rank=sa.bindparam("rank"))
    )
    await conn.execute(stmt, [{"conversation": c, "rank": r} for c, r in ranks.items()])


async def waiting_count(conn: AsyncConnection) -> int:
    stmt = sa.select(sa.func.count()).where(conversations.c.waiting_since.is_not(None))
    return int(await conn.scalar(stmt) or 0)


# --- agents, load and assignments ----------------------------------------------------


async def ensure_agents(
    conn: AsyncConnection, initial_status: Mapping[str, str], now: datetime
) -> None:
    """Create rows for configured agents; an existing agent keeps its live status."""
    for agent_id, status in initial_status.items():
        await conn.execute(
            _insert(conn, agents)
            .values(id=agent_id, status=status, status_since=now)
            .on_conflict_do_nothing(index_elements=["id"])
        )


async def agent_rows(conn: AsyncConnection, ids: Iterable[str] | None = None) -> dict[str, Row]:
    stmt = sa.select(agents)
    if ids is not None:
        stmt = stmt.where(agents.c.id.in_(list(ids)))
    return {r.id: r for r in (await conn.execute(stmt)).all()}


async def loads(conn: AsyncConnection) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row in (await conn.execute(sa.select(agent_load))).all():
        out.setdefault(row.agent_id, {})[row.channel_type] = int(row.open_count)
    return out


async def set_agent_status(
    conn: AsyncConnection, agent_id: str, status: str, now: datetime
) -> bool:
    result = await conn.execute(
        agents.update()
        .where(agents.c.id == agent_id, agents.c.status != status)
        .values(status=status, status_since=now)
    )
    return bool(result.rowcount)


async def take_capacity(
    conn: AsyncConnection, agent_id: str, channel_type: str, capacity: int, now: datetime
) -> bool:
    """Count one more open conversation for an available agent, only within capacity.

    False when the agent has no row (`ensure_agents` makes them), is not available,
    or is at capacity; `router.routing.assign.refusal` tells which."""
    if capacity <= 0:
        return False
    # the router's in-process view of agents may be stale; the store decides
    available = sa.exists().where(agents.c.id == agent_id, agents.c.status == "available")
    first = sa.select(sa.literal(agent_id), sa.literal(channel_type), sa.literal(1))
    stmt = (
        _insert(conn, agent_load)
        .from_select(["agent_id", "channel_type", "open_count"], first.where(available))
        .on_conflict_do_update(
            index_elements=["agent_id", "channel_type"],
            set_={"open_count": agent_load.c.open_count + 1},
            where=sa.and_(agent_load.c.open_count < capacity, available),
        )
        .returning(agent_load.c.open_count)
    )
    if (await conn.execute(stmt)).first() is None:
        return False
    await conn.execute(agents.update().where(agents.c.id == agent_id).values(last_assigned_at=now))
    return True


async def release_capacity(conn: AsyncConnection, agent_id: str, channel_type: str) -> None:
    await conn.execute(
        agent_load.update()
        .where(
            agent_load.c.agent_id == agent_id,
            agent_load.c.channel_type == channel_type,
            agent_load.c.open_count > 0,
        )
        .values(open_count=agent_load.c.open_count - 1)
    )


async def start_assignment(
    conn: AsyncConnection,
    conversation_id: str,
    agent_id: str,
    reason: Mapping[str, Any],
    now: datetime,
) -> None:
    await conn.execute(
        assignments.insert().values(
            conversation_id=conversation_id,
            agent_id=agent_id,
            reason=dict(reason),
            assigned_at=now,
        )
    )


async def end_assignment(
    conn: AsyncConnection, conversation_id: str, why: str, now: datetime
) -> str | None:
    """End the active assignment; return the agent it was with (None: there was none)."""
    stmt = (
        assignments.update()
        .where(assignments.c.conversation_id == conversation_id, assignments.c.ended_at.is_(None))
        .values(ended_at=now, end_reason=why)
        .returning(assignments.c.agent_id)
    )
    agent = (await conn.execute(stmt)).scalar()
    return None if agent is None else str(agent)


async def assignment_count(conn: AsyncConnection, conversation_id: str) -> int:
    """How many assignments the conversation has had, ended ones included."""
    stmt = sa.select(sa.func.count()).where(assignments.c.conversation_id == conversation_id)
    return int((await conn.execute(stmt)).scalar() or 0)


async def accept_assignment(conn: AsyncConnection, conversation_id: str, now: datetime) -> None:
    await conn.execute(
        assignments.update()
        .where(
            assignments.c.conversation_id == conversation_id,
            assignments.c.ended_at.is_(None),
            assignments.c.accepted_at.is_(None),
        )
        .values(accepted_at=now)
    )


async def active_assignment(conn: AsyncConnection, conversation_id: str) -> Row | None:
    stmt = sa.select(assignments).where(
        assignments.c.conversation_id == conversation_id, assignments.c.ended_at.is_(None)
    )
    return (await conn.execute(stmt)).first()


async def transferred_away_by(conn: AsyncConnection, conversation_id: str) -> str | None:
    """The agent whose assignment of this conversation is the latest and ended by a
    transfer (`end_reason` "transferred ..."); None if the latest ended otherwise."""
    stmt = (
        sa.select(assignments.c.agent_id, assignments.c.end_reason)
        .where(assignments.c.conversation_id == conversation_id)
        .order_by(assignments.c.assigned_at.desc(), assignments.c.id.desc())
        .limit(1)
    )
    row = (await conn.execute(stmt)).first()
    if row is None or not str(row.end_reason or "").startswith("transferred"):
        return None
    return str(row.agent_id)


async def last_agent_of(conn: AsyncConnection, customer_id: str, since: datetime) -> str | None:
    """The agent most recently assigned to any conversation of this customer since `since`."""
    stmt = (
        sa.select(assignments.c.agent_id)
        .join(conversations, conversations.c.id == assignments.c.conversation_id)
        .where(conversations.c.customer_id == customer_id, assignments.c.assigned_at >= since)
        .order_by(assignments.c.assigned_at.desc(), assignments.c.id.desc())
        .limit(1)
    )
    agent = await conn.scalar(stmt)
    return None if agent is None else str(agent)


# --- timers, incidents and the outbox ----------------------------------------------


async def schedule_timer(
    conn: AsyncConnection,
    key: str,
    conversation_id: str | None,
    kind: str,
    due: datetime,
    payload: Mapping[str, Any],
    now: datetime,
) -> None:
    """Schedule once: a timer key already scheduled (even fired) is left alone."""
    await conn.execute(
        _insert(conn, timers)
        .values(
            key=key,
            conversation_id=conversation_id,
            kind=kind,
            due_at=due,
            payload=dict(payload),
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )


async def cancel_timers(
    conn: AsyncConnection, conversation_id: str, kinds: Sequence[str], now: datetime
) -> None:
    await conn.execute(
        timers.update()
        .where(
            timers.c.conversation_id == conversation_id,
            timers.c.kind.in_(list(kinds)),
            timers.c.fired_at.is_(None),
            timers.c.cancelled_at.is_(None),
        )
        .values(cancelled_at=now)
    )


async def cancel_timer_keys(conn: AsyncConnection, keys: Sequence[str], now: datetime) -> None:
    """Cancel the pending timers scheduled under `keys`."""
    await conn.execute(
        timers.update()
        .where(
            timers.c.key.in_(list(keys)),
            timers.c.fired_at.is_(None),
            timers.c.cancelled_at.is_(None),
        )
        .values(cancelled_at=now)
    )


async def claim_due_timers(conn: AsyncConnection, now: datetime, limit: int) -> list[Row]:
    """Pending timers due by `now`, marked fired; other processes skip the locked ones."""
    stmt = (
        sa.select(timers)
        .where(timers.c.fired_at.is_(None), timers.c.cancelled_at.is_(None), timers.c.due_at <= now)
        .order_by(timers.c.due_at, timers.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list((await conn.execute(stmt)).all())
    if rows:
        await conn.execute(
            timers.update().where(timers.c.id.in_([r.id for r in rows])).values(fired_at=now)
        )
    return rows


async def next_timer_due(conn: AsyncConnection) -> datetime | None:
    stmt = sa.select(sa.func.min(timers.c.due_at)).where(
        timers.c.fired_at.is_(None), timers.c.cancelled_at.is_(None)
    )
    value = await conn.scalar(stmt)
    return value if isinstance(value, datetime) else None


async def conversation_refs(
    conn: AsyncConnection, conversation_ids: Sequence[str]
) -> dict[str, str]:
    """The reference of each conversation (those without one are left out)."""
    if not conversation_ids:
        return {}
    c = conversations.c
    stmt = sa.select(c.id, c.ref).where(c.id.in_(list(conversation_ids)))
    return {row.id: row.ref for row in (await conn.execute(stmt)).all() if row.ref}


async def record_praise(
    conn: AsyncConnection,
    agent_id: str,
    conversation_id: str,
    source: str,
    words: str,
    now: datetime,
) -> None:
    await conn.execute(
        praise.insert().values(
            agent_id=agent_id,
            conversation_id=conversation_id,
            source=source,
            words=words,
            created_at=now,
        )
    )


async def praise_since(conn: AsyncConnection, since: datetime, until: datetime) -> list[Row]:
    """Praise recorded in [`since`, `until`), oldest first."""
    stmt = (
        sa.select(praise)
        .where(praise.c.created_at >= since, praise.c.created_at < until)
        .order_by(praise.c.created_at, praise.c.id)
    )
    return list((await conn.execute(stmt)).all())


async def record_incident(
    conn: AsyncConnection,
    kind: str,
    conversation_id: str | None,
    customer_id: str | None,
    cause: str,
    details: Mapping[str, Any],
    now: datetime,
) -> None:
    await conn.execute(
        incidents.insert().values(
            kind=kind,
            conversation_id=conversation_id,
            customer_id=customer_id,
            cause=cause,
            details=dict(details),
            created_at=now,
        )
    )


async def list_incidents(conn: AsyncConnection, limit: int, kind: str | None = None) -> list[Row]:
    stmt = sa.select(incidents).order_by(incidents.c.created_at.desc(), incidents.c.id.desc())
    if kind:
        stmt = stmt.where(incidents.c.kind == kind)
    return list((await conn.execute(stmt.limit(limit))).all())


# --- promises --------------------------------------------------------------------------


async def add_promise(
    conn: AsyncConnection,
    conversation_id: str,
    made_by: str,
    text: str,
    due: datetime,
    now: datetime,
) -> Row:
    result = await conn.execute(
        promises.insert()
        .values(
            conversation_id=conversation_id,
            made_by=made_by,
            text=text,
            due_at=due,
            made_at=now,
            state="open",
        )
        .returning(*promises.c)
    )
    return result.one()


async def promise(conn: AsyncConnection, promise_id: int) -> Row | None:
    stmt = _locked(conn, sa.select(promises).where(promises.c.id == promise_id))
    return (await conn.execute(stmt)).one_or_none()


async def promises_of(
    conn: AsyncConnection, conversation_id: str, *, open_only: bool = False, limit: int = 100
) -> list[Row]:
    """The conversation's promises, the latest `limit`, oldest first."""
    stmt = sa.select(promises).where(promises.c.conversation_id == conversation_id)
    if open_only:
        stmt = stmt.where(promises.c.state == "open")
    stmt = stmt.order_by(promises.c.id.desc()).limit(limit)
    return list(reversed((await conn.execute(stmt)).all()))


async def close_promise(
    conn: AsyncConnection, promise_id: int, state: str, by: str | None, now: datetime
) -> bool:
    """Close an open promise as `kept` or `broken`; False when it was no longer open."""
    result = await conn.execute(
        promises.update()
        .where(promises.c.id == promise_id, promises.c.state == "open")
        .values(state=state, closed_at=now, closed_by=by)
    )
    return result.rowcount == 1


async def agent_wrote_since(conn: AsyncConnection, conversation_id: str, since: datetime) -> bool:
    """Whether an agent's reply went to the conversation's customer at or after `since`."""
    stmt = (
        sa.select(messages.c.id)
        .where(
            messages.c.conversation_id == conversation_id,
            messages.c.kind == "reply",
            messages.c.direction == "out",
            messages.c.sender_role == "agent",
            messages.c.received_at >= since,
        )
        .limit(1)
    )
    return await conn.scalar(stmt) is not None


async def add_outbox(
    conn: AsyncConnection, topic: str, key: bytes, value: bytes, now: datetime
) -> int:
    """Queue a record for publishing after the commit; its row id."""
    result = await conn.execute(
        outbox.insert().values(topic=topic, key=key, value=value, created_at=now)
    )
    row_id = result.inserted_primary_key
    assert row_id is not None
    return int(row_id[0])


async def amend_outbox(conn: AsyncConnection, row_id: int, value: bytes) -> None:
    """Rewrite a record queued in this same transaction (never one already published)."""
    await conn.execute(
        outbox.update().where(outbox.c.id == row_id, outbox.c.sent_at.is_(None)).values(value=value)
    )


async def claim_unsent(
    conn: AsyncConnection,
    limit: int,
    now: datetime,
    lease_until: datetime,
    *,
    topic: str | None = None,
) -> list[Row]:
    """The oldest unsent rows (of `topic`, if given) nobody holds a live lease on, leased
    to the caller."""
    free = sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now)
    stmt = (
        sa.select(outbox).where(outbox.c.sent_at.is_(None), free).order_by(outbox.c.id).limit(limit)
    )
    if topic is not None:
        stmt = stmt.where(outbox.c.topic == topic)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list((await conn.execute(stmt)).all())
    if rows:
        await conn.execute(
            outbox.update()
            .where(outbox.c.id.in_([r.id for r in rows]))
            .values(claimed_until=lease_until)
        )
    return rows


async def unsent_count(conn: AsyncConnection) -> int:
    stmt = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
    return int((await conn.execute(stmt)).scalar_one())


async def mark_sent(conn: AsyncConnection, ids: Sequence[int], now: datetime) -> None:
    await conn.execute(
        outbox.update().where(outbox.c.id.in_(list(ids))).values(sent_at=now, claimed_until=None)
    )


async def mark_dead(conn: AsyncConnection, row_id: int, reason: str, now: datetime) -> None:
    """The row can never be published: it went to the DLQ; keep it, and why, for review."""
    await conn.execute(
        outbox.update()
        .where(outbox.c.id == row_id)
        .values(sent_at=now, claimed_until=None, dead_reason=reason)
    )


async def release_all_claims(conn: AsyncConnection) -> int:
    """Forget every lease on unsent rows; return how many there were."""
    result = await conn.execute(
        outbox.update()
        .where(outbox.c.sent_at.is_(None), outbox.c.claimed_until.is_not(None))
        .values(claimed_until=None)
    )
    return int(result.rowcount or 0)


async def release_claims(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Give rows back (not published this time) so the next flush takes them at once."""
    await conn.execute(
        outbox.update()
        .where(outbox.c.id.in_(list(ids)), outbox.c.sent_at.is_(None))
        .values(claimed_until=None)
    )


async def prune_outbox(conn: AsyncConnection, sent_before: datetime, limit: int) -> int:
    """Delete published rows older than `sent_before` (at most `limit`); return how many.
    Dead-lettered rows are kept: they are what an operator reviews or replays."""
    oldest = (
        sa.select(outbox.c.id)
        .where(
            outbox.c.sent_at.is_not(None),
            outbox.c.sent_at < sent_before,
            outbox.c.dead_reason.is_(None),
        )
        .order_by(outbox.c.id)
        .limit(limit)
    )
    result = await conn.execute(outbox.delete().where(outbox.c.id.in_(oldest.scalar_subquery())))
    return int(result.rowcount or 0)
