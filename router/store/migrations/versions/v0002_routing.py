"""Routing state: conversation classification and waiting, the outbox, link suggestions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("customers") as t:
        t.add_column(sa.Column("language", sa.Text, nullable=True))
    with op.batch_alter_table("conversations") as t:
        t.add_column(sa.Column("ref", sa.Text, nullable=True))
        t.add_column(sa.Column("language", sa.Text, nullable=True))
        t.add_column(sa.Column("skills", _json(), nullable=False, server_default="{}"))
        t.add_column(sa.Column("tags", _json(), nullable=False, server_default="[]"))
        t.add_column(sa.Column("complaint", sa.Boolean, nullable=False, server_default=sa.false()))
        t.add_column(sa.Column("waiting_since", _ts(), nullable=True))
        t.add_column(sa.Column("preferred_agent_id", sa.Text, nullable=True))
        t.add_column(sa.Column("prefer_until", _ts(), nullable=True))
        t.add_column(sa.Column("thread_meta", _json(), nullable=False, server_default="{}"))
        t.create_unique_constraint("uq_conversations_ref", ["ref"])
        t.create_index("ix_conversations_waiting_since", ["waiting_since"])
    # Server defaults only fill existing rows; the model supplies values from now on.
    with op.batch_alter_table("conversations") as t:
        for column in ("skills", "tags", "complaint", "thread_meta"):
            t.alter_column(column, server_default=None)

    op.create_table(
        "outbox",
        sa.Column("id", _big_id(), primary_key=True, autoincrement=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("sent_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index(
        "ix_outbox_unsent",
        "outbox",
        ["id"],
        sqlite_where=sa.text("sent_at IS NULL"),
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.create_table(
        "link_suggestions",
        sa.Column("id", _big_id(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("current_customer_id", sa.Text, nullable=False),
        sa.Column("proposed_customer_id", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("resolved_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_link_suggestions"),
        sa.ForeignKeyConstraint(
            ["current_customer_id"],
            ["customers.id"],
            name="fk_link_suggestions_current_customer_id_customers",
        ),
        sa.ForeignKeyConstraint(
            ["proposed_customer_id"],
            ["customers.id"],
            name="fk_link_suggestions_proposed_customer_id_customers",
        ),
        sa.UniqueConstraint(
            "kind",
            "value",
            "proposed_customer_id",
            name="uq_link_suggestions_kind_value_proposed_customer_id",
        ),
    )


def downgrade() -> None:
    op.drop_table("link_suggestions")
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.drop_table("outbox")
    with op.batch_alter_table("conversations") as t:
        t.drop_index("ix_conversations_waiting_since")
        t.drop_constraint("uq_conversations_ref", type_="unique")
        for column in (
            "thread_meta",
            "prefer_until",
            "preferred_agent_id",
            "waiting_since",
            "complaint",
            "tags",
            "skills",
            "language",
            "ref",
        ):
            t.drop_column(column)
    with op.batch_alter_table("customers") as t:
        t.drop_column("language")
