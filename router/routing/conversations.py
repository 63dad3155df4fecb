"""Opening a conversation: one row shape for every way a conversation starts."""

from __future__ import annotations

from typing import Any

from router.routing.context import Routing, Unit
from router.routing.queueing import PRIORITY_LEVELS
from router.store import routing as db


async def open_conversation(
    ctx: Routing,
    unit: Unit,
    channel: str,
    thread_key: str,
    customer_id: str,
    *,
    thread_meta: dict[str, Any] | None = None,
) -> Any:
    """A new open conversation on `channel`'s `thread_key`, at the default priority."""
    conv = await db.create_conversation(
        unit.conn,
        {
            "channel": channel,
            "channel_type": ctx.channels[channel].type,
            "thread_key": thread_key,
            "customer_id": customer_id,
            "status": "open",
            "priority": PRIORITY_LEVELS[ctx.config.routing.default_priority],
            "opened_at": unit.now,
            "updated_at": unit.now,
            "skills": {},
            "tags": [],
            "complaint": False,
            "thread_meta": thread_meta or {},
        },
    )
    unit.opened_conversation(conv.id, customer_id)
    return conv
