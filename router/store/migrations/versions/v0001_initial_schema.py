"""Initial schema: customers, identities, agents, conversations, messages,
assignments, timers, incidents, processed records and checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

A migration is a frozen snapshot: it spells its types out instead of importing
`router.store.schema`, so later schema edits cannot change what it does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
    )
    op.create_table(
        "identities",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name="fk_identities_customer_id_customers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("kind", "value", name="pk_identities"),
    )
    op.create_index("ix_identities_customer_id", "identities", ["customer_id"])

    op.create_table(
        "agents",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("status_since", _ts(), nullable=False),
        sa.Column("last_assigned_at", _ts(), nullable=True),
        sa.CheckConstraint("status IN ('available', 'away', 'offline')", name="ck_agents_status"),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
    )
    op.create_table(
        "agent_load",
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("channel_type", sa.Text(), nullable=False),
        sa.Column("open_count", sa.Integer(), nullable=False),
        sa.CheckConstraint("open_count >= 0", name="ck_agent_load_open_count_non_negative"),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name="fk_agent_load_agent_id_agents", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("agent_id", "channel_type", name="pk_agent_load"),
    )

    op.create_table(
        "conversations",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("channel_type", sa.Text(), nullable=False),
        sa.Column("thread_key", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=True),
        sa.Column("owner_agent_id", sa.Text(), nullable=True),
        sa.Column("sla_due_at", _ts(), nullable=True),
        sa.Column("opened_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("first_response_at", _ts(), nullable=True),
        sa.Column("resolved_at", _ts(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'pending', 'resolved', 'closed')", name="ck_conversations_status"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_conversations_customer_id_customers"
        ),
        sa.ForeignKeyConstraint(
            ["owner_agent_id"], ["agents.id"], name="fk_conversations_owner_agent_id_agents"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
        sa.UniqueConstraint("channel", "thread_key", name="uq_conversations_channel_thread_key"),
    )
    op.create_index(
        "ix_conversations_customer_id_updated_at", "conversations", ["customer_id", "updated_at"]
    )
    op.create_index(
        "ix_conversations_status_queue_priority", "conversations", ["status", "queue", "priority"]
    )
    op.create_index(
        "ix_conversations_owner_agent_id_status", "conversations", ["owner_agent_id", "status"]
    )

    op.create_table(
        "messages",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("conversation_id", sa.Text(), nullable=True),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("channel_type", sa.Text(), nullable=False),
        sa.Column("thread_key", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("sender_address", sa.Text(), nullable=False),
        sa.Column("sender_name", sa.Text(), nullable=True),
        sa.Column("sender_role", sa.Text(), nullable=False),
        sa.Column("sent_at", _ts(), nullable=True),
        sa.Column("received_at", _ts(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("envelope", _json(), nullable=False),
        sa.Column("stored_at", _ts(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('message', 'reply', 'call', 'command', 'timer')", name="ck_messages_kind"
        ),
        sa.CheckConstraint("direction IN ('in', 'out')", name="ck_messages_direction"),
        sa.CheckConstraint(
            "sender_role IN ('customer', 'agent', 'system')", name="ck_messages_sender_role"
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_messages_conversation_id_conversations",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_index(
        "ix_messages_conversation_id_received_at", "messages", ["conversation_id", "received_at"]
    )
    op.create_index(
        "ix_messages_channel_thread_key_received_at",
        "messages",
        ["channel", "thread_key", "received_at"],
    )

    op.create_table(
        "assignments",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.Text(), nullable=False),
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("reason", _json(), nullable=False),
        sa.Column("assigned_at", _ts(), nullable=False),
        sa.Column("accepted_at", _ts(), nullable=True),
        sa.Column("ended_at", _ts(), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_assignments_conversation_id_conversations",
        ),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name="fk_assignments_agent_id_agents"),
        sa.PrimaryKeyConstraint("id", name="pk_assignments"),
    )
    op.create_index(
        "ix_assignments_conversation_id_assigned_at",
        "assignments",
        ["conversation_id", "assigned_at"],
    )
    op.create_index(
        "ix_assignments_agent_id_assigned_at", "assignments", ["agent_id", "assigned_at"]
    )
    op.create_index(
        "uq_assignments_active_conversation",
        "assignments",
        ["conversation_id"],
        unique=True,
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )

    op.create_table(
        "timers",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("conversation_id", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("due_at", _ts(), nullable=False),
        sa.Column("fired_at", _ts(), nullable=True),
        sa.Column("cancelled_at", _ts(), nullable=True),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_timers_conversation_id_conversations",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_timers"),
        sa.UniqueConstraint("key", name="uq_timers_key"),
    )
    op.create_index("ix_timers_conversation_id", "timers", ["conversation_id"])
    op.create_index(
        "ix_timers_pending_due_at",
        "timers",
        ["due_at"],
        sqlite_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
        postgresql_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
    )

    op.create_table(
        "incidents",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("conversation_id", sa.Text(), nullable=True),
        sa.Column("customer_id", sa.Text(), nullable=True),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('complaint', 'sla_breach', 'bad_satisfaction', 'delivery_failure')",
            name="ck_incidents_kind",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_incidents_conversation_id_conversations",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_incidents_customer_id_customers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
    )
    op.create_index("ix_incidents_kind_created_at", "incidents", ["kind", "created_at"])
    op.create_index("ix_incidents_conversation_id", "incidents", ["conversation_id"])
    op.create_index("ix_incidents_customer_id", "incidents", ["customer_id"])

    op.create_table(
        "processed",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("envelope_id", sa.Text(), nullable=False),
        sa.Column("processed_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "envelope_id", name="pk_processed"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("connector", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("connector", "key", name="pk_checkpoints"),
    )


def downgrade() -> None:
    for table in (
        "checkpoints",
        "processed",
        "incidents",
        "timers",
        "assignments",
        "messages",
        "conversations",
        "agent_load",
        "agents",
        "identities",
        "customers",
    ):
        op.drop_table(table)
