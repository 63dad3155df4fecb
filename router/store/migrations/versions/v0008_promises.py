"""Promises agents make to customers, and `broken_promise` incidents.

A promise (`#promise 17:00 call back`) is a row of its own: the conversation,
who made it, what and by when, and whether it is open, kept or broken. The
incident register gets the kind for a promise that fell due unkept.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = (
    "complaint",
    "sla_breach",
    "bad_satisfaction",
    "delivery_failure",
    "callback_unreached",
)
NEW_KINDS = (*OLD_KINDS, "broken_promise")

_incidents = sa.table("incidents", sa.column("kind", sa.Text))


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _check(kinds: tuple[str, ...]) -> None:
    """Replace the check on the incidents' `kind` (0006 named it `ck_incidents_kind`)."""
    quoted = ", ".join(f"'{k}'" for k in kinds)
    # SQLite cannot alter a constraint: batch mode copies the table there.
    with op.batch_alter_table("incidents") as t:
        t.drop_constraint(op.f("ck_incidents_kind"), type_="check")
        t.create_check_constraint(op.f("ck_incidents_kind"), f"kind IN ({quoted})")


def upgrade() -> None:
    _check(NEW_KINDS)
    op.create_table(
        "promises",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("conversation_id", sa.Text, nullable=False),
        sa.Column("made_by", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("due_at", _ts(), nullable=False),
        sa.Column("made_at", _ts(), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("closed_at", _ts(), nullable=True),
        sa.Column("closed_by", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_promises"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_promises_conversation_id_conversations",
        ),
        sa.CheckConstraint("state IN ('open', 'kept', 'broken')", name=op.f("ck_promises_state")),
    )
    op.create_index("ix_promises_conversation_id", "promises", ["conversation_id"])


def downgrade() -> None:
    """The promises go, and so do their incidents: no older kind stands for them."""
    op.drop_index("ix_promises_conversation_id", table_name="promises")
    op.drop_table("promises")
    op.get_bind().execute(sa.delete(_incidents).where(_incidents.c.kind == "broken_promise"))
    _check(OLD_KINDS)
