"""First-contact resolution: was a resolved conversation resolved by the first agent who
had it, without a transfer and without reopening?

Judged at each resolution and kept in the conversation's `thread_meta` (`resolution`:
how many times it was resolved, whether the latest was a first contact, by whom and
in which queue). A conversation that had a second assignment (a transfer, a
reassignment after a timeout or an overflow) or that is resolved a second time (it
was reopened) is not a first contact; nor is one resolved while nobody had it. The
figures (`/status`, metrics, `simulate`'s summary) read the conversations resolved
now, so a reopened one stops counting as it reopens and counts again, as no first
contact, once resolved again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from router.routing.context import Unit
from router.store import routing as db

KEY = "resolution"


def judged(conv: Any) -> dict[str, Any]:
    value = (conv.thread_meta or {}).get(KEY)
    return dict(value) if isinstance(value, dict) else {}


async def judge(unit: Unit, conv: Any, owner: str | None) -> bool:
    """Record the resolution of `conv`, whose owner was `owner`; True: a first contact."""
    before = judged(conv)
    times = int(before.get("count", 0))
    first = times == 0 and owner is not None and await db.assignment_count(unit.conn, conv.id) == 1
    conv = await db.reload(unit.conn, conv.id)
    record = {"count": times + 1, "first_contact": first, "agent": owner, "queue": conv.queue}
    await db.update_conversation(
        unit.conn, conv.id, thread_meta={**(conv.thread_meta or {}), KEY: record}
    )
    return first


def tally(convs: Iterable[Any]) -> dict[str, dict[str, list[int]]]:
    """Per channel, queue and agent: [resolved, of them first contacts], over the given
    conversations that are resolved now (closed after a follow-up counts as resolved)."""
    out: dict[str, dict[str, list[int]]] = {"channel": {}, "queue": {}, "agent": {}}
    for c in convs:
        record = judged(c)
        if c.status not in ("resolved", "closed") or not record:
            continue
        first = 1 if record.get("first_contact") else 0
        for by, value in (
            ("channel", c.channel),
            ("queue", record.get("queue") or "-"),
            ("agent", record.get("agent") or "-"),
        ):
            counts = out[by].setdefault(str(value), [0, 0])
            counts[0] += 1
            counts[1] += first
    return out


def share(counts: list[int] | None) -> float | None:
    """First contacts among the resolved (None: nothing resolved)."""
    if not counts or not counts[0]:
        return None
    return round(counts[1] / counts[0], 4)
