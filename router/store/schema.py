"""The store's schema: every table, key, index and constraint, in one place.

This module is the target the migrations are checked against (a test compares
the schema the migrations build with this metadata, on both engines). Change a
table here and add a migration under `migrations/versions/` in the same change.

Conventions:
- ids are text: envelope ids, configured agent ids, and generated ids
  (uuid4 hex) for customers and conversations; counters (assignments, timers,
  incidents) are integers the database assigns.
- every timestamp is timezone-aware UTC (`UTCDateTime`), on both engines.
- closed vocabularies (conversation status, incident kind, ...) are text with
  a CHECK constraint, not native enums: adding a value is a one-line migration.
- JSON columns are JSONB on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware datetime, stored as UTC, read back aware in UTC.

    SQLite has no time zone type: the value is stored as naive UTC text and
    given its zone back on read. PostgreSQL uses `timestamptz`. Naive values
    are refused: a time without a zone is a bug waiting to happen.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware times only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    # On SQLite the two steps (ours above, then SQLite DATETIME's text) run as one: a
    # routed message binds about twenty times and reads about twenty, and the two layers
    # cost more than the statement. The text and the values are SQLAlchemy's own
    # (tests/router/store/test_schema.py holds them to it).
    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        composed = super().bind_processor(dialect)
        if dialect.name != "sqlite" or composed is None:
            return composed
        slow: Callable[[Any], Any] = composed

        def write(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is not datetime or value.tzinfo is not UTC:  # most are UTC
                if not isinstance(value, datetime) or value.utcoffset() is None:
                    return slow(value)  # refused, or not a datetime: as SQLAlchemy does it
                value = value.astimezone(UTC)
            return value.isoformat(" ", "microseconds")[:-6]  # less its zone, "+00:00"

        return write

    def result_processor(
        self, dialect: Dialect, coltype: Any
    ) -> Callable[[Any], datetime | None] | None:
        composed = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or composed is None:
            return composed
        slow: Callable[[Any], datetime | None] = composed

        def read(value: Any) -> datetime | None:
            if value is None:
                return None
            if not isinstance(value, str):
                return slow(value)
            if len(value) == _WRITTEN:  # as `write` wrote it: read as UTC in one step
                try:
                    return datetime.fromisoformat(value + "+00:00")
                except ValueError:
                    pass  # not quite: the general way below says why
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                return moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC)

        return read


# The length of SQLite's text of a moment ("2026-12-01 08:00:00.123456"). Giving a datetime
# its zone with `replace` costs about five times what parsing it does, so the text is read
# with its zone, and a UTC moment is written as its text less the zone (`+00:00`).
_WRITTEN = len("2026-12-01 08:00:00.123456")


def json_type() -> sa.types.TypeEngine[Any]:
    """JSON on SQLite, JSONB on PostgreSQL."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def big_id() -> sa.types.TypeEngine[int]:
    """A 64-bit autoincrement key (plain INTEGER on SQLite, where that is the rowid)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


CONVERSATION_STATUSES = ("open", "pending", "resolved", "closed")
AGENT_STATUSES = ("available", "away", "offline")
INCIDENT_KINDS = (
    "complaint",
    "sla_breach",
    "bad_satisfaction",
    "delivery_failure",
    "callback_unreached",
    "broken_promise",
)
PROMISE_STATES = ("open", "kept", "broken")
MESSAGE_KINDS = ("message", "reply", "call", "command", "timer")
DIRECTIONS = ("in", "out")
SENDER_ROLES = ("customer", "agent", "system")

# --- customers and who they are -------------------------------------------------------

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("display_name", sa.Text, nullable=True),
    sa.Column("tier", sa.Text, nullable=False, default="standard"),
    sa.Column("tags", json_type(), nullable=False, default=list),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow),
    sa.Column("language", sa.Text, nullable=True),  # last language detected or stated
)

identities = sa.Table(
    "identities",
    metadata,
    # email | phone (E.164) | telegram (user id) | webchat (visitor id) | ...
    sa.Column("kind", sa.Text, primary_key=True),
    # normalized: lower-cased address, E.164 number, numeric id as text
    sa.Column("value", sa.Text, primary_key=True),
    sa.Column(
        "customer_id",
        sa.Text,
        sa.ForeignKey("customers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # where the link came from: config | import | agent | auto
    sa.Column("source", sa.Text, nullable=False, default="auto"),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Index(None, "customer_id"),
)

# --- agents and their live load ---------------------------------------------------------

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),  # the agent id from channels.yaml
    sa.Column("status", sa.Text, nullable=False, default="offline"),
    sa.Column("status_since", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("last_assigned_at", UTCDateTime, nullable=True),
    sa.CheckConstraint(_in("status", AGENT_STATUSES), name="status"),
)

agent_load = sa.Table(
    "agent_load",
    metadata,
    sa.Column(
        "agent_id",
        sa.Text,
        sa.ForeignKey("agents.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("channel_type", sa.Text, primary_key=True),
    sa.Column("open_count", sa.Integer, nullable=False, default=0),
    sa.CheckConstraint("open_count >= 0", name="open_count_non_negative"),
)

# --- conversations and their messages ---------------------------------------------------

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, nullable=False),  # channel instance name
    sa.Column("channel_type", sa.Text, nullable=False),  # email | telegram | ...
    sa.Column("thread_key", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("status", sa.Text, nullable=False, default="open"),
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("queue", sa.Text, nullable=True),
    sa.Column("owner_agent_id", sa.Text, sa.ForeignKey("agents.id"), nullable=True),
    sa.Column("sla_due_at", UTCDateTime, nullable=True),
    sa.Column("opened_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow),
    sa.Column("first_response_at", UTCDateTime, nullable=True),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    # The short reference customers and agents quote ("[#K7Q2M9]").
    sa.Column("ref", sa.Text, nullable=True),
    sa.Column("language", sa.Text, nullable=True),
    sa.Column("skills", json_type(), nullable=False, default=dict),  # required: skill -> level
    sa.Column("tags", json_type(), nullable=False, default=list),
    sa.Column("complaint", sa.Boolean, nullable=False, default=False),
    # Waiting for an agent since (null: not waiting); aging counts from here.
    sa.Column("waiting_since", UTCDateTime, nullable=True),
    # Queue position with aging, independent of the clock (router.routing.queueing).
    sa.Column("queue_rank", sa.Float, nullable=True),
    # The customer's previous agent, waited for until prefer_until before widening.
    sa.Column("preferred_agent_id", sa.Text, nullable=True),
    sa.Column("prefer_until", UTCDateTime, nullable=True),
    # Channel-native facts needed to answer in thread (e.g. last Message-ID, References).
    sa.Column("thread_meta", json_type(), nullable=False, default=dict),
    sa.UniqueConstraint("channel", "thread_key"),
    sa.UniqueConstraint("ref"),
    sa.CheckConstraint(_in("status", CONVERSATION_STATUSES), name="status"),
    # the customer's conversations, newest first (context for the agent)
    sa.Index(None, "customer_id", "updated_at"),
    # the waiting queue: by queue, then priority
    sa.Index(None, "status", "queue", "priority"),
    sa.Index(None, "owner_agent_id", "status"),
    sa.Index(None, "waiting_since"),
    sa.Index(None, "queue_rank"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),  # the envelope id: dedupe key
    sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id"), nullable=True),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("channel_type", sa.Text, nullable=False),
    sa.Column("thread_key", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("direction", sa.Text, nullable=False),
    sa.Column("sender_address", sa.Text, nullable=False),
    sa.Column("sender_name", sa.Text, nullable=True),
    sa.Column("sender_role", sa.Text, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("text", sa.Text, nullable=False, default=""),
    sa.Column("envelope", json_type(), nullable=False),  # the whole envelope, as JSON
    sa.Column("stored_at", UTCDateTime, nullable=False, default=utcnow),
    sa.CheckConstraint(_in("kind", MESSAGE_KINDS), name="kind"),
    sa.CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
    sa.CheckConstraint(_in("sender_role", SENDER_ROLES), name="sender_role"),
    # a conversation's transcript, in order
    sa.Index(None, "conversation_id", "received_at"),
    # messages of one thread (linking them to their conversation)
    sa.Index(None, "channel", "thread_key", "received_at"),
)

# --- routing decisions and timers -------------------------------------------------------

assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("agent_id", sa.Text, sa.ForeignKey("agents.id"), nullable=False),
    sa.Column("reason", json_type(), nullable=False),  # why this agent: explainable routing
    sa.Column("assigned_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("accepted_at", UTCDateTime, nullable=True),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    # resolved | transferred | timeout | ...
    sa.Column("end_reason", sa.Text, nullable=True),
    sa.Index(None, "conversation_id", "assigned_at"),
    sa.Index(None, "agent_id", "assigned_at"),
    # one conversation, one owner: at most one active assignment
    sa.Index(
        "uq_assignments_active_conversation",
        "conversation_id",
        unique=True,
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    ),
)

timers = sa.Table(
    "timers",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    # scheduling the same key twice is refused: a timer is scheduled once
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id"), nullable=True),
    # ack | first_response | sla_warning | accept_timeout | follow_up | ...
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("fired_at", UTCDateTime, nullable=True),
    sa.Column("cancelled_at", UTCDateTime, nullable=True),
    sa.Column("payload", json_type(), nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.UniqueConstraint("key"),
    sa.Index(None, "conversation_id"),
    # the timer wheel: pending timers by due time
    sa.Index(
        "ix_timers_pending_due_at",
        "due_at",
        sqlite_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
        postgresql_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
    ),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id"), nullable=True),
    sa.Column("customer_id", sa.Text, sa.ForeignKey("customers.id"), nullable=True),
    sa.Column("cause", sa.Text, nullable=False),
    sa.Column("details", json_type(), nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.CheckConstraint(_in("kind", INCIDENT_KINDS), name="kind"),
    sa.Index(None, "kind", "created_at"),
    sa.Index(None, "conversation_id"),
    sa.Index(None, "customer_id"),
)

# Praise relayed to an agent: a good satisfaction answer, or a message that reads as
# praise (router.routing.praise); counted for them, and the supervisors' weekly digest.
praise = sa.Table(
    "praise",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("agent_id", sa.Text, sa.ForeignKey("agents.id"), nullable=False),
    sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # answer | message
    sa.Column("words", sa.Text, nullable=False),  # the customer's, cut
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Index(None, "created_at"),
    sa.Index(None, "agent_id", "created_at"),
)

# What an agent promised a customer, by when (router.routing.promises): its reminder
# and due time are timers keyed by the promise's id.
promises = sa.Table(
    "promises",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("made_by", sa.Text, nullable=False),  # the agent id (kept if they leave the config)
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("made_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.Text, nullable=False, default="open"),
    sa.Column("closed_at", UTCDateTime, nullable=True),
    sa.Column("closed_by", sa.Text, nullable=True),
    sa.CheckConstraint(_in("state", PROMISE_STATES), name="state"),
    sa.Index(None, "conversation_id"),
)

# --- delivery bookkeeping ---------------------------------------------------------------

processed = sa.Table(
    "processed",
    metadata,
    # which consumer applied the record (router, a sink, ...): each dedupes on its own
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("envelope_id", sa.Text, primary_key=True),
    sa.Column("processed_at", UTCDateTime, nullable=False, default=utcnow),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("connector", sa.Text, primary_key=True),  # channel instance name
    sa.Column("key", sa.Text, primary_key=True),  # e.g. "INBOX"
    sa.Column("value", sa.Text, nullable=False),  # e.g. "<uidvalidity>:<last uid>"
    sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow),
)

# Records to publish, written in the transaction of the effect that produced
# them and published after it commits (the transactional outbox): a crash
# between the two leaves them here, and the next run publishes them.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("key", sa.LargeBinary, nullable=False),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    # A publisher's lease on an unsent row, so two of them do not publish it at once;
    # an expired lease (its publisher died) lets another take the row.
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    # Set (with sent_at) when the row could never be published: why, and it went to the DLQ.
    sa.Column("dead_reason", sa.Text, nullable=True),
    sa.Index(
        "ix_outbox_unsent",
        "id",
        sqlite_where=sa.text("sent_at IS NULL"),
        postgresql_where=sa.text("sent_at IS NULL"),
    ),
)

# A link an automatic rule or an agent proposed between an identity and a
# customer while the identity already belonged to another customer: never
# merged silently, shown to agents instead.
link_suggestions = sa.Table(
    "link_suggestions",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("current_customer_id", sa.Text, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("proposed_customer_id", sa.Text, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("kind", "value", "proposed_customer_id"),
)

TABLES = tuple(metadata.sorted_tables)
