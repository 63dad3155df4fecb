"""Conversations keep their channel's reply context (`thread_meta.reply_context`).

The router used to keep an email's threading facts itself (`customer_address`,
`last_message_id`, `references` in `thread_meta`) and write the reply's
addressing from them; now the connector's intake writes an opaque reply context
and the router hands the latest one back. Open conversations get theirs from
the old facts, in the shape the old outgoing replies had (`to`, the Message-ID
answered, the References), so a reply after the upgrade still threads.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500

_conversations = sa.table(
    "conversations",
    sa.column("id", sa.Text),
    sa.column("status", sa.Text),
    sa.column("thread_meta", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
)


def reply_context(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The reply context the old thread facts stand for (None: nothing to add)."""
    if "reply_context" in meta or not meta.get("last_message_id"):
        return None
    refs = meta.get("references")
    return {
        "to": [meta["customer_address"]] if meta.get("customer_address") else [],
        "message_id": meta["last_message_id"],
        "references": list(refs)[-20:] if isinstance(refs, list) else [],
    }


def upgrade() -> None:
    conn = op.get_bind()
    query = sa.select(_conversations.c.id, _conversations.c.thread_meta).where(
        _conversations.c.status != "closed"
    )
    updates = []
    for row in conn.execute(query):
        meta = row.thread_meta if isinstance(row.thread_meta, dict) else {}
        context = reply_context(meta)
        if context is not None:
            updates.append({"cid": row.id, "meta": {**meta, "reply_context": context}})
    stmt = (
        sa.update(_conversations)
        .where(_conversations.c.id == sa.bindparam("cid"))
        .values(thread_meta=sa.bindparam("meta"))
    )
    for start in range(0, len(updates), BATCH):
        conn.execute(stmt, updates[start : start + BATCH])


def downgrade() -> None:
    """Nothing to undo: the old facts are still there beside the reply context."""
