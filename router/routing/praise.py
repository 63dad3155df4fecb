"""Praise goes to the agent.

A customer message that reads as praise (`routing.praise` keywords, English and
Spanish shipped; complaint words win in a mixed message), or a good answer to the
satisfaction follow-up, is relayed to the agent who handled the conversation: its
owner, else the agent who resolved it. It is counted for them (the `praise` table,
`/status`, the `omnirouter_praise_total` metric) and reaches them once:

- on a conversation they own, the message itself is delivered to them as usual;
  its reason says it is praise;
- on a resolved conversation, a `praise` delivery with the customer's words; the
  conversation is not reopened for it (praise with a question in it is a new
  request, and reopens as any message does);
- a good follow-up answer closes the conversation, and a `praise` delivery goes to
  the agent who resolved it.

Supervisors get a weekly digest of each agent's praise through their own sink
(`routing.praise.digest_day` and `digest_time`, in the SLA clock's zone), when
there was any: a timer of its own (`praise_digest`), scheduled at start and again
each time it fires.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from router.agenttext import Reader
from router.config import Config
from router.routing import first_contact
from router.routing.classify import first_keyword, fold
from router.routing.context import Routing, Unit
from router.routing.delivery import agent_timezone, deliver, notice
from router.routing.hours import DAY_NAMES, sla_zone
from router.store import routing as db

DIGEST_TIMER = "praise_digest"
WORDS_KEPT = 500  # of the customer's words, in the store and the delivery
QUOTES_PER_AGENT = 3  # in the digest


def praise_in(config: Config, text: str) -> str | None:
    """The praise keyword `text` reads as (None: none, or it also reads as a complaint)."""
    folded = fold(text)
    routing = config.routing
    if first_keyword(routing.complaints.vocabulary(), folded) is not None:
        return None  # "great service until now, but this is unacceptable"
    found = first_keyword(routing.praise.vocabulary(), folded)
    return found[0] if found is not None else None


def handler_of(conv: Any) -> str | None:
    """Who handled the conversation: its owner, else the agent who last resolved it."""
    if conv.owner_agent_id is not None:
        return str(conv.owner_agent_id)
    agent = first_contact.judged(conv).get("agent")
    return str(agent) if agent else None


async def record(
    ctx: Routing, unit: Unit, conv: Any, agent_id: str, words: str, source: str
) -> dict[str, Any]:
    """Count praise for `agent_id`; the reason a delivery and the decision carry."""
    kept = words.strip()[:WORDS_KEPT]
    await db.record_praise(unit.conn, agent_id, conv.id, source, kept, unit.now)
    unit.decide("praise", conversation_id=conv.id, agent=agent_id, reason={"source": source})
    return {"rule": "praise", "source": source, "words": kept}


async def relay(
    ctx: Routing, unit: Unit, conv: Any, agent_id: str, words: str, source: str
) -> None:
    """Count it and tell the agent, with the customer's words."""
    reason = await record(ctx, unit, conv, agent_id, words, source)
    await deliver(ctx, unit, conv, agent_id, "praise", reason)


def next_digest(config: Config, after: datetime) -> datetime:
    """The first digest moment strictly after `after`."""
    zone = ZoneInfo(sla_zone(config))
    settings = config.routing.praise
    local = after.astimezone(zone)
    day = local.date() + timedelta(
        days=(DAY_NAMES.index(settings.digest_day) - local.weekday()) % 7
    )
    at = datetime.combine(day, settings.digest_time, tzinfo=zone)
    if at <= after:
        at = datetime.combine(day + timedelta(days=7), settings.digest_time, tzinfo=zone)
    return at.astimezone(UTC)


async def schedule_digest(ctx: Routing, conn: Any, now: datetime) -> None:
    """The next digest's timer (once: its key is its moment)."""
    if not ctx.config.routing.praise.digest:
        return
    due = next_digest(ctx.config, now)
    await db.schedule_timer(
        conn, f"{DIGEST_TIMER}:{due.isoformat()}", None, DIGEST_TIMER, due, {}, now
    )


async def digest(ctx: Routing, unit: Unit, due: datetime) -> None:
    """The week's praise per agent, to every supervisor; then the next digest."""
    since = due - timedelta(days=7)
    rows = await db.praise_since(unit.conn, since, due + timedelta(seconds=1))
    await schedule_digest(ctx, unit.conn, due)
    supervisors = [a for a in ctx.config.agents if a.supervisor]
    if not rows or not supervisors:
        unit.decide("praise_digest", reason={"praise": len(rows), "sent_to": []})
        return
    by_agent: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_agent[row.agent_id].append(row)
    refs = await db.conversation_refs(unit.conn, sorted({r.conversation_id for r in rows}))
    for sup in supervisors:
        reader = Reader.of(sup.languages[0], agent_timezone(ctx, sup))
        lines = [reader.word("digest.head", since=reader.day(since), until=reader.day(due))]
        for agent_id, praised in sorted(by_agent.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            name = ctx.agents[agent_id].name if agent_id in ctx.agents else agent_id
            lines.append(reader.word("digest.agent", agent=name, count=len(praised)))
            for row in praised[-QUOTES_PER_AGENT:]:
                ref = refs.get(row.conversation_id) or row.conversation_id[:8]
                lines.append(reader.word("digest.quote", ref=ref, words=row.words[:200]))
        counts = {agent_id: len(praised) for agent_id, praised in by_agent.items()}
        await notice(ctx, unit, sup, DIGEST_TIMER, "\n".join(lines), {"praise": counts})
    unit.decide(
        "praise_digest",
        reason={"praise": len(rows), "sent_to": [s.id for s in supervisors]},
    )
