"""Promises agents make to customers, kept track of until kept or broken.

`promise <due> <text>` (from any of the agent's tools: `#promise 17:00 call back
with the refund status` by mail, `/promise ...` on Telegram, a webhook command)
records what the conversation's owner promised and by when (`router.routing.promised`
reads the due time). From then on:

- every delivery of the conversation lists it (`context.promises`), so whoever
  owns the conversation, after a transfer too, knows what we owe the customer;
- `routing.promises.remind_before` its due time (or at 80% of the time given,
  when later) the conversation's owner then is reminded: a `promise_due` delivery;
- `kept` closes the conversation's open promises (`kept <id>`: that one);
- falling due unkept, it is broken, once: the customer is told on their own
  channel that we are still on it (unless an agent wrote to them within
  `routing.promises.recent_reply`, after the promise was made: they just heard
  from us), supervisors get a `promise_broken` delivery, and a `broken_promise`
  incident records it.

Promises are rows in the store and their reminder and due time are store timers
keyed by the promise's id: they survive restarts, reloads and reassignment, and
fire once. Resolving a conversation does not keep its promises: `kept` does.
"""

from __future__ import annotations

from typing import Any, Final

from router.envelope import Envelope
from router.routing.context import Routing, Unit
from router.routing.delivery import deliver, to_customer
from router.routing.promised import (
    OPEN_LIMIT,
    PromiseError,
    builtin_text,
    due_phrase,
    parse,
    remind_at,
)
from router.routing.templates import render, template_language
from router.store import routing as db

COMMANDS: Final = frozenset({"promise", "kept"})
REMINDER_TIMER = "promise_reminder"
DUE_TIMER = "promise_due"
TIMERS: Final = frozenset({REMINDER_TIMER, DUE_TIMER})


def _keys(promise_id: int) -> list[str]:
    return [f"{REMINDER_TIMER}:{promise_id}", f"{DUE_TIMER}:{promise_id}"]


def agent_zone(ctx: Routing, agent_id: str, channel: str) -> tuple[str, Any]:
    """The time zone and schedule an agent's promise is read in: their own zone, else
    their schedule's, else the conversation channel's, else UTC; their schedule read
    in their zone (None: they work around the clock)."""
    agent = ctx.agents[agent_id]
    hours = ctx.config.business_hours.get(agent.schedule) if agent.schedule else None
    zone = agent.timezone or (hours.timezone if hours else None) or ctx.tz_for(channel) or "UTC"
    if hours is not None and hours.timezone != zone:
        hours = hours.model_copy(update={"timezone": zone})
    return zone, hours


async def command(
    ctx: Routing, unit: Unit, conv: Any, agent_id: str, name: str, args: list[str]
) -> str:
    """Apply `promise` or `kept` from an agent allowed to act on `conv`; what it did, in
    words, for the transcript. `PromiseError` (nothing applied) when it cannot be."""
    if name == "promise":
        return await make(ctx, unit, conv, agent_id, args)
    return await keep(ctx, unit, conv, agent_id, args)


async def make(ctx: Routing, unit: Unit, conv: Any, agent_id: str, args: list[str]) -> str:
    zone, hours = agent_zone(ctx, agent_id, conv.channel)
    due, text = parse(" ".join(args), unit.now, zone, hours)
    if len(await db.promises_of(unit.conn, conv.id, open_only=True)) >= OPEN_LIMIT:
        raise PromiseError(f"this conversation already has {OPEN_LIMIT} open promises", "promises")
    row = await db.add_promise(unit.conn, conv.id, agent_id, text, due, unit.now)
    reminder, due_key = _keys(row.id)
    payload = {"promise": row.id}
    before = ctx.config.routing.promises.remind_before
    await db.schedule_timer(
        unit.conn,
        reminder,
        conv.id,
        REMINDER_TIMER,
        remind_at(unit.now, due, before),
        payload,
        unit.now,
    )
    await db.schedule_timer(unit.conn, due_key, conv.id, DUE_TIMER, due, payload, unit.now)
    unit.decide(
        "promise",
        conversation_id=conv.id,
        agent=agent_id,
        reason={"promise": row.id, "due": due.isoformat(), "text": text, "timezone": zone},
    )
    return f"promise {row.id} by {agent_id}, due {due.isoformat()}: {text}"


async def keep(ctx: Routing, unit: Unit, conv: Any, agent_id: str, args: list[str]) -> str:
    open_ones = await db.promises_of(unit.conn, conv.id, open_only=True)
    chosen = open_ones
    if args:
        chosen = [p for p in open_ones if str(p.id) == args[0].lstrip("#")]
        if not chosen:
            raise PromiseError(f"no open promise {args[0][:40]!r} on this conversation", "kept")
    elif not open_ones:
        raise PromiseError("this conversation has no open promise", "kept")
    for p in chosen:
        await db.close_promise(unit.conn, p.id, "kept", agent_id, unit.now)
        await db.cancel_timer_keys(unit.conn, _keys(p.id), unit.now)
    unit.decide(
        "kept",
        conversation_id=conv.id,
        agent=agent_id,
        reason={"promises": [p.id for p in chosen]},
    )
    return f"promise kept by {agent_id}: " + "; ".join(f"{p.id} {p.text}" for p in chosen)


async def timer(ctx: Routing, unit: Unit, conv: Any, env: Envelope) -> None:
    """A promise's reminder or due time has come."""
    kind = env.meta.get("timer")
    promise_id = env.meta.get("payload", {}).get("promise")
    row = await db.promise(unit.conn, promise_id) if isinstance(promise_id, int) else None
    if row is None or row.state != "open":
        unit.decide(
            "ignore",
            conversation_id=conv.id,
            reason={"detail": f"promise {promise_id} is no longer open", "timer": kind},
        )
        return
    if kind == REMINDER_TIMER:
        await remind(ctx, unit, conv, row)
    else:
        await broken(ctx, unit, conv, row)


def _reason(row: Any, rule: str) -> dict[str, Any]:
    return {
        "rule": rule,
        "detail": f"promised for {row.due_at.isoformat()}: {row.text}",
        "promise": row.id,
        "due": row.due_at.isoformat(),
    }


async def remind(ctx: Routing, unit: Unit, conv: Any, row: Any) -> None:
    """Tell whoever owns the conversation now (else whoever made the promise)."""
    agent_id = conv.owner_agent_id or row.made_by
    delivered = agent_id in ctx.agents and await deliver(
        ctx, unit, conv, agent_id, "promise_due", _reason(row, "promise_due")
    )
    unit.decide(
        "promise_reminder",
        conversation_id=conv.id,
        agent=agent_id if delivered else None,
        reason={"promise": row.id, "due": row.due_at.isoformat(), "reminded": bool(delivered)},
    )


async def broken(ctx: Routing, unit: Unit, conv: Any, row: Any) -> None:
    if not await db.close_promise(unit.conn, row.id, "broken", None, unit.now):
        return
    settings = ctx.config.routing.promises
    since = max(row.made_at, unit.now - settings.recent_reply)
    told = not await db.agent_wrote_since(unit.conn, conv.id, since)
    if told:
        await tell_customer(ctx, unit, conv, row)
    reason = _reason(row, "promise_broken")
    supervisors = [a.id for a in ctx.config.agents if a.supervisor]
    for sup in supervisors:
        await deliver(ctx, unit, conv, sup, "promise_broken", reason)
    details = {
        "promise": row.id,
        "text": row.text,
        "due": row.due_at.isoformat(),
        "made_by": row.made_by,
        "owner": conv.owner_agent_id,
        "customer_told": told,
    }
    await db.record_incident(
        unit.conn,
        "broken_promise",
        conv.id,
        conv.customer_id,
        "promise not kept by its due time",
        details,
        unit.now,
    )
    unit.decide(
        "promise_broken",
        conversation_id=conv.id,
        agent=conv.owner_agent_id,
        reason={**details, "supervisors": supervisors},
    )


async def tell_customer(ctx: Routing, unit: Unit, conv: Any, row: Any) -> None:
    """ "We promised X by Y; we are still on it", in the customer's language."""
    cust = await unit.customer(conv.customer_id)
    default = ctx.config.routing.default_language
    name = ctx.config.routing.promises.broken_template
    wanted = conv.language or cust.language or default
    if name is not None and name in ctx.config.templates:
        language = template_language(ctx.config.templates, name, wanted, default_language=default)
    else:
        name, language = None, wanted
    fields = {
        "customer_name": cust.display_name or "",
        "conversation_ref": conv.ref or "",
        "promise": row.text,
        "promise_due": due_phrase(row.due_at, unit.now, language, ctx.tz_for(conv.channel)),
    }
    if name is not None:
        used, text = render(
            ctx.config.templates, name, language, default_language=default, **fields
        )
    else:
        used, text = builtin_text(language, fields)
    await to_customer(
        ctx,
        unit,
        conv,
        text,
        purpose="promise_update",
        auto=True,
        template=name,
        language=used,
    )
