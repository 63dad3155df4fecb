"""A queue's `overflow_after`: the timer that moves a long wait to the queue's `overflow`.

Scheduled when a conversation starts waiting in a queue that has both, once
per queue and waiting period (the key names them, so routing the same wait
again schedules nothing new); cancelled when the conversation is assigned.
The wait counts open time of the channel's business hours, as the SLA clocks
do: a queue nobody can serve at night would otherwise empty into its
overflow every night. `router.routing.timers` acts on it when it fires.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from router.routing.context import Routing, Unit
from router.routing.hours import add_business_time
from router.store import routing as db

OVERFLOW_TIMER = "overflow"


async def schedule_overflow(ctx: Routing, unit: Unit, conv: Any, since: datetime) -> None:
    """`conv` waits in its queue (since `since`): move it on after the queue's `overflow_after`."""
    queue = ctx.queues.get(conv.queue) if conv.queue else None
    if queue is None or queue.overflow is None or queue.overflow_after is None:
        return
    due = add_business_time(ctx.hours_for(conv.channel), unit.now, queue.overflow_after)
    await db.schedule_timer(
        unit.conn,
        f"{OVERFLOW_TIMER}:{conv.id}:{queue.name}:{since.isoformat()}",
        conv.id,
        OVERFLOW_TIMER,
        due,
        {"queue": queue.name, "since": since.isoformat()},
        unit.now,
    )


async def cancel_overflow(unit: Unit, conv: Any) -> None:
    """`conv` is being assigned: its overflow timer, if it was waiting, is void."""
    if conv.waiting_since is not None:  # never waited: no timer, no statement
        await db.cancel_timers(unit.conn, conv.id, (OVERFLOW_TIMER,), unit.now)
