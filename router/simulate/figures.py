"""The closing figures per channel, and what changes between two runs of the same events.

First-response time is from the conversation's opening to its first agent
reply, on the clock (not business time: what the customer lived). "Within
target" is the share of conversations answered by their SLA due time (which
counts business hours) among those answered or already past due when the
events end; a conversation still inside its time is not counted either way.
Percentiles are nearest-rank. First-contact resolution is the share of the
conversations resolved when the events end that their first agent resolved, with no
transfer and no reopening (`router.routing.first_contact`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from router.routing import first_contact
from router.simulate.outputs import Entry, Output
from router.store import Store
from router.store.schema import conversations, incidents


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelFigures:
    channel: str
    conversations: int
    answered: int
    first_response_p50_s: float | None
    first_response_p95_s: float | None
    within_target: float | None  # share, 0..1; None: nothing answered or due yet
    waiting_for_agent: int  # open, nobody owns it
    unanswered: int  # open, no agent reply yet (owned or not)
    incidents: int
    # Share of the resolved resolved by their first agent, no transfer, never reopened.
    first_contact_resolution: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {"type": "summary", **asdict(self)}


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


async def channel_figures(store: Store, end: datetime) -> list[ChannelFigures]:
    async with store.transaction(readonly=True) as conn:
        convs = (await conn.execute(sa.select(conversations))).all()
        counted = (
            await conn.execute(
                sa.select(conversations.c.channel, sa.func.count())
                .select_from(incidents.join(conversations))
                .group_by(conversations.c.channel)
            )
        ).all()
    per_incidents = {channel: n for channel, n in counted}
    by_channel: dict[str, list[Any]] = defaultdict(list)
    for c in convs:
        by_channel[c.channel].append(c)
    resolved = first_contact.tally(convs)["channel"]
    figures = []
    for channel in sorted(by_channel):
        rows = by_channel[channel]
        waits = [
            (c.first_response_at - c.opened_at).total_seconds()
            for c in rows
            if c.first_response_at is not None
        ]
        judged = [
            c
            for c in rows
            if c.sla_due_at is not None and (c.first_response_at is not None or c.sla_due_at <= end)
        ]
        kept = [c for c in judged if c.first_response_at and c.first_response_at <= c.sla_due_at]
        open_rows = [c for c in rows if c.status == "open"]
        figures.append(
            ChannelFigures(
                channel=channel,
                conversations=len(rows),
                answered=len(waits),
                first_response_p50_s=percentile(waits, 0.5),
                first_response_p95_s=percentile(waits, 0.95),
                within_target=round(len(kept) / len(judged), 4) if judged else None,
                waiting_for_agent=sum(1 for c in open_rows if c.owner_agent_id is None),
                unanswered=sum(1 for c in open_rows if c.first_response_at is None),
                incidents=per_incidents.get(channel, 0),
                first_contact_resolution=first_contact.share(resolved.get(channel)),
            )
        )
    return figures


def who_gets_what(timeline: Sequence[Entry]) -> dict[str, list[str]]:
    """Per conversation (`channel/thread`), the agents it was delivered to, in order
    (supervisor notices apart)."""
    agents: dict[str, list[str]] = defaultdict(list)
    for e in timeline:
        item = e.item
        if isinstance(item, Output) and item.output == "delivery" and e.conversation:
            agent = str(item.fields.get("agent"))
            if agent not in agents[e.conversation]:
                agents[e.conversation].append(agent)
    return dict(agents)


@dataclass(frozen=True, kw_only=True, slots=True)
class Comparison:
    assignments: list[tuple[str, list[str], list[str]]]  # changed only: (conversation, old, new)
    figures: list[tuple[str, ChannelFigures | None, ChannelFigures | None]]

    def as_json(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = [
            {"type": "assignment", "conversation": c, "old": old, "new": new}
            for c, old, new in self.assignments
        ]
        for channel, old, new in self.figures:
            lines.append(
                {
                    "type": "summary",
                    "channel": channel,
                    "old": _bare(old),
                    "new": _bare(new),
                }
            )
        return lines


def _bare(f: ChannelFigures | None) -> dict[str, Any] | None:
    if f is None:
        return None
    data = asdict(f)
    del data["channel"]
    return data


def compare(
    old: tuple[Sequence[Entry], Sequence[ChannelFigures]],
    new: tuple[Sequence[Entry], Sequence[ChannelFigures]],
) -> Comparison:
    before, after = who_gets_what(old[0]), who_gets_what(new[0])
    changed = [
        (c, before.get(c, []), after.get(c, []))
        for c in sorted(set(before) | set(after))
        if before.get(c, []) != after.get(c, [])
    ]
    old_f: Mapping[str, ChannelFigures] = {f.channel: f for f in old[1]}
    new_f: Mapping[str, ChannelFigures] = {f.channel: f for f in new[1]}
    figures = [(ch, old_f.get(ch), new_f.get(ch)) for ch in sorted(set(old_f) | set(new_f))]
    return Comparison(assignments=changed, figures=figures)
