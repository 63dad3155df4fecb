"""Queue rank: a stored, clock-free queue position, so the head of a long queue is an index lookup.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as t:
        t.add_column(sa.Column("queue_rank", sa.Float, nullable=True))
        t.create_index("ix_conversations_queue_rank", ["queue_rank"])


def downgrade() -> None:
    with op.batch_alter_table("conversations") as t:
        t.drop_index("ix_conversations_queue_rank")
        t.drop_column("queue_rank")
