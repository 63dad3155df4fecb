"""Agents' replies and commands: authenticated, then applied on the customer's own channel.

An agent is known by the address of their configured sink (their mailbox,
their Telegram id), or by their id on the webhook channel that is their sink;
acting on a conversation also needs the signed token from
the notification they received, issued to them. Anything else is rejected
with a logged reason and a short notice back to the sender.

The transcript keeps what happened once: an agent's reply is the reply the
customer received (stored when it goes out), and a command is stored as what
it did, in words ("transferred to billing by ana: ..."), once it is applied.
"""

from __future__ import annotations

from typing import Any

import structlog

from router.agenttext import Reader
from router.envelope import AGENT_COMMANDS as COMMANDS
from router.envelope import (
    Envelope,
)
from router.routing import answer_at, calls, first_contact, promises, signals, standing, tokens
from router.routing.assign import drain, release, route, set_status
from router.routing.context import Routing, Unit
from router.routing.delivery import (
    agent_timezone,
    deliver,
    notice,
    output_budget,
    specialist_text,
    to_customer,
)
from router.routing.identity import EMAIL, PHONE, IdentityError
from router.routing.promised import PromiseError
from router.routing.timers import SLA_TIMERS
from router.store import routing as db

log = structlog.get_logger(__name__)


async def authorised(ctx: Routing, unit: Unit, env: Envelope, agent_id: str) -> Any | None:
    """The conversation this agent may act on, from a valid token; None after rejecting."""
    token = env.meta.get("token")
    conv_id = tokens.verify(ctx.signing_key, token, agent_id) if isinstance(token, str) else None
    conv = await db.conversation(unit.conn, conv_id) if conv_id else None
    if conv is None:
        await reject(
            ctx, unit, agent_id, "missing or invalid conversation token", code="token", env=env
        )
        return None
    agent = ctx.agents[agent_id]
    if conv.owner_agent_id not in (None, agent_id) and not agent.supervisor:
        await reject(
            ctx,
            unit,
            agent_id,
            "conversation is owned by another agent",
            code="owner",
            conversation_id=conv.id,
        )
        return None
    return conv


async def named_conversation(
    ctx: Routing, unit: Unit, env: Envelope, agent_id: str | None
) -> str | None:
    """The conversation an agent's input is about, to name in its decision: the
    envelope's own, or the one its token names (issued to this agent, or at least
    a stored conversation: a forged token names nothing)."""
    if env.conversation_id:
        return env.conversation_id
    token = env.meta.get("token")
    if not isinstance(token, str):
        return None
    if agent_id is not None and (verified := tokens.verify(ctx.signing_key, token, agent_id)):
        return verified
    named = tokens.conversation_of(token)
    if named is None or await db.conversation(unit.conn, named) is None:
        return None
    return named


async def reject(
    ctx: Routing,
    unit: Unit,
    agent_id: str | None,
    why: str,
    *,
    code: str,
    conversation_id: str | None = None,
    env: Envelope | None = None,
) -> None:
    """Refuse an agent's input: `why` (which may quote what they sent) goes only to
    them and to `simulate`; the log gets `code`, a fixed kind of refusal. The decision
    names the conversation: `conversation_id`, else the one `env` names."""
    if conversation_id is None and env is not None:
        conversation_id = await named_conversation(ctx, unit, env, agent_id)
    log.warning(
        "agent input rejected",
        record_id=unit.input_id,
        agent=agent_id,
        conversation_id=conversation_id,
        reason=code,
    )
    unit.decide(
        "reject",
        conversation_id=conversation_id,
        agent=agent_id,
        reason={"code": code, "detail": why},
    )
    agent = ctx.agents.get(agent_id) if agent_id else None
    if agent is None:
        return
    reader = Reader.of(agent.languages[0], agent_timezone(ctx, agent))
    await notice(
        ctx,
        unit,
        agent,
        "rejected",
        reader.word("not_delivered", detail=why),
        {"detail": why},
        in_reply_to=unit.input_id,
    )


async def agent_reply(ctx: Routing, unit: Unit, env: Envelope) -> None:
    agent_id = ctx.agent_of(env)
    if agent_id is None:
        await reject(
            ctx, unit, None, "sender is not a configured agent", code="not_an_agent", env=env
        )
        return
    conv = await authorised(ctx, unit, env, agent_id)
    if conv is None:
        return
    limit = output_budget(ctx)  # the reply to the customer carries it with its addressing
    size = len(env.text.encode("utf-8", "surrogatepass"))
    if size > limit:
        # It could not go out on the bus; the agent hears why instead of the customer nothing.
        await reject(
            ctx,
            unit,
            agent_id,
            f"reply too long ({size} bytes; at most {limit})",
            code="too_long",
            conversation_id=conv.id,
        )
        return
    # Not stored as it came in: `to_customer` stores the reply as the customer gets it
    # (from this agent), and the transcript shows it once.
    agent = ctx.agents[agent_id]
    await to_customer(
        ctx,
        unit,
        conv,
        env.text,
        purpose="reply",
        auto=False,
        agent=agent,
        attachments=env.attachments,
    )
    await answer_at.copy_reply(ctx, unit, conv, env.text, agent, env.attachments)
    if conv.first_response_at is None:
        await db.update_conversation(unit.conn, conv.id, first_response_at=unit.now)
        await db.cancel_timers(unit.conn, conv.id, SLA_TIMERS, unit.now)
    await db.accept_assignment(unit.conn, conv.id, unit.now)
    unit.decide(
        "reply_out",
        conversation_id=conv.id,
        agent=agent_id,
        reason={"channel": conv.channel, "thread_key": conv.thread_key},
    )


async def command(ctx: Routing, unit: Unit, env: Envelope) -> None:
    agent_id = ctx.agent_of(env)
    name = env.command.name.lower() if env.command is not None else ""
    args = list(env.command.args) if env.command is not None else []
    if agent_id is None:
        await reject(
            ctx, unit, None, "sender is not a configured agent", code="not_an_agent", env=env
        )
        return
    if name not in COMMANDS:
        await reject(
            ctx, unit, agent_id, f"unknown command {name!r}", code="unknown_command", env=env
        )
        return
    if name in ("available", "away", "offline"):
        changed = await set_status(ctx, unit, agent_id, name)
        unit.decide("presence", agent=agent_id, reason={"status": name, "changed": changed})
        if name == "available":
            await drain(ctx, unit, [agent_id])
        return
    if name in signals.SIGNALS:
        await signals.signal(ctx, unit, env, agent_id, name)
        return
    conv = await authorised(ctx, unit, env, agent_id)
    if conv is None:
        return
    if name == "accept":
        await remember(ctx, unit, env, conv, f"accepted by {agent_id}")
        await db.accept_assignment(unit.conn, conv.id, unit.now)
        await db.cancel_timers(unit.conn, conv.id, ("assignment_timeout",), unit.now)
        unit.decide("accept", conversation_id=conv.id, agent=agent_id, reason={"by": agent_id})
    elif name == "resolve":
        await remember(ctx, unit, env, conv, f"resolved by {agent_id}")
        await resolve(ctx, unit, conv, agent_id)
    elif name == "transfer":
        await transfer(ctx, unit, env, conv, agent_id, args)
    elif name == "note":
        await remember(ctx, unit, env, conv, f"note by {agent_id}: {' '.join(args)}")
        unit.decide(
            "note", conversation_id=conv.id, agent=agent_id, reason={"note": " ".join(args)}
        )
    elif name == "reopen":
        await remember(ctx, unit, env, conv, f"reopened by {agent_id}")
        conv = await db.update_conversation(unit.conn, conv.id, status="open", resolved_at=None)
        unit.decide("reopen", conversation_id=conv.id, agent=agent_id, reason={"by": agent_id})
        if conv.owner_agent_id is None:
            await route(ctx, unit, conv, widen=True)
    elif name in ("link", "unlink"):
        await link(ctx, unit, env, conv, agent_id, name, args)
    elif name in promises.COMMANDS:
        try:
            said = await promises.command(ctx, unit, conv, agent_id, name, args)
        except PromiseError as exc:
            await reject(ctx, unit, agent_id, str(exc), code=exc.code, conversation_id=conv.id)
        else:
            await remember(ctx, unit, env, conv, said)
    elif name in calls.COMMANDS:
        await remember(ctx, unit, env, conv, " ".join([f"{name} by {agent_id}", *args]))

        async def resolved(c: Any) -> None:
            await resolve(ctx, unit, c, agent_id)

        await calls.outcome(ctx, unit, conv, agent_id, name, args, resolved)


async def remember(ctx: Routing, unit: Unit, env: Envelope, conv: Any, text: str) -> None:
    """Keep an applied command in the conversation's transcript, as what it did."""
    await ctx.store.add_message(
        env.model_copy(update={"conversation_id": conv.id, "text": text}), conn=unit.conn
    )


async def resolve(ctx: Routing, unit: Unit, conv: Any, agent_id: str) -> None:
    owner, _ = await release(ctx, unit, conv, "resolved")
    first = await first_contact.judge(unit, conv, owner)
    if conv.waiting_since is not None:  # resolved while waiting: those behind move up
        standing.moved(ctx, unit, conv)
    await db.update_conversation(
        unit.conn, conv.id, status="resolved", resolved_at=unit.now, waiting_since=None
    )
    await db.cancel_timers(unit.conn, conv.id, (*SLA_TIMERS, "widen"), unit.now)
    after = ctx.config.sla.follow_up_after
    if after is not None and ctx.config.sla.follow_up_template:
        await db.schedule_timer(
            unit.conn,
            f"followup:{conv.id}:{unit.now.isoformat()}",
            conv.id,
            "followup",
            unit.now + after,
            {"agent": owner or agent_id},
            unit.now,
        )
    unit.decide(
        "resolve",
        conversation_id=conv.id,
        agent=agent_id,
        queue=conv.queue,
        reason={"by": agent_id, "owner": owner, "channel": conv.channel, "first_contact": first},
    )
    if owner is not None:
        await drain(ctx, unit, [owner])


async def transfer(
    ctx: Routing, unit: Unit, env: Envelope, conv: Any, agent_id: str, args: list[str]
) -> None:
    """To a queue (its skills are then required) or to an agent (waited for as the
    customer's last agent is). Never straight back to `agent_id`: with nobody else
    qualified and free, it waits in the queue (docs/routing.md, Agents)."""
    target = args[0] if args else ""
    note = " ".join(args[1:]) or None
    if target not in ctx.queues and target not in ctx.agents:
        await reject(
            ctx,
            unit,
            agent_id,
            f"transfer target {target!r} is neither a queue nor an agent",
            code="transfer_target",
            conversation_id=conv.id,
        )
        return
    await remember(
        ctx,
        unit,
        env,
        conv,
        f"transferred to {target} by {agent_id}" + (f": {note}" if note else ""),
    )
    previous, _ = await release(ctx, unit, conv, f"transferred to {target}")
    if target in ctx.queues:
        conv = await db.update_conversation(
            unit.conn,
            conv.id,
            queue=target,
            preferred_agent_id=None,
            prefer_until=None,
            waiting_since=None,
        )
    else:
        conv = await db.update_conversation(
            unit.conn,
            conv.id,
            preferred_agent_id=target,
            prefer_until=unit.now + ctx.config.routing.last_agent_wait,
            waiting_since=None,
        )
    await to_customer(
        ctx,
        unit,
        conv,
        specialist_text(conv.language),
        purpose="transfer",
        auto=True,
        language=conv.language,
    )
    unit.decide(
        "transfer",
        conversation_id=conv.id,
        agent=agent_id,
        reason={"to": target, "from": previous, "note": note},
    )
    away = {agent_id: "transferred it away"}
    assigned = await route(ctx, unit, conv, widen=target in ctx.queues, exclude=away)
    if assigned and note:
        conv = await db.reload(unit.conn, conv.id)
        await deliver(
            ctx,
            unit,
            conv,
            conv.owner_agent_id,
            "transfer_note",
            {"rule": "transfer", "from": previous},
            note=note,
        )
    if previous is not None:
        await drain(ctx, unit, [previous])


async def link(
    ctx: Routing,
    unit: Unit,
    env: Envelope,
    conv: Any,
    agent_id: str,
    name: str,
    args: list[str],
) -> None:
    # An identity's kind is what a configured channel knows its senders by, or an
    # email or phone a customer can state: nothing else is ever looked up.
    kinds = sorted({ctx.sender_kind(c.type) for c in ctx.config.channels} | {EMAIL, PHONE})
    if len(args) != 2 or args[0] not in kinds:
        await reject(
            ctx,
            unit,
            agent_id,
            f"usage: {name} <{'|'.join(kinds)}> <value>",
            code="link_usage",
            conversation_id=conv.id,
        )
        return
    try:
        ident = ctx.normalize(args[0], args[1], conv.channel)
    except IdentityError as exc:
        await reject(ctx, unit, agent_id, str(exc), code="link_identity", conversation_id=conv.id)
        return
    said = f"{name}ed {ident.kind} {ident.value} by {agent_id}"
    if name == "unlink":
        await remember(ctx, unit, env, conv, said)
        removed = await db.remove_identity(unit.conn, ident.kind, ident.value, conv.customer_id)
        unit.decide(
            "unlink",
            conversation_id=conv.id,
            agent=agent_id,
            reason={"identity": ident.kind, "removed": removed},
        )
        return
    owner = await db.identity_owner(unit.conn, ident.kind, ident.value)
    if owner is not None and owner != conv.customer_id:
        said += " (it belongs to another customer: suggested, not merged)"
    await remember(ctx, unit, env, conv, said)
    if owner is None:
        await unit.add_identity(ident.kind, ident.value, conv.customer_id, f"agent:{agent_id}")
        unit.decide(
            "link",
            conversation_id=conv.id,
            agent=agent_id,
            reason={"identity": ident.kind, "source": f"agent {agent_id}"},
        )
    elif owner != conv.customer_id:
        await unit.suggest_link(
            ident.kind, ident.value, owner, conv.customer_id, f"agent:{agent_id}"
        )
        unit.decide(
            "suggest_link",
            conversation_id=conv.id,
            agent=agent_id,
            reason={
                "identity": ident.kind,
                "detail": "belongs to another customer; not merged",
            },
        )
