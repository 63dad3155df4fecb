"""The agents' live state, held in process, in the order the choice walks them.

Reading every agent's status and load from the store for each decision costs
more than the decision (10,000 agents: about 10 ms). The board holds one
`AgentView` per agent and, per channel type, the agents who are present
(available and on shift) ordered by the choice's own key: least occupied,
then least recently assigned, then a stable hash of the id (never the name's
alphabetical order, which would give every tie to the same agent). The best
agent for a need is then the first one in that order who can take it, so a
choice walks a few agents, not all. The agents who are not present are kept
apart, so a conversation that waits can name who was off shift or away, and
so are the agents no connector reaches (never walked; named by every choice).

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
import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta

from router.routing.choose import AgentView

# Seconds a board is trusted before it is read again (other processes' changes).
REFRESH = 1.0

# Two assignments are never recorded at the same instant (see `assigned_at`).
TICK = timedelta(microseconds=1)

Key = tuple[float, float, int, str]


@functools.cache
def tie_break(agent_id: str) -> int:
    """The same on every process and run (unlike `hash()`), unrelated to the name's order."""
    return int.from_bytes(hashlib.blake2b(agent_id.encode(), digest_size=8).digest(), "big")


def order_key(agent: AgentView) -> Key:
    """Least occupied first; then the least recently assigned (never assigned first);
    then the tie-break (id last only to make keys unique)."""
    idle_since = agent.last_assigned_at.timestamp() if agent.last_assigned_at else float("-inf")
    return (agent.occupancy(), idle_since, tie_break(agent.id), agent.id)


def _present(agent: AgentView) -> bool:
    return agent.status == "available" and agent.on_shift and agent.unreachable is None


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
        # agents not present (away, offline, off shift), in a stable order: only named
        self._absent: dict[str, None] = {}
        # agents no connector reaches, whatever their presence: only named
        self._unreachable: dict[str, None] = {}
        self.latest_assigned: datetime | None = None
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
            yield by_id[key[3]]

    def absent(self) -> Iterator[AgentView]:
        """Agents who are away, offline or off shift (never walked)."""
        by_id = self._by_id
        for agent_id in self._absent:
            yield by_id[agent_id]

    def unreachable(self) -> Iterator[AgentView]:
        """Agents deliveries cannot reach (never walked); usually none."""
        by_id = self._by_id
        for agent_id in self._unreachable:
            yield by_id[agent_id]

    def present(self, channel_type: str) -> int:
        return len(self._order.get(channel_type, ()))

    def assigned_at(self, now: datetime) -> datetime:
        """When an assignment made `now` is recorded: `now`, or a microsecond after the
        latest one if that is not earlier. Least recently assigned first is then a strict
        order, also between assignments made in one instant (a batch, `simulate`)."""
        latest = self.latest_assigned
        return now if latest is None or now > latest else latest + TICK

    # --- changes ------------------------------------------------------------------------

    def put(self, view: AgentView) -> None:
        """Add an agent, or replace what the board knows of them."""
        old = self._by_id.get(view.id)
        if old is not None:
            self._unlist(old)
        self._by_id[view.id] = view
        last = view.last_assigned_at
        if last is not None and (self.latest_assigned is None or last > self.latest_assigned):
            self.latest_assigned = last
        if _present(view):
            key = order_key(view)
            for channel_type, capacity in view.capacity.items():
                if capacity > 0:
                    bisect.insort(self._order.setdefault(channel_type, []), key)
        elif view.unreachable is not None:
            self._unreachable[view.id] = None
        else:
            self._absent[view.id] = None

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
            self._absent.pop(view.id, None)
            self._unreachable.pop(view.id, None)
            return
        key = order_key(view)
        for channel_type, capacity in view.capacity.items():
            keys = self._order.get(channel_type)
            if capacity > 0 and keys:
                i = bisect.bisect_left(keys, key)
                if i < len(keys) and keys[i] == key:
                    del keys[i]
