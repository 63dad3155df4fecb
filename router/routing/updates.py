"""Regular updates while a customer waits for an answer (`channels[].update_every`).

What customers resent most is not waiting but not knowing. A conversation
waits for an answer while its latest customer message has no agent reply
after it. While it does, every `update_every` the customer is told where they
stand: on channel types that show the queue live (`live_standing`) and while
it is queued, a `standing` update (position and wait); else a message, from
`update_template` or a built-in English or Spanish text, saying we are still
on it and when we expect to answer. The acknowledgement counts as the first
word: the first update comes one interval after the customer wrote.

One timer at a time per conversation (its due kept in `thread_meta`), run on
the conversation's own key like every timer. A customer message schedules it
when none is pending; when it fires it tells only if the conversation still
waits for an answer, and then schedules the next. An agent's answer schedules
nothing and cancels nothing: the pending timer finds the answer and stops.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from router.routing import standing, timers
from router.routing.context import Routing, Unit
from router.routing.delivery import to_customer
from router.routing.language import primary
from router.store import routing as db

UPDATE_TIMER = "update"
# A conversation's `thread_meta` key: {"due": the pending timer's due, "n": updates told}.
STATE = "updates"
# Messages read back to find whether an agent answered the latest customer message: the
# router's own automatic messages may sit between them.
LOOK_BACK = 20

BUILT_IN = {
    "en": "We are still on it{name}: we expect to answer {expected}. Your reference is {ref}.",
    "es": "Seguimos con tu caso{name}: esperamos responderte {expected}. Tu referencia es {ref}.",
}
NO_ESTIMATE = {"en": "as soon as we can", "es": "lo antes posible"}


def every(ctx: Routing, conv: Any) -> Any:
    channel = ctx.channels.get(conv.channel)
    return channel.update_every if channel is not None else None


async def waiting_for_answer(unit: Unit, conv: Any) -> bool:
    """Open, and its latest customer message has no agent reply after it."""
    if conv.status != "open":
        return False
    for row in reversed(await db.transcript(unit.conn, conv.id, LOOK_BACK)):
        sender = (row.envelope or {}).get("sender") or {}
        if row.direction == "in" and sender.get("role", "customer") == "customer":
            return True
        if row.direction == "out" and sender.get("role") == "agent":
            return False
    return False


async def customer_wrote(ctx: Routing, unit: Unit, conv: Any) -> None:
    """A customer message on `conv`: the next update is due an interval from now, unless
    one is pending already (never more often than configured)."""
    interval = every(ctx, conv)
    if interval is None:
        return
    conv = await db.reload(unit.conn, conv.id)
    state = _state(conv)
    pending = state.get("due")
    if isinstance(pending, str) and datetime.fromisoformat(pending) > unit.now:
        return
    await _schedule(unit, conv, state, unit.now + interval)


async def tell(ctx: Routing, unit: Unit, conv: Any) -> None:
    """The `update` timer: tell the customer where they stand if they still wait for an
    answer, and schedule the next; else nothing more until they write again."""
    state = {**_state(conv), "due": None}
    interval = every(ctx, conv)
    if interval is None or not await waiting_for_answer(unit, conv):
        await _remember(unit, conv, state)
        unit.decide("update_skipped", conversation_id=conv.id, reason={"detail": "answered"})
        return
    if standing.live(ctx, conv.channel_type) and standing.waits(conv):
        where = await standing.standing_of(unit, conv)
        await to_customer(
            ctx, unit, conv, "", purpose="update", auto=True, standing=where, record=False
        )
        told: dict[str, Any] = {"position": where.position, "wait": where.wait}
    else:
        told = await _message(ctx, unit, conv)
    state["n"] = int(state.get("n", 0)) + 1
    await _schedule(unit, conv, state, unit.now + interval)
    unit.decide("update", conversation_id=conv.id, queue=conv.queue, reason=told)


async def _message(ctx: Routing, unit: Unit, conv: Any) -> dict[str, Any]:
    cust = await unit.customer(conv.customer_id)
    default = ctx.config.routing.default_language
    language = conv.language or default
    due = conv.sla_due_at if conv.sla_due_at and conv.sla_due_at > unit.now else None
    template = (ctx.channels[conv.channel]).update_template
    if template is not None and template in ctx.config.templates:
        used, text = timers.customer_text(
            ctx, conv, cust.display_name or "", template, unit.now, due
        )
    else:
        used = "es" if primary(language) == "es" else "en"
        fields = timers.promise_fields(ctx, conv.channel, used, unit.now, due)
        name = cust.display_name
        text = BUILT_IN[used].format(
            name=f", {name}" if name else "",
            expected=fields["expected_response"] or NO_ESTIMATE[used],
            ref=conv.ref or "",
        )
    await to_customer(
        ctx, unit, conv, text, purpose="update", auto=True, template=template, language=used
    )
    return {"template": template, "language": used, "due": due.isoformat() if due else None}


def _state(conv: Any) -> dict[str, Any]:
    state = (conv.thread_meta or {}).get(STATE)
    return dict(state) if isinstance(state, dict) else {}


async def _schedule(unit: Unit, conv: Any, state: dict[str, Any], due: datetime) -> None:
    await db.schedule_timer(
        unit.conn,
        f"{UPDATE_TIMER}:{conv.id}:{due.isoformat()}",
        conv.id,
        UPDATE_TIMER,
        due,
        {},
        unit.now,
    )
    await _remember(unit, conv, {**state, "due": due.isoformat()})


async def _remember(unit: Unit, conv: Any, state: dict[str, Any]) -> None:
    conv = await db.reload(unit.conn, conv.id)
    await db.update_conversation(
        unit.conn, conv.id, thread_meta={**(conv.thread_meta or {}), STATE: state}
    )
