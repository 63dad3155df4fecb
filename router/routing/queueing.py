"""Queue order: priority with aging, so nobody waits forever behind newer urgent work."""

from __future__ import annotations

from datetime import datetime, timedelta

PRIORITY_LEVELS: dict[str, int] = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
LEVEL_NAMES = {v: k for k, v in PRIORITY_LEVELS.items()}


def effective_priority(
    level: int, waiting_since: datetime, now: datetime, aging_step: timedelta
) -> float:
    """The base level plus one for every `aging_step` waited (fractional, so ties are rare)."""
    waited = max((now - waiting_since).total_seconds(), 0.0)
    step = aging_step.total_seconds()
    return level + (waited / step if step > 0 else 0.0)


def queue_rank(level: int, waiting_since: datetime, aging_step: timedelta) -> float:
    """A clock-free sort key, stored with a waiting conversation (ascending = served first).

    effective priority = level + (now - since) / step, so ordering by it
    (descending) at any one moment is ordering by `since - level * step`
    (ascending): `now` is the same for every conversation and drops out. The
    queue's head is then an index lookup, whatever the queue's length.
    """
    return waiting_since.timestamp() - level * aging_step.total_seconds()
