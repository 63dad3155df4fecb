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
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from router.store.conn import Conn, execute_together, send, send_kept
from router.store.schema import (
    UTCDateTime,
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
    utcnow,
)
from router.store.statements import built
from router.store.statements import insert as dialect_insert
from router.store.store import checkpoint_query, checkpoint_select

# A result row (SQLAlchemy 2.1 types rows by their column tuple; these vary by query).
Row = Any
RECENT_LIMIT = 20  # other conversations a delivery shows, at most
# Conversation references customers quote: no 0/O or 1/I to misread.
_REF_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
REF_LENGTH = 7
_REFS = len(_REF_ALPHABET) ** REF_LENGTH  # references there are


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
        return "".join(_REF_ALPHABET[b % len(_REF_ALPHABET)] for b in digest[:REF_LENGTH])
    # One draw for the whole reference, read as its digits in the alphabet's base (each
    # `secrets.choice` would be a draw of its own from the system's random source).
    number = secrets.randbelow(_REFS)
    symbols = []
    for _ in range(REF_LENGTH):
        number, at = divmod(number, len(_REF_ALPHABET))
        symbols.append(_REF_ALPHABET[at])
    return "".join(symbols)


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


def _insert(conn: Conn, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    return dialect_insert(conn.dialect.name, table)


def _locked(conn: Conn, stmt: sa.Select[Any]) -> sa.Select[Any]:
    return _locked_on(conn.dialect.name, stmt)


def _locked_on(dialect: str, stmt: sa.Select[Any]) -> sa.Select[Any]:
    return stmt.with_for_update() if dialect == "postgresql" else stmt


# --- customers and identities ---------------------------------------------------------


def _identity_owner_select() -> sa.Select[Any]:
    return sa.select(identities.c.customer_id).where(
        identities.c.kind == sa.bindparam("b_kind"), identities.c.value == sa.bindparam("b_value")
    )


@built
def _identity_owner(_: str) -> sa.Select[Any]:
    return _identity_owner_select()


async def identity_owner(conn: Conn, kind: str, value: str) -> str | None:
    owner = await conn.scalar(_identity_owner(conn), {"b_kind": kind, "b_value": value})
    return None if owner is None else str(owner)


@built
def _create_customer(_: str) -> sa.Insert:
    return customers.insert()


class Customer(NamedTuple):
    """A customer's row (the columns of `customers`), as a new one is written."""

    id: str
    display_name: str | None
    tier: str
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    language: str | None


class IdentityRow(NamedTuple):
    """An identity as a customer's identities are read (`_customer_identities`)."""

    kind: str
    value: str
    source: str


async def create_customer(conn: Conn, name: str | None, now: datetime) -> Customer:
    """A new customer; their row as written, which is what the store holds of them."""
    row = Customer(new_id(), name, "standard", [], now, now, None)
    await send(conn, _create_customer(conn), row._asdict())
    return row


@built
def _add_identity(dialect: str) -> Any:
    return (
        dialect_insert(dialect, identities)
        .on_conflict_do_nothing(index_elements=["kind", "value"])
        .returning(identities.c.customer_id)
    )


async def add_identity(
    conn: Conn, kind: str, value: str, customer_id: str, source: str, now: datetime
) -> str:
    """Link an identity to a customer unless it is linked already; return its owner."""
    row = {
        "kind": kind,
        "value": value,
        "customer_id": customer_id,
        "source": source,
        "created_at": now,
    }
    if (await conn.execute(_add_identity(conn), row)).first() is not None:
        return customer_id
    owner = await identity_owner(conn, kind, value)
    assert owner is not None
    return owner


async def remove_identity(conn: Conn, kind: str, value: str, customer_id: str) -> bool:
    result = await conn.execute(
        identities.delete().where(
            identities.c.kind == kind,
            identities.c.value == value,
            identities.c.customer_id == customer_id,
        )
    )
    return bool(result.rowcount)


async def suggest_link(
    conn: Conn,
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


@built
def _customer(_: str) -> sa.Select[Any]:
    return sa.select(customers).where(customers.c.id == sa.bindparam("b_id"))


async def customer(conn: Conn, customer_id: str) -> Row:
    return (await conn.execute(_customer(conn), {"b_id": customer_id})).one()


@built
def _customer_identities(_: str) -> sa.Select[Any]:
    return (
        sa.select(identities.c.kind, identities.c.value, identities.c.source)
        .where(identities.c.customer_id == sa.bindparam("b_id"))
        .order_by(identities.c.kind, identities.c.value)
    )


@built
def _pending_suggestions(_: str) -> sa.Select[Any]:
    return sa.select(link_suggestions).where(
        link_suggestions.c.resolved_at.is_(None),
        sa.or_(
            link_suggestions.c.current_customer_id == sa.bindparam("b_id"),
            link_suggestions.c.proposed_customer_id == sa.bindparam("b_id"),
        ),
    )


@built
def _update_customer(_: str) -> sa.Update:
    return customers.update().where(customers.c.id == sa.bindparam("b_id"))


async def set_customer_language(conn: Conn, customer_id: str, language: str, now: datetime) -> None:
    values = {"b_id": customer_id, "language": language, "updated_at": now}
    await send(conn, _update_customer(conn), values)


# --- conversations and messages --------------------------------------------------------


def _in_thread() -> sa.ColumnElement[bool]:
    """The conversation of the thread `b_channel`, `b_thread`."""
    return sa.and_(
        conversations.c.channel == sa.bindparam("b_channel"),
        conversations.c.thread_key == sa.bindparam("b_thread"),
    )


@built
def _conversation_by_thread(dialect: str) -> sa.Select[Any]:
    return _locked_on(dialect, sa.select(conversations).where(_in_thread()))


async def conversation_by_thread(conn: Conn, channel: str, thread_key: str) -> Row | None:
    params = {"b_channel": channel, "b_thread": thread_key}
    return (await conn.execute(_conversation_by_thread(conn), params)).first()


@dataclass(frozen=True, slots=True)
class Arrival:
    """What a customer's message first needs from the store."""

    owner: str | None  # the customer who owns the sender's identity
    alias_of: str | None  # the conversation whose answer thread the message is in
    by_thread: Row | None  # the conversation of the message's own thread (locked)


async def arrival_reads(
    conn: Conn,
    sender: tuple[str, str],
    alias: tuple[str, str],
    channel: str,
    thread_key: str,
) -> Arrival:
    """`identity_owner` of the `sender` (kind, value), the checkpoint `alias` (name,
    key) and `conversation_by_thread`, read together: one round trip on PostgreSQL, one
    statement on SQLite (where a statement costs its wrapping more than its reading)."""
    if conn.dialect.name == "sqlite":
        params = {
            "b_kind": sender[0],
            "b_value": sender[1],
            "b_name": alias[0],
            "b_key": alias[1],
            "b_channel": channel,
            "b_thread": thread_key,
        }
        row = (await conn.execute(_arrival(conn), params)).first()
        assert row is not None  # the join keeps its one row when the thread has none
        found, target, thread = row[0], row[1], row[2:]
        by_thread = None if thread[_CONVERSATION_ID] is None else _Conversation._make(thread)
    else:
        owner, alias_of, read = await execute_together(
            conn,
            [
                (_identity_owner(conn), {"b_kind": sender[0], "b_value": sender[1]}),
                (checkpoint_query(conn), {"b_name": alias[0], "b_key": alias[1]}),
                (_conversation_by_thread(conn), {"b_channel": channel, "b_thread": thread_key}),
            ],
        )
        found, target, by_thread = owner.scalar(), alias_of.scalar(), read.first()
    return Arrival(
        owner=None if found is None else str(found),
        alias_of=None if target is None else str(target),
        by_thread=by_thread,
    )


# A conversation's row as `sa.select(conversations)` gives it, for the arrival's own.
_Conversation: Any = namedtuple("Row", [c.key for c in conversations.c], rename=True)  # type: ignore[misc]
_CONVERSATION_ID = _Conversation._fields.index("id")


@built
def _arrival(_: str) -> sa.Select[Any]:
    """SQLite: the three arrival reads as one statement. The sender's owner and the alias
    are scalar subqueries beside the thread's conversation, which is joined to a one-row
    table so the row is there (its columns NULL) when the thread has no conversation."""
    one = sa.select(sa.literal_column("1").label("one")).subquery("one")
    return sa.select(
        _identity_owner_select().scalar_subquery().label("owner"),
        checkpoint_select().scalar_subquery().label("alias_of"),
        *conversations.c,
    ).select_from(one.outerjoin(conversations, _in_thread()))


@built
def _conversation(dialect: str) -> sa.Select[Any]:
    return _locked_on(
        dialect, sa.select(conversations).where(conversations.c.id == sa.bindparam("b_id"))
    )


async def conversation(conn: Conn, conversation_id: str) -> Row | None:
    return (await conn.execute(_conversation(conn), {"b_id": conversation_id})).first()


async def reload(conn: Conn, conversation_id: str) -> Row:
    """A conversation known to exist, read again after a change."""
    row = await conversation(conn, conversation_id)
    assert row is not None, conversation_id
    return row


async def create_conversation(conn: Conn, values: Mapping[str, Any]) -> Row:
    """Insert a conversation with a fresh reference and return it (one statement, usually)."""
    for _ in range(5):  # a reference collision is rare (32**7 of them); draw again
        row = {"id": new_id(), "ref": new_ref(), **values}
        created = (await conn.execute(_create_conversation(conn), row)).first()
        if created is not None:
            return created
    raise RuntimeError("no free conversation reference after 5 draws")


@built
def _create_conversation(dialect: str) -> Any:
    return (
        dialect_insert(dialect, conversations)
        .on_conflict_do_nothing(index_elements=["ref"])
        .returning(*conversations.c)
    )


@built
def _update_conversation(_: str) -> sa.Update:
    return (
        conversations.update()
        .where(conversations.c.id == sa.bindparam("b_id"))
        .returning(*conversations.c)
    )


async def update_conversation(conn: Conn, conversation_id: str, **values: Any) -> Row:
    """Change a conversation and return it as it now is (one statement, no re-read)."""
    params = {"b_id": conversation_id, **values}
    return (await conn.execute(_update_conversation(conn), params)).one()


async def change_held_conversation(conn: Conn, conv: Row, **values: Any) -> Row:
    """`update_conversation` for a conversation the unit holds: read locked in it (or on
    SQLite, whose writer holds the whole store), so nobody else changes it before the
    unit commits. It comes back as `conv` with `values` as the store keeps them (JSON as
    written and read back, times in UTC), made here, and the UPDATE is sent ahead
    (`send`): on PostgreSQL it needs no round trip of its own."""
    if not hasattr(conv, "_replace"):  # not a row the lean path read: ask the store
        return await update_conversation(conn, conv.id, **values)
    values.setdefault("updated_at", utcnow())  # as the column's onupdate would set it
    await send(conn, _set_conversation(conn), {"b_id": conv.id, **values})
    changed: Row = conv._replace(**{k: _as_stored(k, v) for k, v in values.items()})
    return changed


def _as_stored(column: str, value: Any) -> Any:
    """`value` of a conversation's `column` as reading it back gives it."""
    kind = conversations.c[column].type
    if value is None:
        return None
    if isinstance(kind, sa.JSON):
        return orjson.loads(orjson.dumps(value))
    if isinstance(kind, UTCDateTime):  # a naive one was refused when the UPDATE was bound
        return value.astimezone(UTC)
    return value


@built
def _set_conversation(_: str) -> sa.Update:
    return conversations.update().where(conversations.c.id == sa.bindparam("b_id"))


@built
def _transcript(_: str) -> sa.Select[Any]:
    return (
        sa.select(messages.c.id, messages.c.kind, messages.c.direction, messages.c.envelope)
        .where(messages.c.conversation_id == sa.bindparam("b_id"))
        .order_by(messages.c.received_at.desc(), messages.c.stored_at.desc())
        .limit(sa.bindparam("b_limit"))
    )


async def transcript(conn: Conn, conversation_id: str, limit: int) -> list[Row]:
    """The conversation's latest `limit` messages, oldest first."""
    params = {"b_id": conversation_id, "b_limit": limit}
    return list(reversed((await conn.execute(_transcript(conn), params)).all()))


async def message_conversation(conn: Conn, message_id: str) -> str | None:
    """The conversation a stored message belongs to (None: not stored, or in none)."""
    stmt = sa.select(messages.c.conversation_id).where(messages.c.id == message_id)
    found = await conn.scalar(stmt)
    return None if found is None else str(found)


async def message_count(conn: Conn, conversation_id: str) -> int:
    stmt = (
        sa.select(sa.func.count())
        .select_from(messages)
        .where(messages.c.conversation_id == conversation_id)
    )
    return int((await conn.execute(stmt)).scalar_one())


@built
def _recent_conversations(_: str) -> sa.Select[Any]:
    return (
        sa.select(conversations)
        .where(
            conversations.c.customer_id == sa.bindparam("b_customer"),
            conversations.c.updated_at >= sa.bindparam("b_since"),
            conversations.c.id != sa.bindparam("b_exclude"),
        )
        .order_by(conversations.c.updated_at.desc())
        .limit(sa.bindparam("b_limit"))
    )


async def recent_conversations(
    conn: Conn, customer_id: str, since: datetime, exclude: str, limit: int = RECENT_LIMIT
) -> list[Row]:
    params = _recent_params(customer_id, since, exclude, limit)
    return list((await conn.execute(_recent_conversations(conn), params)).all())


def _recent_params(customer_id: str, since: datetime, exclude: str, limit: int) -> dict[str, Any]:
    return {"b_customer": customer_id, "b_since": since, "b_exclude": exclude, "b_limit": limit}


@dataclass(frozen=True, slots=True)
class DeliveryReads:
    """What a delivery to an agent shows, as stored."""

    customer: Row
    identities: list[Row]
    recent: list[Row]  # the customer's other conversations since then, the latest first
    transcript: list[Row]  # the latest messages, oldest first
    suggestions: list[Row]  # pending link suggestions that name the customer
    promises: list[Row]  # the latest, oldest first


@dataclass(frozen=True, slots=True)
class Known:
    """What a delivery's caller knows the store holds, having written all of it in this
    transaction (a customer it created): not read again. None: read it."""

    customer: Row
    identities: list[Row] | None
    suggestions: list[Row] | None
    recent: list[Row] | None


async def delivery_reads(
    conn: Conn,
    customer_id: str,
    conversation_id: str,
    *,
    since: datetime,
    transcript_limit: int,
    promises_limit: int,
    known: Known | None = None,
) -> DeliveryReads:
    """A delivery's reads, run together: one round trip on PostgreSQL instead of six (see
    `execute_together`); each is the query of the function of its name. With
    `promises_limit` 0 the promises are not read (a conversation the unit opened has none);
    what is `known` is not read either."""
    customer_id_param = {"b_id": customer_id}
    reads: dict[str, tuple[Any, Mapping[str, Any]]] = {
        "transcript": (_transcript(conn), {"b_id": conversation_id, "b_limit": transcript_limit})
    }
    if known is None:
        reads["customer"] = (_customer(conn), customer_id_param)
    if getattr(known, "identities", None) is None:
        reads["identities"] = (_customer_identities(conn), customer_id_param)
    if getattr(known, "recent", None) is None:
        params = _recent_params(customer_id, since, conversation_id, RECENT_LIMIT)
        reads["recent"] = (_recent_conversations(conn), params)
    if getattr(known, "suggestions", None) is None:
        reads["suggestions"] = (_pending_suggestions(conn), customer_id_param)
    if promises_limit:
        reads["promises"] = (_promises(conn), {"b_id": conversation_id, "b_limit": promises_limit})
    found = dict(zip(reads, await execute_together(conn, list(reads.values())), strict=True))

    def rows(name: str) -> list[Row]:
        given = getattr(known, name, None)  # None: read (nothing is known)
        return list(found[name].all()) if given is None else list(given)

    return DeliveryReads(
        customer=found["customer"].one() if known is None else known.customer,
        identities=rows("identities"),
        recent=rows("recent"),
        transcript=list(reversed(found["transcript"].all())),
        suggestions=rows("suggestions"),
        promises=list(reversed(found["promises"].all())) if promises_limit else [],
    )


async def last_texts(conn: Conn, conversation_ids: Sequence[str]) -> dict[str, str]:
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


async def waiting(conn: Conn, limit: int) -> list[Row]:
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


async def queue_position(conn: Conn, conv: Row) -> int:
    """1 + how many conversations wait ahead of `conv` in its queue on its channel type."""
    # Bound with the columns' own types (times stored as UTC, as the column stores them).
    mine = sa.tuple_(*(sa.literal(getattr(conv, c.name), c.type) for c in _QUEUE_ORDER))
    stmt = sa.select(sa.func.count()).where(
        _same_line(conv.queue, conv.channel_type), sa.tuple_(*_QUEUE_ORDER) < mine
    )
    return 1 + int(await conn.scalar(stmt) or 0)


async def waiting_in(conn: Conn, queue: str | None, channel_type: str, limit: int) -> list[Row]:
    """The first `limit` conversations waiting in `queue` on `channel_type`, in queue order."""
    stmt = (
        sa.select(conversations)
        .where(_same_line(queue, channel_type))
        .order_by(*_QUEUE_ORDER)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


async def waiting_positions(conn: Conn) -> list[Row]:
    """Every waiting conversation's id, priority and wait start (to rank them again)."""
    stmt = sa.select(
        conversations.c.id, conversations.c.priority, conversations.c.waiting_since
    ).where(conversations.c.waiting_since.is_not(None))
    return list((await conn.execute(stmt)).all())


async def set_queue_ranks(conn: Conn, ranks: Mapping[str, float]) -> None:
    if not ranks:
        return
    stmt = (
        conversations.update()
        .where(conversations.c.id == sa.bindparam("conversation"))
        .values(queue_rank=sa.bindparam("rank"))
    )
    await conn.execute(stmt, [{"conversation": c, "rank": r} for c, r in ranks.items()])


async def waiting_count(conn: Conn) -> int:
    stmt = sa.select(sa.func.count()).where(conversations.c.waiting_since.is_not(None))
    return int(await conn.scalar(stmt) or 0)


# --- agents, load and assignments ----------------------------------------------------


async def ensure_agents(conn: Conn, initial_status: Mapping[str, str], now: datetime) -> None:
    """Create rows for configured agents; an existing agent keeps its live status."""
    for agent_id, status in initial_status.items():
        await conn.execute(
            _insert(conn, agents)
            .values(id=agent_id, status=status, status_since=now)
            .on_conflict_do_nothing(index_elements=["id"])
        )


async def agent_rows(conn: Conn, ids: Iterable[str] | None = None) -> dict[str, Row]:
    stmt = sa.select(agents)
    if ids is not None:
        stmt = stmt.where(agents.c.id.in_(list(ids)))
    return {r.id: r for r in (await conn.execute(stmt)).all()}


async def loads(conn: Conn) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row in (await conn.execute(sa.select(agent_load))).all():
        out.setdefault(row.agent_id, {})[row.channel_type] = int(row.open_count)
    return out


async def set_agent_status(conn: Conn, agent_id: str, status: str, now: datetime) -> bool:
    result = await conn.execute(
        agents.update()
        .where(agents.c.id == agent_id, agents.c.status != status)
        .values(status=status, status_since=now)
    )
    return bool(result.rowcount)


async def take_capacity(
    conn: Conn, agent_id: str, channel_type: str, capacity: int, now: datetime
) -> bool:
    """Count one more open conversation for an available agent, only within capacity.

    False when the agent has no row (`ensure_agents` makes them), is not available,
    or is at capacity; `router.routing.assign.refusal` tells which."""
    if capacity <= 0:
        return False
    params = {"b_agent": agent_id, "b_type": channel_type, "b_capacity": capacity}
    if (await conn.execute(_take_capacity(conn), params)).first() is None:
        return False
    await send(conn, _update_agent(conn), {"b_id": agent_id, "last_assigned_at": now})
    return True


@built
def _take_capacity(dialect: str) -> Any:
    # the router's in-process view of agents may be stale; the store decides
    agent = sa.bindparam("b_agent", type_=sa.String)
    available = sa.exists().where(agents.c.id == agent, agents.c.status == "available")
    first = sa.select(agent, sa.bindparam("b_type", type_=sa.String), sa.literal(1))
    return (
        dialect_insert(dialect, agent_load)
        .from_select(["agent_id", "channel_type", "open_count"], first.where(available))
        .on_conflict_do_update(
            index_elements=["agent_id", "channel_type"],
            set_={"open_count": agent_load.c.open_count + 1},
            where=sa.and_(
                agent_load.c.open_count < sa.bindparam("b_capacity", type_=sa.Integer), available
            ),
        )
        .returning(agent_load.c.open_count)
    )


@built
def _update_agent(_: str) -> sa.Update:
    return agents.update().where(agents.c.id == sa.bindparam("b_id"))


async def release_capacity(conn: Conn, agent_id: str, channel_type: str) -> None:
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
    conn: Conn,
    conversation_id: str,
    agent_id: str,
    reason: Mapping[str, Any],
    now: datetime,
) -> None:
    """A new active assignment. The routing calls it through `Unit.start_assignment`,
    which notes it (see `Unit.unassigned`)."""
    row = {
        "conversation_id": conversation_id,
        "agent_id": agent_id,
        "reason": dict(reason),
        "assigned_at": now,
    }
    await send(conn, _start_assignment(conn), row)


@built
def _start_assignment(_: str) -> sa.Insert:
    return assignments.insert()


async def end_assignment(conn: Conn, conversation_id: str, why: str, now: datetime) -> str | None:
    """End the active assignment; return the agent it was with (None: there was none)."""
    stmt = (
        assignments.update()
        .where(assignments.c.conversation_id == conversation_id, assignments.c.ended_at.is_(None))
        .values(ended_at=now, end_reason=why)
        .returning(assignments.c.agent_id)
    )
    agent = (await conn.execute(stmt)).scalar()
    return None if agent is None else str(agent)


async def assignment_count(conn: Conn, conversation_id: str) -> int:
    """How many assignments the conversation has had, ended ones included."""
    stmt = sa.select(sa.func.count()).where(assignments.c.conversation_id == conversation_id)
    return int((await conn.execute(stmt)).scalar() or 0)


async def accept_assignment(conn: Conn, conversation_id: str, now: datetime) -> None:
    await conn.execute(
        assignments.update()
        .where(
            assignments.c.conversation_id == conversation_id,
            assignments.c.ended_at.is_(None),
            assignments.c.accepted_at.is_(None),
        )
        .values(accepted_at=now)
    )


async def active_assignment(conn: Conn, conversation_id: str) -> Row | None:
    stmt = sa.select(assignments).where(
        assignments.c.conversation_id == conversation_id, assignments.c.ended_at.is_(None)
    )
    return (await conn.execute(stmt)).first()


async def transferred_away_by(conn: Conn, conversation_id: str) -> str | None:
    """The agent whose assignment of this conversation is the latest and ended by a
    transfer (`end_reason` "transferred ..."); None if the latest ended otherwise."""
    row = (await conn.execute(_latest_assignment(conn), {"b_id": conversation_id})).first()
    if row is None or not str(row.end_reason or "").startswith("transferred"):
        return None
    return str(row.agent_id)


@built
def _latest_assignment(_: str) -> sa.Select[Any]:
    return (
        sa.select(assignments.c.agent_id, assignments.c.end_reason)
        .where(assignments.c.conversation_id == sa.bindparam("b_id"))
        .order_by(assignments.c.assigned_at.desc(), assignments.c.id.desc())
        .limit(1)
    )


async def last_agent_of(conn: Conn, customer_id: str, since: datetime) -> str | None:
    """The agent most recently assigned to any conversation of this customer since `since`."""
    params = {"b_customer": customer_id, "b_since": since}
    agent = await conn.scalar(_last_agent_of(conn), params)
    return None if agent is None else str(agent)


@built
def _last_agent_of(_: str) -> sa.Select[Any]:
    return (
        sa.select(assignments.c.agent_id)
        .join(conversations, conversations.c.id == assignments.c.conversation_id)
        .where(
            conversations.c.customer_id == sa.bindparam("b_customer"),
            assignments.c.assigned_at >= sa.bindparam("b_since"),
        )
        .order_by(assignments.c.assigned_at.desc(), assignments.c.id.desc())
        .limit(1)
    )


# --- timers, incidents and the outbox ----------------------------------------------


async def schedule_timer(
    conn: Conn,
    key: str,
    conversation_id: str | None,
    kind: str,
    due: datetime,
    payload: Mapping[str, Any],
    now: datetime,
) -> None:
    """Schedule once: a timer key already scheduled (even fired) is left alone."""
    row = {
        "key": key,
        "conversation_id": conversation_id,
        "kind": kind,
        "due_at": due,
        "payload": dict(payload),
        "created_at": now,
    }
    await send(conn, _schedule_timer(conn), row)


@built
def _schedule_timer(dialect: str) -> Any:
    return dialect_insert(dialect, timers).on_conflict_do_nothing(index_elements=["key"])


async def cancel_timers(
    conn: Conn, conversation_id: str, kinds: Sequence[str], now: datetime
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


async def cancel_timer_keys(conn: Conn, keys: Sequence[str], now: datetime) -> None:
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


async def claim_due_timers(conn: Conn, now: datetime, limit: int) -> list[Row]:
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


async def next_timer_due(conn: Conn) -> datetime | None:
    stmt = sa.select(sa.func.min(timers.c.due_at)).where(
        timers.c.fired_at.is_(None), timers.c.cancelled_at.is_(None)
    )
    value = await conn.scalar(stmt)
    return value if isinstance(value, datetime) else None


async def conversation_refs(conn: Conn, conversation_ids: Sequence[str]) -> dict[str, str]:
    """The reference of each conversation (those without one are left out)."""
    if not conversation_ids:
        return {}
    c = conversations.c
    stmt = sa.select(c.id, c.ref).where(c.id.in_(list(conversation_ids)))
    return {row.id: row.ref for row in (await conn.execute(stmt)).all() if row.ref}


async def record_praise(
    conn: Conn,
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


async def praise_since(conn: Conn, since: datetime, until: datetime) -> list[Row]:
    """Praise recorded in [`since`, `until`), oldest first."""
    stmt = (
        sa.select(praise)
        .where(praise.c.created_at >= since, praise.c.created_at < until)
        .order_by(praise.c.created_at, praise.c.id)
    )
    return list((await conn.execute(stmt)).all())


async def record_incident(
    conn: Conn,
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


async def list_incidents(conn: Conn, limit: int, kind: str | None = None) -> list[Row]:
    stmt = sa.select(incidents).order_by(incidents.c.created_at.desc(), incidents.c.id.desc())
    if kind:
        stmt = stmt.where(incidents.c.kind == kind)
    return list((await conn.execute(stmt.limit(limit))).all())


# --- promises --------------------------------------------------------------------------


async def add_promise(
    conn: Conn,
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


async def promise(conn: Conn, promise_id: int) -> Row | None:
    stmt = _locked(conn, sa.select(promises).where(promises.c.id == promise_id))
    return (await conn.execute(stmt)).one_or_none()


async def promises_of(
    conn: Conn, conversation_id: str, *, open_only: bool = False, limit: int = 100
) -> list[Row]:
    """The conversation's promises, the latest `limit`, oldest first."""
    stmt = (_open_promises if open_only else _promises)(conn)
    params = {"b_id": conversation_id, "b_limit": limit}
    return list(reversed((await conn.execute(stmt, params)).all()))


@built
def _promises(_: str) -> sa.Select[Any]:
    return (
        sa.select(promises)
        .where(promises.c.conversation_id == sa.bindparam("b_id"))
        .order_by(promises.c.id.desc())
        .limit(sa.bindparam("b_limit"))
    )


@built
def _open_promises(_: str) -> sa.Select[Any]:
    return (
        sa.select(promises)
        .where(promises.c.conversation_id == sa.bindparam("b_id"), promises.c.state == "open")
        .order_by(promises.c.id.desc())
        .limit(sa.bindparam("b_limit"))
    )


async def close_promise(
    conn: Conn, promise_id: int, state: str, by: str | None, now: datetime
) -> bool:
    """Close an open promise as `kept` or `broken`; False when it was no longer open."""
    result = await conn.execute(
        promises.update()
        .where(promises.c.id == promise_id, promises.c.state == "open")
        .values(state=state, closed_at=now, closed_by=by)
    )
    return result.rowcount == 1


async def agent_wrote_since(conn: Conn, conversation_id: str, since: datetime) -> bool:
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


@dataclass(frozen=True, slots=True)
class Output:
    """A record a unit of work queued in the outbox, kept to publish from memory."""

    id: int
    topic: str
    key: bytes
    value: bytes


@dataclass(slots=True)
class Handover:
    """The rows a unit of work queued (`keeping_outputs`), leased until `lease_until` so
    no outbox scan takes them, to be published from memory once it commits (if it does
    not, they are gone with it)."""

    lease_until: datetime
    # In the order written: an output, or one whose row id comes with the unit's next wait
    # for the server (`send_outbox`: the function that gives it), with its topic, key, value.
    outputs: list[Output | tuple[Callable[[], int], str, bytes, bytes]] = field(
        default_factory=list
    )

    @property
    def written(self) -> list[Output]:
        """The rows, in the order written (once the unit of work committed)."""
        return [o if isinstance(o, Output) else Output(o[0](), *o[1:]) for o in self.outputs]


_handover: ContextVar[Handover | None] = ContextVar("omnirouter_handover", default=None)


@contextmanager
def keeping_outputs(handover: Handover) -> Iterator[None]:
    """Within: `add_outbox` leases its rows and keeps them in `handover.written`."""
    token = _handover.set(handover)
    try:
        yield
    finally:
        _handover.reset(token)


async def add_outbox(conn: Conn, topic: str, key: bytes, value: bytes, now: datetime) -> int:
    """Queue a record for publishing after the commit; its row id."""
    handover = _handover.get()
    row: dict[str, Any] = {"topic": topic, "key": key, "value": value, "created_at": now}
    if handover is not None:
        row["claimed_until"] = handover.lease_until
    result = await conn.execute(_add_outbox(conn), row)
    row_id = result.inserted_primary_key
    assert row_id is not None
    if handover is not None:
        handover.outputs.append(Output(int(row_id[0]), topic, key, value))
    return int(row_id[0])


async def send_outbox(
    conn: Conn, topic: str, key: bytes, value: bytes, now: datetime
) -> Callable[[], int]:
    """`add_outbox` without waiting for the row's id (`router.store.conn.send`): the
    function given back returns it, and waits for it if the unit has not waited since."""
    handover = _handover.get()
    row: dict[str, Any] = {"topic": topic, "key": key, "value": value, "created_at": now}
    if handover is not None:
        row["claimed_until"] = handover.lease_until
    later = await send_kept(conn, _add_outbox(conn), row)

    def row_id() -> int:
        return int(later().inserted_primary_key[0])

    if handover is not None:
        handover.outputs.append((row_id, topic, key, value))
    return row_id


@built
def _add_outbox(_: str) -> sa.Insert:
    return outbox.insert()


async def amend_outbox(conn: Conn, row_id: int, value: bytes) -> None:
    """Rewrite a record queued in this same transaction (never one already published)."""
    handover = _handover.get()
    if handover is not None:
        handover.outputs = [
            Output(o.id, o.topic, o.key, value) if o.id == row_id else o for o in handover.written
        ]
    await conn.execute(
        outbox.update().where(outbox.c.id == row_id, outbox.c.sent_at.is_(None)).values(value=value)
    )


async def claim_unsent(
    conn: Conn,
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


async def unsent_count(conn: Conn) -> int:
    stmt = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
    return int((await conn.execute(stmt)).scalar_one())


async def mark_sent(conn: Conn, ids: Sequence[int], now: datetime) -> None:
    if conn.dialect.name == "postgresql":  # one statement for any number of ids, prepared
        values = {"b_ids": list(ids), "sent_at": now, "claimed_until": None}
        await conn.execute(_mark_sent(conn), values)
        return
    await conn.execute(
        outbox.update().where(outbox.c.id.in_(list(ids))).values(sent_at=now, claimed_until=None)
    )


@built
def _mark_sent(_: str) -> sa.Update:
    ids = sa.bindparam("b_ids", type_=postgresql.ARRAY(sa.BigInteger))
    return outbox.update().where(outbox.c.id == sa.any_(ids))


async def mark_dead(conn: Conn, row_id: int, reason: str, now: datetime) -> None:
    """The row can never be published: it went to the DLQ; keep it, and why, for review."""
    await conn.execute(
        outbox.update()
        .where(outbox.c.id == row_id)
        .values(sent_at=now, claimed_until=None, dead_reason=reason)
    )


async def release_all_claims(conn: Conn) -> int:
    """Forget every lease on unsent rows; return how many there were."""
    result = await conn.execute(
        outbox.update()
        .where(outbox.c.sent_at.is_(None), outbox.c.claimed_until.is_not(None))
        .values(claimed_until=None)
    )
    return int(result.rowcount or 0)


async def release_claims(conn: Conn, ids: Sequence[int]) -> None:
    """Give rows back (not published this time) so the next flush takes them at once."""
    await conn.execute(
        outbox.update()
        .where(outbox.c.id.in_(list(ids)), outbox.c.sent_at.is_(None))
        .values(claimed_until=None)
    )


async def prune_outbox(conn: Conn, sent_before: datetime, limit: int) -> int:
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
