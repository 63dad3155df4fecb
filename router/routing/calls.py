"""Calls: a call owed to the customer (a callback) and what answered calls change.

Read from the envelope's `call` part only, whatever channel logged it:

- An inbound call that ended unreturned (missed, abandoned, voicemail) opens a
  callback on its conversation: it is classified and routed as a new request,
  with the channel's first-response target (a fresh one, even on a
  conversation answered before). Another such call while the callback is open
  joins it and raises its priority one level (up to urgent), and its target to
  that priority's when sooner: never a second callback.
- An answered call makes the agent who took it the conversation's owner (when
  they are configured and available; otherwise the owner stays). An answered
  inbound call closes an open callback: the customer got through.
- A customer who asks to be called back (`requested`, on any channel: a web chat's
  "call me back") is owed a callback like a missed call: it opens (or joins) on
  the first configured channel whose type carries callbacks, in the thread of the
  number they stated, and they are told so where they asked.
- The owner reports how a callback went: `called [resolve]` (returned; with
  `resolve` the conversation is resolved too), `no-answer` (they are reminded
  after `routing.callbacks.retry_after`; after `attempts` we stop: the customer
  is told on another channel we know for them and an incident is recorded),
  `wrong-number` (the callback ends and the conversation is resolved).

The callback's state lives in the conversation's `thread_meta` under `callback`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from router.envelope import REQUESTED, UNRETURNED, Call, Envelope
from router.routing import timers
from router.routing.assign import owned_by, release, route
from router.routing.context import Routing, Unit
from router.routing.conversations import open_conversation
from router.routing.delivery import CALLBACK, deliver, to_customer
from router.routing.identity import PHONE, IdentityError
from router.routing.queueing import LEVEL_NAMES, PRIORITY_LEVELS, queue_rank
from router.routing.templates import render, template_language
from router.store import routing as db

# What the caller does next with a conversation (route it as new, resolve it).
Step = Callable[[Any], Awaitable[None]]
RETRY_TIMER = "callback_retry"
UNREACHED_INCIDENT = "callback_unreached"
COMMANDS = frozenset({"called", "no-answer", "wrong-number"})
# The answering agent already spoke with the customer: they own the conversation
# whatever their load (it is counted, not checked).
_ANY_LOAD = 1_000_000
UNREACHED_TEXT = (
    "Hello {customer_name}, we tried to call you back {attempts} times and could not reach"
    " you. Answer here whenever suits you and we will help (ref {conversation_ref})."
)


REQUESTED_TEXT = "Thank you: we will call you back on {number} (ref {conversation_ref})."
UNREADABLE_TEXT = "We could not read {number!r} as a phone number: please check it and ask again."


def callback_of(conv: Any) -> dict[str, Any]:
    """The conversation's open callback ({} when none). Resolving the conversation ends
    it too, whoever resolves it."""
    state = (conv.thread_meta or {}).get(CALLBACK) or {}
    return dict(state) if state.get("open") and conv.status == "open" else {}


def reopens(call: Call) -> bool:
    """A call after which the customer is owed one: it reopens a resolved conversation."""
    return call.direction == "inbound" and call.disposition in UNRETURNED


def requested(call: Call) -> bool:
    """The customer asked to be called back: no call yet, the callback may live elsewhere."""
    return call.direction == "inbound" and call.disposition == REQUESTED


def callback_channel(ctx: Routing, asked_on: str) -> str:
    """Where a callback asked for on `asked_on` lives: there when its type carries
    callbacks, else on the first configured channel whose type does (by the spec, not
    by name), else where it was asked."""
    carries = [
        c.name
        for c in ctx.config.channels
        if (spec := ctx.registry.get(c.type)) is not None and spec.carries_callbacks
    ]
    return asked_on if asked_on in carries or not carries else carries[0]


async def request(
    ctx: Routing, unit: Unit, conv: Any, env: Envelope, route_new: Step, *, fresh: bool
) -> None:
    """The customer asked on `conv` (recorded; `fresh`: opened by this request) to be
    called back on their stated phone number. `route_new(c)` classifies and routes `c`."""
    assert env.call is not None
    channel = callback_channel(ctx, conv.channel)
    stated = next((s.value for s in env.identities if s.kind == PHONE), "")
    try:
        # The region of the channel the call is made on reads a national number.
        number = ctx.normalize(PHONE, stated, channel).value
    except IdentityError as exc:
        unit.decide("ignore", conversation_id=conv.id, reason={"detail": f"callback: {exc}"})
        if fresh:
            await _resolve_asking(unit, conv)
        text = UNREADABLE_TEXT.format(number=stated)
        await to_customer(ctx, unit, conv, text, purpose="callback_refused", auto=True)
        return
    if channel == conv.channel:
        target, reopened = await _reopened(unit, conv)
    else:
        target, reopened = await _thread_of(ctx, unit, conv, channel, number)
        if fresh:
            await _resolve_asking(unit, conv)
    await _unreturned(ctx, unit, target, env.call, route_new, reopened=reopened)
    text = REQUESTED_TEXT.format(number=number, conversation_ref=target.ref or "")
    await to_customer(ctx, unit, conv, text, purpose="callback_requested", auto=True)


async def _resolve_asking(unit: Unit, conv: Any) -> None:
    """A conversation opened only to ask: nothing is owed on it (the callback lives
    elsewhere, or the number was unreadable); the customer's next message reopens it."""
    await db.update_conversation(unit.conn, conv.id, status="resolved", resolved_at=unit.now)
    unit.decide("resolve", conversation_id=conv.id, reason={"by": "callback request"})


async def _thread_of(
    ctx: Routing, unit: Unit, conv: Any, channel: str, number: str
) -> tuple[Any, bool]:
    """The conversation in the thread of `number` on `channel`, opened (or reopened) for
    the callback; whether it was resolved until now."""
    conn = unit.conn
    owner = await db.identity_owner(conn, PHONE, number)
    if owner is None:
        owner = await unit.add_identity(PHONE, number, conv.customer_id, "stated")
    target = await db.conversation_by_thread(conn, channel, number)
    if target is None:
        target = await open_conversation(ctx, unit, channel, number, owner)
        return target, False
    return await _reopened(unit, target)


async def _reopened(unit: Unit, conv: Any) -> tuple[Any, bool]:
    """`conv`, open again if it was resolved; whether it was."""
    if conv.status not in ("resolved", "closed"):
        return conv, False
    conv = await db.update_conversation(
        unit.conn, conv.id, status="open", resolved_at=None, updated_at=unit.now
    )
    unit.decide("reopen", conversation_id=conv.id, reason={"detail": "callback requested"})
    return conv, True


async def _set_callback(unit: Unit, conv: Any, state: dict[str, Any], **values: Any) -> Any:
    meta = dict(conv.thread_meta or {})
    meta[CALLBACK] = state
    return await db.update_conversation(
        unit.conn, conv.id, thread_meta=meta, updated_at=unit.now, **values
    )


async def call(
    ctx: Routing, unit: Unit, conv: Any, env: Envelope, route_new: Step, *, reopened: bool
) -> None:
    """Apply a logged call to its (recorded, open) conversation; `reopened`: it was
    resolved until this call (a callback it had then is over).

    `route_new(conv)` classifies and routes the conversation as a new request."""
    assert env.call is not None
    facts = env.call
    if reopens(facts):
        await _unreturned(ctx, unit, conv, facts, route_new, reopened=reopened)
    elif facts.disposition == "answered":
        await _answered(ctx, unit, conv, facts)
    else:
        # Busy, failed, our own unanswered call, a recording or transcript: the record.
        unit.decide(
            "call_logged",
            conversation_id=conv.id,
            reason={"call": facts.id, "disposition": facts.disposition},
        )
        if conv.owner_agent_id is not None:
            await deliver(ctx, unit, conv, conv.owner_agent_id, "message", {"rule": "call"})


async def _unreturned(
    ctx: Routing, unit: Unit, conv: Any, facts: Call, route_new: Step, *, reopened: bool
) -> None:
    state = {} if reopened else callback_of(conv)
    if state:
        calls = int(state.get("calls", 1)) + 1
        level = min(conv.priority + 1, PRIORITY_LEVELS["urgent"])
        values: dict[str, Any] = {"priority": level}
        if conv.waiting_since is not None:
            values["queue_rank"] = queue_rank(
                level, conv.waiting_since, ctx.config.routing.aging_step
            )
        conv = await _set_callback(unit, conv, {**state, "calls": calls}, **values)
        due = await _sooner(ctx, unit, conv, state)
        unit.decide(
            "callback_join",
            conversation_id=conv.id,
            priority=LEVEL_NAMES[level],
            reason={
                "calls": calls,
                "call": facts.id,
                "disposition": facts.disposition,
                "due": due.isoformat() if due else None,
            },
        )
        if conv.owner_agent_id is not None:
            await deliver(
                ctx, unit, conv, conv.owner_agent_id, "message", {"rule": "callback_join"}
            )
        return
    state = {"open": True, "calls": 1, "attempts": 0, "since": unit.now.isoformat()}
    tags = sorted({*(conv.tags or ()), CALLBACK})
    # A new request: a fresh first-response target, even on a conversation answered before.
    conv = await _set_callback(unit, conv, state, tags=tags, first_response_at=None)
    unit.decide(
        "callback_open",
        conversation_id=conv.id,
        reason={"call": facts.id, "disposition": facts.disposition, "wait": facts.wait},
    )
    await route_new(conv)


async def _sooner(ctx: Routing, unit: Unit, conv: Any, state: dict[str, Any]) -> datetime | None:
    """The first-response target of the callback's new priority, counted from its first
    call, when that is sooner than the one it has: the SLA timers move to it."""
    if conv.first_response_at is not None or not state.get("since"):
        return conv.sla_due_at  # type: ignore[no-any-return]
    since = datetime.fromisoformat(state["since"])
    due = timers.sla_due(ctx, conv.channel, conv.channel_type, LEVEL_NAMES[conv.priority], since)
    if due is None or (conv.sla_due_at is not None and due >= conv.sla_due_at):
        return conv.sla_due_at  # type: ignore[no-any-return]
    due = max(due, unit.now)
    await db.cancel_timers(unit.conn, conv.id, timers.SLA_TIMERS, unit.now)
    conv = await db.update_conversation(unit.conn, conv.id, sla_due_at=due)
    await timers.schedule_sla(ctx, unit, conv, unit.now, due)
    return due


async def _answered(ctx: Routing, unit: Unit, conv: Any, facts: Call) -> None:
    agent_id = facts.agent if facts.agent in ctx.agents else None
    if agent_id is not None and conv.owner_agent_id != agent_id:
        conv = await _make_owner(ctx, unit, conv, agent_id, facts)
    state = callback_of(conv)
    if state and facts.direction == "inbound":
        conv = await _close(ctx, unit, conv, state, "answered inbound call")
        if conv.owner_agent_id is None:
            # Nobody to own it: the customer got through, nothing is owed.
            await db.update_conversation(
                unit.conn, conv.id, status="resolved", resolved_at=unit.now
            )
            unit.decide("resolve", conversation_id=conv.id, reason={"by": "answered call"})
        return
    unit.decide(
        "call_logged",
        conversation_id=conv.id,
        agent=agent_id,
        reason={"call": facts.id, "disposition": facts.disposition},
    )


async def _make_owner(ctx: Routing, unit: Unit, conv: Any, agent_id: str, facts: Call) -> Any:
    if not await db.take_capacity(unit.conn, agent_id, conv.channel_type, _ANY_LOAD, unit.now):
        unit.decide(
            "call_logged",
            conversation_id=conv.id,
            agent=conv.owner_agent_id,
            reason={"detail": f"{agent_id} took the call but is not available: owner kept"},
        )
        return conv
    ctx.board = None  # loads changed outside the board: read it again when next needed
    if conv.owner_agent_id is not None:
        _, conv = await release(ctx, unit, conv, f"call answered by {agent_id}")
    reason = {"rule": "answered_call", "call": facts.id}
    await unit.start_assignment(conv.id, agent_id, reason)
    await db.accept_assignment(unit.conn, conv.id, unit.now)
    await db.cancel_timers(unit.conn, conv.id, ("widen", "assignment_timeout"), unit.now)
    conv = await owned_by(unit, conv, agent_id)
    unit.decide("owner", conversation_id=conv.id, agent=agent_id, reason=reason)
    return conv


async def _close(ctx: Routing, unit: Unit, conv: Any, state: dict[str, Any], why: str) -> Any:
    """End the callback: it is answered (first response), nothing more is owed."""
    values: dict[str, Any] = {"waiting_since": None, "queue_rank": None}
    if conv.first_response_at is None:
        values["first_response_at"] = unit.now
    conv = await _set_callback(unit, conv, {**state, "open": False, "closed": why}, **values)
    await db.cancel_timers(unit.conn, conv.id, (*timers.SLA_TIMERS, RETRY_TIMER, "widen"), unit.now)
    unit.decide("callback_closed", conversation_id=conv.id, reason={"by": why})
    return conv


# --- the owner's outcome commands ---------------------------------------------------------


async def outcome(
    ctx: Routing, unit: Unit, conv: Any, agent_id: str, name: str, args: list[str], resolve: Step
) -> None:
    """`called`, `no-answer` or `wrong-number` on `conv`; `resolve(conv)` resolves it."""
    state = callback_of(conv)
    if not state:
        unit.decide(
            "ignore",
            conversation_id=conv.id,
            agent=agent_id,
            reason={"detail": f"{name}: no open callback on this conversation"},
        )
        return
    if name == "called":
        conv = await _close(ctx, unit, conv, state, f"called by {agent_id}")
        if args[:1] == ["resolve"]:
            await resolve(conv)
    elif name == "wrong-number":
        conv = await _close(ctx, unit, conv, state, f"wrong number, said {agent_id}")
        await resolve(conv)
    else:
        await _no_answer(ctx, unit, conv, agent_id, state)


async def _no_answer(
    ctx: Routing, unit: Unit, conv: Any, agent_id: str, state: dict[str, Any]
) -> None:
    policy = ctx.config.routing.callbacks
    attempts = int(state.get("attempts", 0)) + 1
    state = {**state, "attempts": attempts}
    if attempts < policy.attempts:
        due = unit.now + policy.retry_after
        conv = await _set_callback(unit, conv, state)
        await db.schedule_timer(
            unit.conn,
            f"{RETRY_TIMER}:{conv.id}:{attempts}",
            conv.id,
            RETRY_TIMER,
            due,
            {"attempt": attempts + 1},
            unit.now,
        )
        unit.decide(
            "callback_retry",
            conversation_id=conv.id,
            agent=agent_id,
            reason={"attempts": attempts, "of": policy.attempts, "retry_at": due.isoformat()},
        )
        return
    conv = await _close(ctx, unit, conv, state, f"unreached after {attempts} attempts")
    told = await _tell_elsewhere(ctx, unit, conv, attempts)
    await unit.incident(
        UNREACHED_INCIDENT,
        conv.id,
        conv.customer_id,
        f"customer not reached after {attempts} call attempts",
        {"attempts": attempts, "told_on": told},
    )
    unit.decide(
        "callback_unreached",
        conversation_id=conv.id,
        agent=agent_id,
        reason={"attempts": attempts, "told_on": told},
    )


async def _tell_elsewhere(ctx: Routing, unit: Unit, conv: Any, attempts: int) -> str | None:
    """Tell the customer on their latest conversation on another channel we can write on;
    that channel's name (None: we know no other)."""
    since = unit.now - timedelta(days=ctx.config.routing.context_days)
    others = await db.recent_conversations(unit.conn, conv.customer_id, since, conv.id)
    other = next((o for o in others if _elsewhere(ctx, conv, o)), None)
    if other is None:
        return None
    cust = await unit.customer(conv.customer_id)
    fields = {
        "customer_name": cust.display_name or "",
        "conversation_ref": other.ref or "",
        "attempts": str(attempts),
    }
    name = ctx.config.routing.callbacks.unreached_template
    default = ctx.config.routing.default_language
    if name is not None and name in ctx.config.templates:
        language = template_language(
            ctx.config.templates, name, other.language or default, default_language=default
        )
        used, text = render(
            ctx.config.templates, name, language, default_language=default, **fields
        )
    else:
        used, text = default, UNREACHED_TEXT.format(**fields)
    await to_customer(
        ctx,
        unit,
        other,
        text,
        purpose="callback_unreached",
        auto=True,
        template=name,
        language=used,
    )
    return str(other.channel)


def _elsewhere(ctx: Routing, conv: Any, other: Any) -> bool:
    """`other` is on another type of channel, one customers write on, still configured."""
    spec = ctx.registry.get(other.channel_type)
    return (
        other.channel_type != conv.channel_type
        and other.channel in ctx.channels
        and spec is not None
        and spec.customer_channel
    )


async def retry_due(ctx: Routing, unit: Unit, conv: Any, env: Envelope) -> None:
    """A `no-answer`'s delay is over: remind the owner (or route it) to call again."""
    if not callback_of(conv):
        unit.decide("ignore", conversation_id=conv.id, reason={"detail": "callback closed"})
        return
    attempt = env.meta.get("payload", {}).get("attempt")
    if conv.owner_agent_id is not None:
        await deliver(ctx, unit, conv, conv.owner_agent_id, "callback_retry", {"rule": RETRY_TIMER})
        unit.decide(
            "callback_retry_due",
            conversation_id=conv.id,
            agent=conv.owner_agent_id,
            reason={"attempt": attempt},
        )
    else:
        await route(ctx, unit, conv, widen=True)
