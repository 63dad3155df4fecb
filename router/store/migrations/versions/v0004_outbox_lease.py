"""Outbox: a publisher's lease on unsent rows, and the reason a row was dead-lettered.

Rows are now published outside the store transaction that reads them (no
transaction waits on the bus), so a claim marks who publishes what; a row that
can never be published is dead-lettered and keeps its reason here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as t:
        t.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
        t.add_column(sa.Column("dead_reason", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as t:
        t.drop_column("dead_reason")
        t.drop_column("claimed_until")
