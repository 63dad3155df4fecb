"""The agents' live state, held in process, in the order the choice walks them.

Reading every agent's status and load from the store for each decision costs
more than the decision (10,000 agents: about 10 ms). The board holds one
`AgentView` per agent and, per channel type, the agents who are present
(available and on shift) ordered by the choice's own key: least occupied,
then idle longest, then id. The best agent for a need is then the first one
in that order who can take it, so a choice walks a few agents, not all.

The board is a cache of the store, never the authority: capacity and status
are checked again by the store when an assignment is taken (a conditional
UPDATE), the routing code updates the board with every change it commits,
and the board is read again from the store when a unit of work fails, when
the config is reloaded, and every `REFRESH` seconds (changes made by other
router processes).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from router.routing.choose import AgentView

# Seconds a board is trusted before it is read again (other processes' changes).
REFRESH = 1.0

Key = tuple[float, float, str]


def order_key(agent: AgentView) -> Key:
    """Least occupied first; then the one idle longest (never assigned = idlest); then id."""
    idle_since = agent.last_assigned_at.timestamp() if agent.last_assigned_at else float("-inf")
    return (agent.occupancy(), idle_since, agent.id)


def _present(agent: AgentView) -> bool:
    return agent.status == "available" and agent.on_shift


class AgentBoard:
    def __init__(
        self,
        views: Iterable[AgentView] = (),
        *,
        read_at: float = 0.0,
        shifts_at: datetime | None = None,
    ) -> None:
        self._by_id: dict[str, AgentView] = {}
        # channel type -> keys of present agents with capacity there, in choice order
        self._order: dict[str, list[Key]] = {}
        self.read_at = read_at  # time.monotonic() when read from the store
        # the minute the views' on_shift was computed for
        self.shifts_at = shifts_at.replace(second=0, microsecond=0) if shifts_at else None
        for view in views:
            self.put(view)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[AgentView]:
        return iter(self._by_id.values())

    def get(self, agent_id: str | None) -> AgentView | None:
        return self._by_id.get(agent_id) if agent_id is not None else None

    def walk(self, channel_type: str) -> Iterator[AgentView]:
        """Present agents with capacity on this channel type, best first."""
        by_id = self._by_id
        for key in self._order.get(channel_type, ()):
            yield by_id[key[2]]

    def present(self, channel_type: str) -> int:
        return len(self._order.get(channel_type, ()))

    # --- changes ------------------------------------------------------------------------

    def put(self, view: AgentView) -> None:
        """Add an agent, or replace what the board knows of them."""
        old = self._by_id.get(view.id)
        if old is not None:
            self._unlist(old)
        self._by_id[view.id] = view
        if _present(view):
            key = order_key(view)
            for channel_type, capacity in view.capacity.items():
                if capacity > 0:
                    bisect.insort(self._order.setdefault(channel_type, []), key)

    def add_load(
        self, agent_id: str, channel_type: str, delta: int, *, at: datetime | None = None
    ) -> None:
        """One more (or fewer) open conversation on a channel type; `at`: assigned then."""
        view = self._by_id.get(agent_id)
        if view is None:
            return
        load = dict(view.load)
        load[channel_type] = max(0, load.get(channel_type, 0) + delta)
        last = at if at is not None else view.last_assigned_at
        self.put(dataclasses.replace(view, load=load, last_assigned_at=last))

    def set_status(self, agent_id: str, status: str) -> None:
        view = self._by_id.get(agent_id)
        if view is not None and view.status != status:
            self.put(dataclasses.replace(view, status=status))

    def update_shifts(self, now: datetime, on_shift: Callable[[str], bool]) -> None:
        """Recompute who is on shift, once per minute of `now` (schedules are in minutes)."""
        minute = now.replace(second=0, microsecond=0)
        if minute == self.shifts_at:
            return
        self.shifts_at = minute
        for view in list(self._by_id.values()):
            on = on_shift(view.id)
            if on != view.on_shift:
                self.put(dataclasses.replace(view, on_shift=on))

    def _unlist(self, view: AgentView) -> None:
        if not _present(view):
            return
        key = order_key(view)
        for channel_type, capacity in view.capacity.items():
            keys = self._order.get(channel_type)
            if capacity > 0 and keys:
                i = bisect.bisect_left(keys, key)
                if i < len(keys) and keys[i] == key:
                    del keys[i]
