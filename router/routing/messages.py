"""Customer messages: who the customer is, which conversation, how it is classified, routed.

A conversation is (channel, thread key) and lives on the channel it started
on; a new message from the same customer elsewhere opens a conversation there,
linked to the same customer, whose routing sees the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from router.envelope import Bounce, Envelope
from router.errors import EnvelopeError
from router.routing import answer_at, calls, failures, praise, standing, updates
from router.routing.assign import release_removed_owner, route
from router.routing.classify import CustomerFacts, classify
from router.routing.context import Routing, Unit
from router.routing.conversations import open_conversation
from router.routing.delivery import REPLY_CONTEXT, UNREACHABLE, deliver, to_customer
from router.routing.identity import Identity, IdentityError
from router.routing.queueing import LEVEL_NAMES, PRIORITY_LEVELS
from router.routing.timers import customer_text, satisfaction_answer, schedule_sla, sla_due
from router.store import routing as db


async def resolve_customer(
    ctx: Routing, unit: Unit, env: Envelope, ident: Identity, owner: str | None
) -> str:
    """The customer behind the sender (`ident`, whose customer is `owner`, None: none
    yet); links only what is safe to link.

    A new sender identity joins the customer that owns an identity the
    sender stated themselves (their own Telegram contact, a chat form);
    two customers that both exist already are never merged: a conflicting
    link becomes a suggestion for agents.
    """
    conn = unit.conn
    stated = [
        (s, await db.identity_owner(conn, s.kind, s.value))
        for s in ctx.stated_identities(env)
        if s != ident
    ]
    if owner is None:
        known = sorted({o for _, o in stated if o is not None})
        if len(known) == 1:
            owner = known[0]
            unit.decide(
                "link",
                reason={
                    "identity": ident.kind,
                    "source": "sender stated an identity of a known customer",
                },
            )
            owner = await unit.add_identity(ident.kind, ident.value, owner, "auto")
        else:
            created = await unit.create_customer(env.sender.name)
            owner = await unit.add_identity(ident.kind, ident.value, created, "auto")
            if owner == created:  # not a sender another router process linked meanwhile
                unit.opened.add(owner)
    for s, current in stated:
        if current is None:
            await unit.add_identity(s.kind, s.value, owner, "stated")
            unit.decide("link", reason={"identity": s.kind, "source": "stated by the customer"})
        elif current != owner and await unit.suggest_link(
            s.kind, s.value, current, owner, "stated"
        ):
            unit.decide(
                "suggest_link",
                reason={
                    "identity": s.kind,
                    "detail": "identity belongs to another customer; agents decide",
                },
            )
    return owner


def machine_mail(env: Envelope) -> bool:
    """Lists, bulk and other automatic messages (an auto-reply to us is not): recorded only."""
    auto = env.automated
    return auto is not None and auto.auto and not auto.auto_reply


def resolves_customer(env: Envelope) -> bool:
    """False for what is recorded without a customer: bounces and machine mail."""
    return bounce_report(env) is None and not machine_mail(env)


def bounce_report(env: Envelope) -> Bounce | None:
    return env.automated.bounce if env.automated is not None else None


async def customer_message(ctx: Routing, unit: Unit, env: Envelope) -> None:
    if env.request is not None:
        # Asked of the router (a transcript), not of an agent: not routed, not kept.
        await answer_at.request(ctx, unit, env)
        return
    report = bounce_report(env)
    if report is not None:
        # A delivery report, not a customer: an incident for the message it bounces.
        await ctx.store.add_message(env, conn=unit.conn)
        if not await failures.bounce(ctx, unit, env, report):
            unit.decide("ignore", reason={"detail": "bounce of a message that is not ours"})
        return
    if env.automated is not None and machine_mail(env):
        # Lists, bulk and other machine mail: no conversation, no acknowledgement (no loops).
        await ctx.store.add_message(env, conn=unit.conn)
        unit.decide(
            "ignore",
            reason={"detail": "automatic mail", "why": list(env.automated.reasons)},
        )
        return
    conn, now = unit.conn, unit.now
    try:
        ident = ctx.sender_identity(env)
        arrival = await db.arrival_reads(
            conn, (ident.kind, ident.value), answer_at.alias_of(env), env.channel, env.thread_key
        )
        customer_id = await resolve_customer(ctx, unit, env, ident, arrival.owner)
    except IdentityError as exc:
        raise EnvelopeError(f"sender: {exc}") from exc
    # The customer's answer in the thread we started elsewhere for a conversation: first,
    # so one that someone else's answer in that thread opened cannot take it over.
    conv = await answer_at.joined(ctx, unit, env, arrival.alias_of)
    elsewhere = conv is not None
    if conv is None:
        conv = arrival.by_thread
    current = conv.thread_meta if conv is not None else {}
    thread_meta = merged_thread_meta(ctx, env, current, elsewhere=elsewhere)
    fresh = conv is None
    reopened = False
    if conv is None:
        conv = await open_conversation(
            ctx, unit, env.channel, env.thread_key, customer_id, thread_meta=thread_meta
        )
    elif elsewhere:
        conv = await db.update_conversation(conn, conv.id, thread_meta=thread_meta, updated_at=now)
    else:  # the thread's own conversation, which the arrival reads locked
        conv = await db.change_held_conversation(
            conn, conv, thread_meta=thread_meta, updated_at=now
        )
    await ctx.store.add_message(env.model_copy(update={"conversation_id": conv.id}), conn=conn)
    if env.call is not None and calls.requested(env.call):
        # Asked here, owed on the channel that carries callbacks (to the customer whose
        # number it is): calls.py decides.
        async def route_callback(c: Any) -> None:
            await classify_and_route(ctx, unit, c, env, c.customer_id)

        await calls.request(ctx, unit, conv, env, route_callback, fresh=fresh)
        return

    if conv.status in ("resolved", "closed"):
        if env.call is not None and not calls.reopens(env.call):
            # An answered call (or a record about one) in a closed conversation: logged.
            unit.decide("call_logged", conversation_id=conv.id, reason={"call": env.call.id})
            return
        if env.call is None and await satisfaction_answer(ctx, unit, conv, env):
            return
        if env.call is None and await thanked(ctx, unit, conv, env):
            return
        conv = await db.update_conversation(conn, conv.id, status="open", resolved_at=None)
        unit.decide("reopen", conversation_id=conv.id, reason={"detail": "customer wrote again"})
        fresh = reopened = True
    if env.automated is not None and env.automated.auto_reply:
        # Out-of-office and similar: kept in the transcript, no ack, no SLA reset.
        unit.decide(
            "transcript_only", conversation_id=conv.id, reason={"detail": "automatic reply"}
        )
        return
    if env.call is None:
        await updates.customer_wrote(ctx, unit, conv)
    if conv.owner_agent_id is not None and conv.owner_agent_id not in ctx.agents:
        # Their agent left the config: someone else takes it, with the whole transcript.
        conv = await release_removed_owner(ctx, unit, conv)
        if env.call is None:
            await route(ctx, unit, conv, widen=True)
            return
    if env.call is not None:

        async def new_request(c: Any) -> None:
            await classify_and_route(ctx, unit, c, env, customer_id)

        await calls.call(ctx, unit, conv, env, new_request, reopened=reopened)
        return
    if conv.owner_agent_id is not None:
        reason: dict[str, Any] = {"rule": "current_owner", "detail": "one conversation, one owner"}
        if env.call is None and praise.praise_in(ctx.config, env.text) is not None:
            # Praise for the agent who has it: counted, and this delivery says so.
            reason["praise"] = await praise.record(
                ctx, unit, conv, conv.owner_agent_id, env.text, "message"
            )
        await deliver(ctx, unit, conv, conv.owner_agent_id, "message", reason)
        unit.decide(
            "deliver",
            conversation_id=conv.id,
            agent=conv.owner_agent_id,
            reason={"rule": "current_owner"},
        )
        return
    if conv.waiting_since is not None and not fresh:
        unit.decide(
            "queued",
            conversation_id=conv.id,
            queue=conv.queue,
            priority=LEVEL_NAMES[conv.priority],
            reason={"detail": "already waiting; message added to the transcript"},
        )
        return
    await classify_and_route(ctx, unit, conv, env, customer_id)


async def thanked(ctx: Routing, unit: Unit, conv: Any, env: Envelope) -> bool:
    """A resolved conversation's customer writes praise (and asks nothing): relayed to
    the agent who resolved it; the conversation stays resolved."""
    if "?" in env.text or "¿" in env.text or praise.praise_in(ctx.config, env.text) is None:
        return False
    handler = praise.handler_of(conv)
    if handler is None:
        return False
    await praise.relay(ctx, unit, conv, handler, env.text, "message")
    return True


def merged_thread_meta(
    ctx: Routing, env: Envelope, current: Mapping[str, Any], *, elsewhere: bool = False
) -> dict[str, Any]:
    """The conversation's thread facts: its subject, the reply context of the latest
    customer message that had one (the channel's own, handed back on every reply), and
    the address they agreed to be answered at too. `elsewhere`: the message came in the
    thread started for that address, whose own reply context it updates."""
    meta = dict(current)
    if elsewhere:
        answer_at.answered(meta, env)
        return meta
    meta.pop(UNREACHABLE, None)  # they wrote: the channel reaches them again
    meta.setdefault("subject", env.subject)
    if env.reply_context:
        meta[REPLY_CONTEXT] = dict(env.reply_context)
    if env.answer_at is not None:
        answer_at.agreed(meta, env.answer_at)
    return meta


async def classify_and_route(
    ctx: Routing, unit: Unit, conv: Any, env: Envelope, customer_id: str
) -> None:
    conn, now = unit.conn, unit.now
    cust = await unit.customer(customer_id)
    facts = CustomerFacts(tier=cust.tier, tags=frozenset(cust.tags or ()), language=cust.language)
    result = classify(
        env,
        facts,
        ctx.config.routing,
        languages=ctx.languages,
        now=now,
        hours=ctx.config.business_hours,
    )
    if result.language and result.language != cust.language:
        await unit.set_customer_language(customer_id, result.language)
    level = PRIORITY_LEVELS[result.priority]
    due = sla_due(ctx, conv.channel, conv.channel_type, result.priority, now)
    window_start = now - ctx.config.routing.last_agent_window
    last = None
    if not unit.unassigned(customer_id):  # a customer new in this unit has had no agent
        last = await db.last_agent_of(conn, customer_id, window_start)
    conv = await db.update_conversation(
        conn,
        conv.id,
        skills=dict(result.skills),
        language=result.language,
        tags=sorted(set(conv.tags or ()) | set(result.tags)),
        complaint=result.complaint,
        priority=level,
        queue=result.queue,
        sla_due_at=due,
        preferred_agent_id=last,
        prefer_until=now + ctx.config.routing.last_agent_wait if last else None,
    )
    unit.decide(
        "classify",
        conversation_id=conv.id,
        queue=result.queue,
        priority=result.priority,
        reason={
            "rules": list(result.rules),
            "why": list(result.reasons),
            "skills": dict(result.skills),
            "language": result.language,
            "complaint": result.complaint,
        },
    )
    if result.complaint:
        await unit.incident(
            "complaint",
            conv.id,
            customer_id,
            "complaint detected",
            {"reasons": list(result.reasons)},
        )
    if due is not None and conv.first_response_at is None:
        await schedule_sla(ctx, unit, conv, now, due)
    ack = await acknowledge(ctx, unit, conv, cust, due)
    if conv.owner_agent_id is not None:
        # A new request (a callback) on a conversation someone owns: it stays theirs.
        reason = {"rule": "current_owner", "detail": "one conversation, one owner"}
        await deliver(ctx, unit, conv, conv.owner_agent_id, "message", reason)
        unit.decide("deliver", conversation_id=conv.id, agent=conv.owner_agent_id, reason=reason)
        return
    if not await route(ctx, unit, conv) and ack is not None:
        await standing.amend_ack(ctx, unit, conv.id, ack)


async def acknowledge(
    ctx: Routing, unit: Unit, conv: Any, cust: Any, due: datetime | None
) -> tuple[Callable[[], int], Envelope] | None:
    """Acknowledge at once with the promised wait; its outbox row and envelope (None: the
    channel sends none), so the position can join it once the conversation is routed."""
    channel = ctx.channels.get(conv.channel)
    template = channel.acknowledge if channel is not None else None
    if template is None or template not in ctx.config.templates:
        return None
    used, text = customer_text(ctx, conv, cust.display_name or "", template, unit.now, due)
    ack = await to_customer(
        ctx, unit, conv, text, purpose="ack", auto=True, template=template, language=used
    )
    unit.decide(
        "ack",
        conversation_id=conv.id,
        reason={
            "template": template,
            "language": used,
            "due": due.isoformat() if due else None,
        },
    )
    return ack
