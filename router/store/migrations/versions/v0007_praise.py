"""Praise relayed to agents gets a table of its own (router.routing.praise).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "praise",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.Text, sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("words", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_praise_created_at", "praise", ["created_at"])
    op.create_index("ix_praise_agent_id_created_at", "praise", ["agent_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_praise_agent_id_created_at", table_name="praise")
    op.drop_index("ix_praise_created_at", table_name="praise")
    op.drop_table("praise")
