"""Choosing the agent: a pure function of the agents' state and what the conversation needs.

Order (DESIGN, "The router" step 4): the conversation's current owner; the
agent who last served the customer, if qualified and free, within a bounded
wait; otherwise the best qualified free agent — required skills at level,
speaks the language, serves the channel, on shift, available, capacity left
on this channel type — least occupied first, then least recently assigned,
then a stable hash of the id (board.order_key). Nobody: queue, naming first the
qualified agents who could not take it (away, offline, off shift, at capacity).
Agents no connector reaches (their sink's channel is disabled, or its type has
no runtime) are never chosen, nor waited for; the qualified ones are named as
unreachable, with the cause, whoever gets it.
Every outcome says why, so `simulate` and the agent can see the reason.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from router.routing.board import AgentBoard

# Agents looked at and passed over, named in the reason, at most this many.
MAX_EXPLAINED = 8


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentView:
    """What the choice needs to know of one agent, at one moment."""

    id: str
    skills: Mapping[str, int]
    languages: frozenset[str]
    channels: frozenset[str]  # empty: every channel
    capacity: Mapping[str, int]  # channel type -> open conversations at once
    load: Mapping[str, int]  # channel type -> open conversations now
    status: str  # available | away | offline
    on_shift: bool
    last_assigned_at: datetime | None = None
    supervisor: bool = False
    unreachable: str | None = None  # why deliveries cannot reach them; None: they can

    def capacity_for(self, channel_type: str) -> int:
        return self.capacity.get(channel_type, 0)

    def load_for(self, channel_type: str) -> int:
        return self.load.get(channel_type, 0)

    def occupancy(self) -> float:
        """Share of total capacity in use, across channel types."""
        total = sum(self.capacity.values())
        return sum(self.load.values()) / total if total else 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Need:
    """What a conversation needs of its agent."""

    channel: str
    channel_type: str
    skills: Mapping[str, int] = field(default_factory=dict)
    language: str | None = None
    # The skills in a fixed order, computed once: checked against every agent.
    ordered_skills: tuple[tuple[str, int], ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "ordered_skills", tuple(sorted(self.skills.items())))


Rule = Literal["current_owner", "last_agent", "best_available", "queued", "waiting_for_last_agent"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Choice:
    agent_id: str | None
    rule: Rule
    reason: dict[str, Any]


def unqualified_because(agent: AgentView, need: Need) -> str | None:
    """Why this agent may never take the conversation (skills, language, channel)."""
    for skill, level in need.ordered_skills:
        have = agent.skills.get(skill, 0)
        if have < level:
            return f"needs {skill}>={level}, has {have}"
    if need.language and need.language not in agent.languages:
        return f"does not speak {need.language}"
    if agent.channels and need.channel not in agent.channels:
        return f"does not serve channel {need.channel}"
    return None


def unavailable_because(agent: AgentView, need: Need) -> str | None:
    """Why a qualified agent cannot take it now (reach, presence, shift, capacity)."""
    if agent.unreachable is not None:
        return f"unreachable: {agent.unreachable}"
    if agent.status != "available":
        return f"status {agent.status}"
    if not agent.on_shift:
        return "off shift"
    capacity = agent.capacity_for(need.channel_type)
    if agent.load_for(need.channel_type) >= capacity:
        return f"at capacity on {need.channel_type} ({capacity})"
    return None


def can_take(agent: AgentView, need: Need) -> bool:
    return unqualified_because(agent, need) is None and unavailable_because(agent, need) is None


def choose_agent(
    board: AgentBoard,
    need: Need,
    *,
    last_agent_id: str | None = None,
    wait_for_last_agent: bool = False,
    exclude: Collection[str] | Mapping[str, str] = (),
) -> Choice:
    """The agent for a conversation that has no owner, or None with the reason to queue.

    `last_agent_id` is the agent who last served this customer (any channel);
    while `wait_for_last_agent` is true (the bounded wait has not run out) and
    that agent is qualified but busy, the conversation waits for them.
    `exclude` names agents not to offer it to again: a mapping says why of
    each; a plain collection means they let it time out.
    The best agent is the first in the board's order who can take it, so
    agents after them are never looked at.
    """
    need_info: dict[str, Any] = {"skills": dict(need.skills), "language": need.language}
    last = board.get(last_agent_id)
    if (
        last is not None
        and last.id not in exclude
        and last.unreachable is None  # never waited for: they would never get it
        and unqualified_because(last, need) is None
    ):
        busy = unavailable_because(last, need)
        if busy is None:
            return Choice(
                agent_id=last.id,
                rule="last_agent",
                reason={"rule": "last_agent", "detail": "served this customer before", **need_info},
            )
        if wait_for_last_agent:
            return Choice(
                agent_id=None,
                rule="waiting_for_last_agent",
                reason={
                    "rule": "waiting_for_last_agent",
                    "agent": last.id,
                    "detail": f"previous agent busy ({busy}); waiting for them before widening",
                    **need_info,
                },
            )
    # Passed over whatever the walk reaches: named first.
    passed = sorted(exclude)[:MAX_EXPLAINED]
    if isinstance(exclude, Mapping):
        skipped = {agent_id: exclude[agent_id] for agent_id in passed}
    else:
        skipped = dict.fromkeys(passed, "did not take it in time")
    # Qualified agents nothing reaches: named whoever gets it (never walked).
    unreached: dict[str, str] = {}
    for agent in board.unreachable():
        if len(skipped) + len(unreached) >= MAX_EXPLAINED:
            break
        if agent.id in exclude or agent.capacity_for(need.channel_type) <= 0:
            continue
        if unqualified_because(agent, need) is None:
            unreached[agent.id] = unavailable_because(agent, need) or ""
    # Qualified but unable to take it now, and unqualified: the first say more. Only
    # the first MAX_EXPLAINED agents the walk passes are told apart (the walk stays
    # as cheap as it was: its agents are mostly at capacity or unqualified).
    unable: dict[str, str] = {}
    unfit: dict[str, str] = {}
    examined = 0
    for agent in board.walk(need.channel_type):
        examined += 1
        if agent.id in exclude:
            continue
        busy = unavailable_because(agent, need)
        why = (
            unqualified_because(agent, need) if busy is None or examined <= MAX_EXPLAINED else None
        )
        if busy is None and why is None:
            return Choice(
                agent_id=agent.id,
                rule="best_available",
                reason={
                    "rule": "best_available",
                    "detail": "least occupied qualified agent, then least recently assigned",
                    "examined": examined,
                    "occupancy": round(agent.occupancy(), 3),
                    "skipped": _named(skipped, unreached, unable, unfit),
                    **need_info,
                },
            )
        if examined <= MAX_EXPLAINED:
            if why is None:
                unable[agent.id] = busy or ""
            else:  # unqualified: that is why, busy or not (busy would read as qualified)
                unfit[agent.id] = why
    # Nobody: the qualified agents who are not here (away, offline, off shift) say why
    # it waits; looked for only now, and only until the explanation is full.
    if len(skipped) + len(unreached) + len(unable) < MAX_EXPLAINED:
        for agent in board.absent():
            if agent.id in exclude or agent.capacity_for(need.channel_type) <= 0:
                continue
            if unqualified_because(agent, need) is None:
                unable[agent.id] = unavailable_because(agent, need) or "not present"
                if len(skipped) + len(unreached) + len(unable) >= MAX_EXPLAINED:
                    break
    return Choice(
        agent_id=None,
        rule="queued",
        reason={
            "rule": "queued",
            "detail": "no qualified agent free",
            "present": board.present(need.channel_type),
            "skipped": _named(skipped, unreached, unable, unfit),
            **need_info,
        },
    )


def _named(*parts: dict[str, str]) -> dict[str, str]:
    """The agents passed over, in the order of `parts`, at most MAX_EXPLAINED."""
    named: dict[str, str] = {}
    for part in parts:
        for agent_id, why in part.items():
            if len(named) == MAX_EXPLAINED:
                return named
            named.setdefault(agent_id, why)
    return named
