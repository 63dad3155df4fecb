"""What a day of traffic was, read from a store: arrivals per channel and hour, and how
long a conversation holds an agent's slot on each channel.

Handling time is measured as the routing sees it: from an assignment to its end
(resolved, transferred or timed out), the time the conversation took one of the
agent's slots on its channel type (their `capacity`). Conversations still
assigned when the history ends are not measured.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

import sqlalchemy as sa

from router.store import Store
from router.store.schema import assignments, conversations


@dataclass(frozen=True, slots=True)
class Traffic:
    """Arrivals per (channel, local hour start), and handling times per channel (seconds)."""

    arrivals: Counter[tuple[str, datetime]] = field(default_factory=Counter)
    handled: dict[str, list[float]] = field(default_factory=dict)
    channel_types: dict[str, str] = field(default_factory=dict)

    def days(self) -> list[date]:
        return sorted({start.date() for _, start in self.arrivals})

    def mean_handle(self, channel: str) -> tuple[float, int] | None:
        """The mean handling time on `channel` and how many it is measured from."""
        times = self.handled.get(channel) or []
        return (sum(times) / len(times), len(times)) if times else None


def hour_of(at: datetime, zone: tzinfo) -> datetime:
    return at.astimezone(zone).replace(minute=0, second=0, microsecond=0)


async def read_traffic(
    store: Store, zone: tzinfo, day: date | None = None, *, last_day: bool = False
) -> Traffic:
    """The traffic in `store`: of `day` (local to `zone`), of the latest day with any
    (`last_day`), or all of it."""
    async with store.transaction(readonly=True) as conn:
        opened = (
            await conn.execute(
                sa.select(
                    conversations.c.channel,
                    conversations.c.channel_type,
                    conversations.c.opened_at,
                )
            )
        ).all()
        held = (
            await conn.execute(
                sa.select(
                    conversations.c.channel,
                    conversations.c.opened_at,
                    assignments.c.assigned_at,
                    assignments.c.ended_at,
                )
                .select_from(assignments.join(conversations))
                .where(assignments.c.ended_at.is_not(None))
            )
        ).all()
    if last_day and opened:
        day = max(hour_of(r.opened_at, zone).date() for r in opened)

    def counted(at: datetime) -> bool:
        return day is None or hour_of(at, zone).date() == day

    arrivals: Counter[tuple[str, datetime]] = Counter()
    types: dict[str, str] = {}
    for r in opened:
        types[r.channel] = r.channel_type
        if counted(r.opened_at):
            arrivals[(r.channel, hour_of(r.opened_at, zone))] += 1
    handled: dict[str, list[float]] = defaultdict(list)
    for h in held:
        if counted(h.opened_at):
            seconds = (h.ended_at - h.assigned_at) / timedelta(seconds=1)
            handled[h.channel].append(max(0.0, seconds))
    return Traffic(arrivals, dict(handled), types)
