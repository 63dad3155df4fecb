"""Migration 0005: open conversations get a reply context from the old thread facts."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from router.store import migrate as migrations
from router.store import open_store
from router.store.schema import conversations, customers

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
OLD = {
    "subject": "Invoice",
    "customer_address": "eva@example.net",
    "last_message_id": "<m2@x>",
    "references": ["<m1@x>", "<m2@x>"],
}


def row(cid: str, status: str, meta: dict[str, object]) -> dict[str, object]:
    return {
        "id": cid,
        "channel": "mail",
        "channel_type": "mail",
        "thread_key": f"<{cid}@x>",
        "customer_id": "c1",
        "status": status,
        "priority": 2,
        "opened_at": T0,
        "updated_at": T0,
        "skills": {},
        "tags": [],
        "complaint": False,
        "thread_meta": meta,
    }


async def test_old_thread_facts_become_the_reply_context(store_url: str) -> None:
    store = await open_store(store_url, migrate=False)
    try:
        async with store.transaction() as conn:
            await conn.run_sync(lambda c: migrations.upgrade(c, "0004"))
            await conn.execute(
                sa.insert(customers).values(
                    id="c1", tier="standard", tags=[], created_at=T0, updated_at=T0
                )
            )
            await conn.execute(
                sa.insert(conversations),
                [
                    row("open", "open", OLD),
                    row("closed", "closed", OLD),
                    row("chat", "open", {"subject": None, "customer_address": "v-1"}),
                    row("new", "open", {**OLD, "reply_context": {"kept": True}}),
                ],
            )
        await store.migrate()
        async with store.transaction(readonly=True) as conn:
            rows = await conn.execute(sa.select(conversations.c.id, conversations.c.thread_meta))
            meta = {r.id: r.thread_meta for r in rows}
    finally:
        await store.close()
    assert meta["open"] == {
        **OLD,
        "reply_context": {
            "to": ["eva@example.net"],
            "message_id": "<m2@x>",
            "references": ["<m1@x>", "<m2@x>"],
        },
    }
    assert "reply_context" not in meta["closed"]  # a closed one is never answered again
    assert "reply_context" not in meta["chat"]  # no threading facts: nothing to hand back
    assert meta["new"]["reply_context"] == {"kept": True}
